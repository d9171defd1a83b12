#!/usr/bin/env bash
# The commands that made the matrix path of engine/bundles/default (since 7 December 2026): a reader of 32 px
# pictures and a reasoner over their attributes (engine/serving/matrix_path.py; docs/model-experiments.md,
# sections 31-32). One thread each, bf16 autocast; the two trainings can share the 2-core CPU (their budgets are
# CPU-minutes, so they are the same on a shared machine). About an hour and a half of wall time on two cores.
set -euo pipefail
RUN=${RUN:-runs/matrix_path}
BUNDLE=${BUNDLE:-engine/bundles/default}
export OMP_NUM_THREADS=1

# 1. The reasoner: 150,000 training matrices as attribute sentences, then a 4 x 192 decoder (SwiGLU 512, 2.0M
#    parameters) for 40 CPU-minutes; held-out multiple choice on the true attributes every 10 (93.7% at 40).
[ -f $RUN/matrices.npy ] || python -m engine.attribute_probe data --n 150000 --seed 47000000 --out $RUN/matrices.npy
[ -f $RUN/reasoner/model.pt ] || python -m engine.attribute_probe train --data $RUN/matrices.npy --minutes 40 \
  --n-layer 4 --d-model 192 --ffn-hidden 512 --eval-every-min 10 --out $RUN/reasoner

# 2. The reader: pictures of 20,000 training matrices drawn at 32 px and of 12,000 drawn at 96 px and shrunk to 32
#    (the bank's are drawn at 96), then a small convolutional reader (0.78M parameters) for 40 CPU-minutes.
[ -f $RUN/pictures32.npz ] || python -m engine.attribute_probe sight-data --n 20000 --seed 48500000 \
  --out $RUN/pictures32.npz
[ -f $RUN/pictures96.npz ] || python -m engine.attribute_probe sight-data --n 12000 --seed 49000000 --draw-size 96 \
  --out $RUN/pictures96.npz
[ -f $RUN/reader.pt ] || python -m engine.attribute_probe reader --data $RUN/pictures32.npz $RUN/pictures96.npz \
  --minutes 40 --out $RUN/reader.pt

# 3. How it reads the card's held-out matrices, drawn at 32 px and at 96 px (pictures read whole, and multiple
#    choice ranked from what it read).
python -m engine.attribute_probe sight --reader $RUN/reader.pt --reasoner $RUN/reasoner/model.pt --json $RUN/sight32.json
python -m engine.attribute_probe sight --reader $RUN/reader.pt --reasoner $RUN/reasoner/model.pt --draw-size 96 \
  --json $RUN/sight96.json

# 4. Into the bundle: reader.onnx (fp16-stored) and reasoner.onnx (int8 weights). The path answers a matrix when at
#    least half of its pictures are read with every attribute at least 0.9 likely (chosen on held-out matrices
#    350-549 and on prompts that are not matrices: section 32).
python -m engine.attribute_probe export --reader $RUN/reader.pt --reasoner $RUN/reasoner/model.pt --bundle $BUNDLE \
  --sure-attribute 0.9 --sure-pictures 0.5
python -m engine.evaluate --bundle $BUNDLE --puzzles matrix:all,analogy,sequence --n 350 --json $RUN/eval350.json
