#!/usr/bin/env bash
# The commands that made engine/bundles/default until 6 December 2026 (since then: engine/recipes/patch16.sh).
# Run from the repository root.
# Tokenizer: two stages on one NVIDIA H100 (about 6 minutes). LVM: six stages on this 2-core CPU (bf16 autocast):
# next-token prediction, then the same plus a multiple-choice loss over each puzzle's candidates, then a heavier
# multiple-choice loss with more matrices, then heavier still on fresh puzzles (three times).
set -euo pipefail
RUN=${RUN:-runs/default}

# 1. Tokenizer (GPU; on a CPU the same commands work, only slower).
python -m engine.train_tokenizer --out $RUN/tok_stage1 --minutes 3 --batch-size 128 --lr 2e-3 --workers 14 \
  --eval-every 400 --eval-n 32 --log-every 50 --save-every-min 1 --half-weights-out $RUN/tok_stage1_fp16.pt
python -m engine.train_tokenizer --out $RUN/tok_stage2 --init $RUN/tok_stage1_fp16.pt --minutes 2.8 --batch-size 128 \
  --lr 6e-4 --warmup-steps 50 --workers 14 --eval-every 1000 --eval-n 32 --log-every 50 --save-every-min 1 \
  --half-weights-out $RUN/tokenizer_fp16.pt

# 2. LVM stage 1: next-token prediction (CPU, background). It was started with --minutes 80 and resumed twice
#    (--resume) with budgets of 100 and then 88 minutes, which moved the cosine schedule; one uninterrupted run is:
python -m engine.train_lvm --tokenizer $RUN/tokenizer_fp16.pt --out $RUN/lvm --minutes 88 --batch-size 8 --lr 2e-3 \
  --warmup-steps 100 --mix matrix=3,analogy=2,sequence=2 --n-layer 6 --d-model 256 --n-head 4 --n-kv-head 4 \
  --ffn-hidden 704 --workers 1 --eval-every-tokens 4000000 --eval-n 24 --log-every 20 --save-every-min 4
python -m engine.export --tokenizer $RUN/tokenizer_fp16.pt --lvm $RUN/lvm/ckpt.pt --out $RUN/stage1 --name stage1 \
  --fp16-storage

# 3. LVM stage 2: from the stage-1 bundle (its tokenizer graph encodes the data, its weights start the model), with
#    the multiple-choice loss. Copies of $RUN/lvm2/ckpt.pt taken every 15 minutes went to $RUN/points/.
python -m engine.train_lvm --tokenizer $RUN/stage1 --init-bundle $RUN/stage1 --out $RUN/lvm2 --minutes 95 \
  --batch-size 8 --lr 1e-3 --warmup-steps 50 --mix matrix=2,analogy=2,sequence=2 --choice-weight 0.05 --workers 1 \
  --eval-every-tokens 2000000 --eval-n 32 --log-every 20 --save-every-min 5

python -m engine.export --tokenizer $RUN/stage1 --lvm $RUN/lvm2/ckpt.pt --out $RUN/stage2 --name default --fp16-storage

# 4. LVM stage 3: from the stage-2 bundle, multiple-choice weight 0.2 and more matrices; copies of $RUN/lvm3/ckpt.pt
#    taken every 20 minutes went to $RUN/points3/. (The run was paused for about 8 of its 100 wall-clock minutes.)
python -m engine.train_lvm --tokenizer $RUN/stage2 --init-bundle $RUN/stage2 --out $RUN/lvm3 --minutes 100 \
  --batch-size 8 --lr 6e-4 --warmup-steps 30 --mix matrix=3,analogy=2,sequence=2 --choice-weight 0.2 --workers 1 \
  --eval-every-tokens 3000000 --eval-n 32 --log-every 20 --save-every-min 5

python -m engine.export --tokenizer $RUN/stage2 --lvm $RUN/lvm3/ckpt.pt --out $RUN/stage3 --name default --fp16-storage

