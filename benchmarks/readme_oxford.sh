#!/usr/bin/env bash
# The README's "Results measured here": its oxford commands, run in order from a fresh artifacts dir, each
# timed. Usage: bash benchmarks/readme_oxford.sh [ARTIFACTS_DIR]   (default: artifacts; ~17 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data/oxford-pets-370
A=${1:-artifacts}
PY=${PY:-.venv/bin/python}
step() { local t0=$SECONDS; echo "+ $*"; "$@"; echo "[took $((SECONDS - t0)) s]"; }
score() { $PY benchmarks/score_submission.py "$1" $D/test_labels.csv --train-csv $D/train.csv "${@:2}"; }
# Each head alone and the 50/50 blend on the test photos (the README table's test row), quietly.
heads() {
  for b in 1 0 0.5; do
    $PY pipeline.py infer --data-dir $D --artifacts-dir $A --run "$1" --blend $b --out $A/"$1"/blend$b/submission.csv >/dev/null 2>&1
    echo -n "run $1 --blend $b: "; score $A/"$1"/blend$b/submission.csv | sed -n 1p
  done
}

# One run: stage 1, stage 2 (default feature bank, chosen on OOF), infer with blend 0.5 and auto.
step $PY pipeline.py train-backbone --data-dir $D --artifacts-dir $A --run oxford --img-size 160 --epochs 3
step $PY pipeline.py fit-svr --artifacts-dir $A --run oxford
step $PY pipeline.py infer --data-dir $D --artifacts-dir $A --run oxford --blend 0.5
score $A/oxford/submission.csv
step $PY pipeline.py infer --data-dir $D --artifacts-dir $A --run oxford --blend auto --out $A/oxford/auto/submission.csv
score $A/oxford/auto/submission.csv
heads oxford

# A second run on the same folds at 192 px, then the two-run ensemble with weights fitted on OOF.
step $PY pipeline.py train-backbone --data-dir $D --artifacts-dir $A --run oxford192 --folds-from oxford --img-size 192 --epochs 3
step $PY pipeline.py fit-svr --artifacts-dir $A --run oxford192
step $PY pipeline.py infer --data-dir $D --artifacts-dir $A --run oxford192 --blend auto
score $A/oxford192/submission.csv
heads oxford192
step $PY pipeline.py infer --data-dir $D --artifacts-dir $A --runs oxford,oxford192 --blend auto
score $A/ensembles/oxford+oxford192/submission.csv

# How large a gap 50 test photos can show by chance: the best head vs the SVR head, and vs the ensemble.
score $A/oxford192/blend1/submission.csv --compare $A/oxford192/blend0/submission.csv | sed -n 3p
score $A/oxford192/blend1/submission.csv --compare $A/ensembles/oxford+oxford192/submission.csv | sed -n 3p
