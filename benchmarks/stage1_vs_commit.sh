#!/usr/bin/env bash
# Stage-1 wall time of this checkout vs an older commit, side by side (alternating, so machine noise hits
# both): fold 0 of the README's oxford run (160 px, 3 epochs), ROUNDS times each, same venv.
# Usage: bash benchmarks/stage1_vs_commit.sh REV [ROUNDS]     e.g. REV=d2456f7 (the 2026-11-22 README)
set -euo pipefail
cd "$(dirname "$0")/.."
REV=$1 ROUNDS=${2:-2}
HERE=$PWD D=$PWD/../shared/data/oxford-pets-370 PY=${PY:-$PWD/.venv/bin/python}
OLD=$(mktemp -d) OUT=$(mktemp -d)
git worktree add -q --detach "$OLD/tree" "$REV"
trap 'git worktree remove --force "$OLD/tree"; rm -rf "$OLD" "$OUT"' EXIT
for round in $(seq "$ROUNDS"); do
  for side in "$REV:$OLD/tree" "HEAD:$HERE"; do
    name=${side%%:*} dir=${side#*:}
    rm -rf "$OUT/art"
    t0=$(date +%s.%N)
    (cd "$dir" && "$PY" pipeline.py train-backbone --data-dir "$D" --artifacts-dir "$OUT/art" --run oxford \
        --img-size 160 --epochs 3 --folds 0 > "$OUT/log" 2>&1)
    echo "round $round $name: $(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $t0}") s," \
         "$(grep -o 'epoch 3/3.*' "$OUT/log" | head -n 1)"
  done
done
