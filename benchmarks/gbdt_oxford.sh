#!/usr/bin/env bash
# The GBDT head beside the SVR on the oxford photos (README, "The GBDT head"): fit-svr --heads svr,gbdt on a
# finished stage 1 of run `oxford` (benchmarks/readme_oxford.sh makes it), each head alone and the blends
# on the 50 test photos. Usage: bash benchmarks/gbdt_oxford.sh [ARTIFACTS_DIR]  (GF="all svr": --gbdt-features)
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data/oxford-pets-370
A=${1:-artifacts}
PY=${PY:-.venv/bin/python}
score() { $PY benchmarks/score_submission.py "$1" $D/test_labels.csv --train-csv $D/train.csv "${@:2}"; }
alone() {  # one head alone on the test photos: infer --weights-from an ensemble.json weighing it 1
  echo "{\"artifacts_dir\": \"$A\", \"runs\": [\"oxford\"], \"weights\": {\"oxford:$1\": 1.0}}" > $A/oxford/$2-$1.json
  $PY pipeline.py infer --data-dir $D --artifacts-dir $A --run oxford --weights-from $A/oxford/$2-$1.json \
      --out $A/oxford/$2-$1/submission.csv >/dev/null 2>&1
  echo -n "--gbdt-features $2, $1 alone: "; score $A/oxford/$2-$1/submission.csv | sed -n 1p
}
for gf in ${GF:-all svr}; do
  t0=$SECONDS
  $PY pipeline.py fit-svr --artifacts-dir $A --run oxford --heads svr,gbdt --gbdt-features $gf
  echo "[fit-svr --heads svr,gbdt --gbdt-features $gf took $((SECONDS - t0)) s]"
  for h in nn svr gbdt; do alone $h $gf; done
  $PY pipeline.py infer --data-dir $D --artifacts-dir $A --run oxford --blend auto --out $A/oxford/$gf-auto/submission.csv
  echo -n "--gbdt-features $gf, blend auto: "; score $A/oxford/$gf-auto/submission.csv | sed -n 1p
  $PY pipeline.py infer --data-dir $D --artifacts-dir $A --run oxford --blend 0.5 --out $A/oxford/$gf-0.5/submission.csv >/dev/null 2>&1
  echo -n "--gbdt-features $gf, blend 0.5: "; score $A/oxford/$gf-0.5/submission.csv | sed -n 1p
done
