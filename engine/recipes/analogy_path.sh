#!/usr/bin/env bash
# The commands that made the analogy path of engine/bundles/default (since 7 December 2026): a pair embedder whose
# relation scores join the LVM's ranking of an analogy's candidates (engine/serving/analogy_path.py;
# docs/model-experiments.md, section 34). One thread, bf16 autocast. About 40 minutes of wall time.
set -euo pipefail
RUN=${RUN:-runs/analogy_path}
BUNDLE=${BUNDLE:-engine/bundles/default}
export OMP_NUM_THREADS=1
mkdir -p $RUN

# 1. 50,000 training analogies drawn at 32 px (up to 3 example pairs, the query, the 8 candidates), then the pair
#    embedder (0.15M parameters) for 25 CPU-minutes, each puzzle's candidates as the classes; held-out multiple
#    choice of the embedder alone on the card's 350 analogies every 5 (81.7% at 25).
[ -f $RUN/analogies.npz ] || python -m engine.analogy_probe data --n 50000 --seed 55000000 --out $RUN/analogies.npz
[ -f $RUN/scorer/model.pt ] || python -m engine.analogy_probe train --data $RUN/analogies.npz --minutes 25 \
  --out $RUN/scorer

# 2. Its weight beside the LVM's ranking, chosen on held-out analogies 350-549 (the bundle's LVM and rule).
python -m engine.analogy_probe weigh --scorer $RUN/scorer/model.pt --bundle $BUNDLE --n 200 --first 350 \
  --weights 0 0.25 0.5 1 2 4 8 --json $RUN/weigh_350.json

# 3. Into the bundle at the best weight (4), and the card's evaluation.
python -m engine.analogy_probe export --scorer $RUN/scorer/model.pt --bundle $BUNDLE --weight 4
python -m engine.evaluate --bundle $BUNDLE --puzzles matrix:all,analogy,sequence --n 350 --json $RUN/eval350.json
