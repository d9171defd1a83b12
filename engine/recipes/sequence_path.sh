#!/usr/bin/env bash
# The commands that made the sequence path of engine/bundles/default (since 7 December 2026): a reader of 32 px
# frames and a reasoner over their attributes (engine/serving/sequence_path.py; docs/model-experiments.md, section
# 33). One thread each, bf16 autocast; the two trainings can share the 2-core CPU (their budgets are CPU-minutes).
# About 40 minutes of wall time on two cores.
set -euo pipefail
RUN=${RUN:-runs/sequence_path}
BUNDLE=${BUNDLE:-engine/bundles/default}
export OMP_NUM_THREADS=1
mkdir -p $RUN

# 1. The reasoner: 200,000 training sequences as attribute sentences (8 tokens a frame: shape, colour, background,
#    count, centre x and y in 64 levels, radius in 64, turn in 24), a 3 x 64 decoder (SwiGLU 176, 0.18M
#    parameters) for 20 CPU-minutes, a position, size or turn token moved a level in 15% of places.
[ -f $RUN/sequences.npz ] || python -m engine.sequence_probe data --n 200000 --seed 53000000 --out $RUN/sequences.npz
[ -f $RUN/reasoner/model.pt ] || python -m engine.sequence_probe train --data $RUN/sequences.npz --minutes 20 \
  --out $RUN/reasoner

# 2. The reader: frames and near misses (8 a sequence) of 16,000 training sequences drawn at 32 px and of 8,000
#    drawn at 96 px and shrunk to 32 (the bank's are drawn at 96), a small convolutional reader (0.14M parameters)
#    for 20 CPU-minutes.
[ -f $RUN/frames32.npz ] || python -m engine.sequence_probe sight-data --n 16000 --seed 54000000 \
  --out $RUN/frames32.npz
[ -f $RUN/frames96.npz ] || python -m engine.sequence_probe sight-data --n 8000 --seed 54100000 --draw-size 96 \
  --out $RUN/frames96.npz
[ -f $RUN/reader.pt ] || python -m engine.sequence_probe reader --data $RUN/frames32.npz $RUN/frames96.npz \
  --minutes 20 --out $RUN/reader.pt

# 3. How it reads held-out sequences 350-549 (where the gate was chosen), beside the LVM's choices there.
python -m engine.sequence_probe sight --reader $RUN/reader.pt --reasoner $RUN/reasoner/model.pt --n 200 --first 350 \
  --sure-attribute 0.99 --json $RUN/sight_350.json

# 4. Into the bundle: sequence_reader.onnx (fp16-stored) and sequence_reasoner.onnx (int8 weights). It ranks a
#    sequence's candidates when at least half of the pictures are read with shape, colour, background and count
#    each at least 0.99 likely.
python -m engine.sequence_probe export --reader $RUN/reader.pt --reasoner $RUN/reasoner/model.pt --bundle $BUNDLE \
  --sure-attribute 0.99 --sure-pictures 0.5
python -m engine.evaluate --bundle $BUNDLE --puzzles matrix:all,analogy,sequence --n 350 --json $RUN/eval350.json
