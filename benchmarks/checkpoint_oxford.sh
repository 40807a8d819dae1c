#!/usr/bin/env bash
# Stage 1 with --checkpoint best vs last on the 370 real photos (the README's "Real data" settings), both
# runs side by side, each followed by fit-svr, infer --blend 0.5 and the held-out test score. The test RMSE
# is the fair comparison: the OOF RMSE of `best` is optimistic by construction (the epoch is chosen on the
# fold it scores). FOLDS=0,1 trains only those folds (a partial stage 1, used with --allow-partial).
#   PY=/path/to/python ART=/tmp/ck-art [FOLDS=0,1] bash benchmarks/checkpoint_oxford.sh
set -euo pipefail
D=${D:-../shared/data/oxford-pets-370}
ART=${ART:-/tmp/checkpoint-art}
PY=${PY:-.venv/bin/python}
FOLDS=${FOLDS:-}
partial=${FOLDS:+--allow-partial}
one() {
  local ck=$1
  $PY pipeline.py train-backbone --data-dir "$D" --artifacts-dir "$ART" --run "ck-$ck" --img-size 160 --epochs 3 \
      --checkpoint "$ck" ${FOLDS:+--folds "$FOLDS"}
  $PY pipeline.py fit-svr --artifacts-dir "$ART" --run "ck-$ck" $partial
  $PY pipeline.py infer --data-dir "$D" --artifacts-dir "$ART" --run "ck-$ck" --blend 0.5 $partial
  echo "== --checkpoint $ck: held-out test"
  $PY benchmarks/score_submission.py "$ART/ck-$ck/submission.csv" "$D/test_labels.csv" --train-csv "$D/train.csv"
}
one best > "$ART/ck-best.log" 2>&1 &
one last > "$ART/ck-last.log" 2>&1 &
wait
