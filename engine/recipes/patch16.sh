#!/usr/bin/env bash
# A candidate default on 16 codes per panel (docs/model-experiments.md, sections 5-7), all on this 2-core CPU
# without AMX (fp32, one thread each). Run from the repository root.
# Tokenizer: a k-means codebook of 8x8 px patches of 32 px panels (no network to train). LVM: next-token
# prediction only (a multiple-choice loss at weight 1 stopped it from learning), on pre-tokenized shards.
set -euo pipefail
RUN=${RUN:-runs/patch16}
export OMP_NUM_THREADS=1

# 1. Tokenizer: 2,048 codes from patches of 1,500 training puzzles (87 s).
python -m engine.patch_tokenizer --out $RUN/tokenizer.pt --puzzles 1500

# 2. Shards: 12,000 and 60,000 training puzzles encoded once (2.5 and 8 minutes).
python -m engine.shards --tokenizer $RUN/tokenizer.pt --mix matrix=3,analogy=2,sequence=2 --n 12000 \
  --seed 43000000 --out $RUN/shards12000
python -m engine.shards --tokenizer $RUN/tokenizer.pt --mix matrix=3,analogy=2,sequence=2 --n 60000 \
  --seed 44000000 --out $RUN/shards60000

# 3. LVM: 20 minutes on the small shards (the comparison arm), then resumed on the large ones to 95 minutes in
#    all (the resumed run's cosine restarts from the elapsed fraction).
LVM="--n-layer 6 --d-model 256 --n-head 4 --n-kv-head 4 --ffn-hidden 704 --lr 1e-3 --warmup-steps 50 \
  --choice-weight 0 --no-bf16 --workers 0 --log-every 20 --eval-n 64 --save-every-min 5 --seed 0 \
  --tokenizer $RUN/tokenizer.pt --context-length 160 --batch-size 32 --out $RUN/lvm"
python -m engine.train_lvm $LVM --minutes 20 --shards $RUN/shards12000
python -m engine.train_lvm $LVM --minutes 95 --resume --shards $RUN/shards60000 --eval-every-tokens 2000000

# 4. Export (fp16-stored weights plus the int8 fixed-cache graph that serving runs) and evaluate on the same
#    held-out puzzles as the shipped bundle, then compare puzzle by puzzle.
python -m engine.export --tokenizer $RUN/tokenizer.pt --lvm $RUN/lvm/ckpt.pt --out $RUN/bundle --name patch16 \
  --fp16-storage
python -m engine.export_static --bundle $RUN/bundle --int8
python -m engine.evaluate --bundle $RUN/bundle --puzzles matrix:all,analogy,sequence --n 350 --json $RUN/eval350.json
python -m engine.evaluate --bundle engine/bundles/default --puzzles matrix:all,analogy,sequence --n 350 \
  --json $RUN/eval_default350.json
python -m engine.compare $RUN/eval_default350.json $RUN/eval350.json --metric both
