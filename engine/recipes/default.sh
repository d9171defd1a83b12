#!/usr/bin/env bash
# The commands that made engine/bundles/default. Run from the repository root.
# Tokenizer: two stages on one NVIDIA H100 (about 6 minutes); LVM: this 2-core CPU (bf16 autocast).
set -euo pipefail
RUN=${RUN:-runs/default}

# 1. Tokenizer (GPU; on a CPU the same commands work, only slower).
python -m engine.train_tokenizer --out $RUN/tok_stage1 --minutes 3 --batch-size 128 --lr 2e-3 --workers 14 \
  --eval-every 400 --eval-n 32 --log-every 50 --save-every-min 1 --half-weights-out $RUN/tok_stage1_fp16.pt
python -m engine.train_tokenizer --out $RUN/tok_stage2 --init $RUN/tok_stage1_fp16.pt --minutes 2.8 --batch-size 128 \
  --lr 6e-4 --warmup-steps 50 --workers 14 --eval-every 1000 --eval-n 32 --log-every 50 --save-every-min 1 \
  --half-weights-out $RUN/tokenizer_fp16.pt

# 2. LVM (CPU, background). The shipped run was started with --minutes 80 and resumed twice (--resume) with
#    budgets of 100 and then 88 minutes, which moved the cosine schedule; one uninterrupted run is:
python -m engine.train_lvm --tokenizer $RUN/tokenizer_fp16.pt --out $RUN/lvm --minutes 88 --batch-size 8 --lr 2e-3 \
  --warmup-steps 100 --mix matrix=3,analogy=2,sequence=2 --n-layer 6 --d-model 256 --n-head 4 --n-kv-head 4 \
  --ffn-hidden 704 --workers 1 --eval-every-tokens 4000000 --eval-n 24 --log-every 20 --save-every-min 4
# copies of $RUN/lvm/ckpt.pt taken as it was rewritten every 4 minutes went to $RUN/points/ for the learning curve

# 3. Export, evaluate, write the model card.
python -m engine.export --tokenizer $RUN/tokenizer_fp16.pt --lvm $RUN/lvm/ckpt.pt --out engine/bundles/default \
  --name default --fp16-storage
python -m engine.evaluate --bundle engine/bundles/default --puzzles matrix:all,analogy,sequence --n 350 --json eval.json
python -m engine.learning_curve --tokenizer $RUN/tokenizer_fp16.pt --checkpoints $(ls $RUN/points/*.pt | sed -n '1p;3p;5p;7p') \
  $RUN/lvm/ckpt.pt --n 32 --out $RUN/learning_curve.jsonl
python -m engine.model_card --bundle engine/bundles/default --eval eval.json --n 350 --curve $RUN/learning_curve.jsonl \
  --lvm-log $RUN/lvm/log.jsonl --tokenizer-log $RUN/tokenizer_log.jsonl --recipe engine/recipes/default.sh \
  --notes engine/recipes/default_notes.md