# 5. LVM stage 4: from the stage-3 bundle, multiple-choice weight 0.5, an even mix and puzzles from fresh seeds; copies
#    of $RUN/lvm4/ckpt.pt taken every 20 minutes went to $RUN/points4/. It was started with --minutes 100, stopped
#    after 5 minutes of training and resumed (--resume) with --minutes 90, which is what it ran to.
python -m engine.train_lvm --tokenizer $RUN/stage3 --init-bundle $RUN/stage3 --out $RUN/lvm4 --minutes 90 \
  --batch-size 8 --lr 5e-4 --warmup-steps 30 --mix matrix=2,analogy=2,sequence=2 --choice-weight 0.5 --seed 3000000 \
  --workers 1 --eval-every-tokens 3000000 --eval-n 32 --log-every 20 --save-every-min 5

python -m engine.export --tokenizer $RUN/stage3 --lvm $RUN/lvm4/ckpt.pt --out $RUN/stage4 --name default --fp16-storage

# 6. LVM stage 5: from the stage-4 bundle, multiple-choice weight 1.0, lr 4e-4 and puzzles from seeds no earlier stage
#    drew; copies of $RUN/lvm5/ckpt.pt taken every 20 minutes went to $RUN/points5/.
python -m engine.train_lvm --tokenizer $RUN/stage4 --init-bundle $RUN/stage4 --out $RUN/lvm5 --minutes 95 \
  --batch-size 8 --lr 4e-4 --warmup-steps 30 --mix matrix=2,analogy=2,sequence=2 --choice-weight 1.0 --seed 6000000 \
  --workers 1 --eval-every-tokens 3000000 --eval-n 32 --log-every 20 --save-every-min 5

python -m engine.export --tokenizer $RUN/stage4 --lvm $RUN/lvm5/ckpt.pt --out $RUN/stage5 --name default --fp16-storage

# 7. LVM stage 6: from the stage-5 bundle, multiple-choice weight 2.0, more matrices again (3:2:2), lr 3e-4 and fresh
#    seeds; copies of $RUN/lvm6/ckpt.pt taken every 20 minutes went to $RUN/points6/.
python -m engine.train_lvm --tokenizer $RUN/stage5 --init-bundle $RUN/stage5 --out $RUN/lvm6 --minutes 90 \
  --batch-size 8 --lr 3e-4 --warmup-steps 30 --mix matrix=3,analogy=2,sequence=2 --choice-weight 2.0 --seed 9000000 \
  --workers 1 --eval-every-tokens 3000000 --eval-n 32 --log-every 20 --save-every-min 5

# 8. Export (fp16-stored weights, plus the fused fixed-cache graph in int8 that serving runs), evaluate, card.
python -m engine.export --tokenizer $RUN/stage5 --lvm $RUN/lvm6/ckpt.pt --out engine/bundles/default --name default \
  --fp16-storage
python -m engine.export_static --bundle engine/bundles/default --int8
python -m engine.evaluate --bundle engine/bundles/default --puzzles matrix:all,analogy,sequence --n 350 --json eval.json
python -m engine.learning_curve --tokenizer $RUN/stage1 --checkpoints $RUN/points/*.pt $RUN/lvm2/ckpt.pt \
  $RUN/points3/*.pt $RUN/lvm3/ckpt.pt $RUN/points4/*.pt $RUN/lvm4/ckpt.pt \
  $RUN/points5/*.pt $RUN/lvm5/ckpt.pt $RUN/points6/*.pt $RUN/lvm6/ckpt.pt --n 32 --out $RUN/learning_curve.jsonl
cat $RUN/lvm2/log.jsonl $RUN/lvm3/log.jsonl $RUN/lvm4/log.jsonl $RUN/lvm5/log.jsonl $RUN/lvm6/log.jsonl \
  > $RUN/lvm_log.jsonl  # stages 2-6, tokens counted on
python -m engine.model_card --bundle engine/bundles/default --eval eval.json --n 350 --curve $RUN/learning_curve.jsonl \
  --lvm-log $RUN/lvm_log.jsonl --recipe engine/recipes/default.sh --notes engine/recipes/default_notes.md
