#!/usr/bin/env bash
# The commands that made engine/bundles/default (since 6 December 2026): 16 patch codes and a gist code per panel
# (docs/model-experiments.md, sections 5-24), all on a 2-core CPU (THREADS=2 trains on both cores, section 17):
# bf16 autocast where the CPU has AMX (1.6x the tokens a second, section 20), fp32 where it has not (no faster
# there on an Intel CPU, section 2; step 8 asks for bf16, 1.5x on an AMD one). Run from the repository root; step 3
# takes several sessions. Steps 1-5 ended their plan at 520 CPU-minutes (MINUTES=520, 79.9M tokens); steps 6-7
# continued it to 139.8M tokens (sections 21-22), step 8 to 161.8M (section 23).
# Tokenizer: a k-means codebook of 8x8 px patches of 32 px panels (no network to train). LVM: next-token
# prediction only (a multiple-choice loss at weight 1 stopped it from learning), on pre-tokenized shards.
set -euo pipefail
RUN=${RUN:-runs/gist17}
export OMP_NUM_THREADS=${THREADS:-1}  # threads each step may use (THREADS=2 takes both cores)
PRECISION="--no-bf16"; grep -q amx_bf16 /proc/cpuinfo && PRECISION=""

# 1. Tokenizer: 2,048 patch codes and 1,024 gist codes from the images of 1,500 training puzzles (50 s).
[ -f $RUN/tokenizer.pt ] || python -m engine.patch_tokenizer --out $RUN/tokenizer.pt --puzzles 1500 --gist-codes 1024

# 2. Shards: 200,000 training puzzles encoded once (about 37 minutes at one thread beside other work; 106 MB).
[ -f $RUN/shards200000/manifest.json ] || python -m engine.shards --tokenizer $RUN/tokenizer.pt \
  --mix matrix=3,analogy=2,sequence=2 --n 200000 --seed 47000000 --out $RUN/shards200000

# 3. LVM: 600 CPU-minutes in all (--clock cpu: two threads spend them in about half the wall time), checkpoints
#    every 5 minutes. Run the recipe again to continue after a stop: steps 1-2 are skipped when their output
#    exists, and step 3 resumes from its checkpoint, its cosine following the 600-minute plan (MINUTES=N moves
#    the plan's end, and with it the cosine's, to N CPU-minutes). Sections 11-15 put
#    the knee of one layout at 7-9M tokens; the mix of 9 layouts and kinds needs several times that.
LVM="--n-layer 6 --d-model 256 --n-head 4 --n-kv-head 4 --ffn-hidden 704 --lr 1e-3 --warmup-steps 50 \
  --choice-weight 0 $PRECISION --workers 0 --log-every 20 --eval-n 64 --save-every-min 5 --seed 0 --clock cpu \
  --compile --tokenizer $RUN/tokenizer.pt --context-length 160 --batch-size 32 --out $RUN/lvm"
RESUME=""; [ -f $RUN/lvm/ckpt.pt ] && RESUME="--resume"
python -m engine.train_lvm $LVM --minutes ${MINUTES:-600} --shards $RUN/shards200000 --mix matrix=3,analogy=2,sequence=2 \
  --eval-every-tokens 2000000 $RESUME

# 4. Export (fp16-stored weights plus the int8 fixed-cache graph that serving runs), choose each family's scoring
#    rule on 200 other held-out puzzles (section 18), evaluate on the same held-out puzzles as the shipped bundle,
#    then compare puzzle by puzzle.
python -m engine.export --tokenizer $RUN/tokenizer.pt --lvm $RUN/lvm/ckpt.pt --out $RUN/bundle --name patch16 \
  --fp16-storage
python -m engine.export_static --bundle $RUN/bundle --int8
python -m engine.evaluate --bundle $RUN/bundle --puzzles matrix:all,analogy,sequence --n 200 --first 350 \
  --json $RUN/choose.json --write-scoring
python -m engine.evaluate --bundle $RUN/bundle --puzzles matrix:all,analogy,sequence --n 350 --json $RUN/eval350.json
[ -f $RUN/eval_default350.json ] || python -m engine.evaluate --bundle engine/bundles/default \
  --puzzles matrix:all,analogy,sequence --n 350 --json $RUN/eval_default350.json
python -m engine.compare $RUN/eval_default350.json $RUN/eval350.json --metric both

# 5. Sampling defaults for Solve, then MODEL_CARD.md (RUN=... as above; the shipped bundle was renamed "default").
python -m engine.sampling_sweep --bundle $RUN/bundle --puzzles matrix:all,analogy:all,sequence:all --n 48 \
  --json $RUN/sweep.json --write
python -m engine.evaluate --bundle $RUN/bundle --puzzles matrix:all,analogy,sequence --n 350 --json $RUN/eval350.json
python -m engine.model_card --bundle $RUN/bundle --eval $RUN/eval350.json --puzzles matrix:all,analogy,sequence \
  --n 350 --lvm-log $RUN/lvm/log.jsonl --recipe engine/recipes/patch16.sh --notes engine/recipes/patch16_card_notes.md
# 6. Since 6 December 2026 (docs/model-experiments.md, sections 21-22): the bundle of steps 1-5 continued on a
#    matrix-heavier mix, 150,000 fresh matrices beside the shards of step 2, learned panel positions added at zero,
#    a new cosine from 5e-4. It first ran 75 CPU-minutes at one thread uncompiled, then resumed (--resume) with
#    the plan's end at 240 CPU-minutes, two threads, compiled; one uninterrupted run is:
[ -f $RUN/shards_matrix150000/manifest.json ] || python -m engine.shards --tokenizer $RUN/tokenizer.pt \
  --mix matrix=1 --n 150000 --seed 48000000 --out $RUN/shards_matrix150000
python -m engine.train_lvm --init-bundle $RUN/bundle --panel-positions --tokenizer $RUN/tokenizer.pt \
  --context-length 160 --batch-size 32 --lr 5e-4 --warmup-steps 50 --choice-weight 0 $PRECISION --workers 0 \
  --log-every 20 --eval-n 64 --save-every-min 5 --seed 1 --clock cpu --compile --minutes 240 \
  --shards $RUN/shards200000,$RUN/shards_matrix150000 --mix matrix=4,analogy=1,sequence=1 \
  --eval-every-tokens 8000000 --out $RUN/matrix4
# 7. Export, rules, sampling defaults, evaluation and card as in steps 4-5, with --lvm $RUN/matrix4/ckpt.pt and
#    --name default; the card's log is both runs' (cat $RUN/lvm/log.jsonl $RUN/matrix4/log.jsonl).
# 8. Since 6 December 2026, evening (docs/model-experiments.md, section 23): the bundle of step 7 (B7; it is
#    engine/bundles/default at commit 7e9bdc8: git archive 7e9bdc8 engine/bundles/default | tar -x -C DIR) continued
#    150 CPU-minutes on fresh shards written with its own tokenizer (a bundle directory serves as one), the same
#    matrix-heavier mix, a new cosine from 3e-4, two threads, compiled, bf16 (1.5x fp32 on the AMD CPU without AMX
#    this ran on, section 23); export, rules, a sweep of four sampling settings and the evaluation as in steps 4-5
#    (--lvm $RUN/step8/ckpt.pt --name default).
#    Running this step once more from its own bundle on 180,000 other fresh puzzles moved nothing beyond noise, nor
#    did averaging its last checkpoints (section 24): more minutes of this recipe no longer pay. Nor did two more
#    blocks grown into it (--grow-layers 2) and trained as long (section 25).
B7=${B7:-$RUN/bundle7}
[ -f $RUN/shards_matrix120000/manifest.json ] || python -m engine.shards --tokenizer $B7 \
  --mix matrix=1 --n 120000 --seed 49000000 --out $RUN/shards_matrix120000
[ -f $RUN/shards_mix60000/manifest.json ] || python -m engine.shards --tokenizer $B7 \
  --mix matrix=1,analogy=2,sequence=2 --n 60000 --seed 49500000 --out $RUN/shards_mix60000
python -m engine.train_lvm --init-bundle $B7 --panel-positions --tokenizer $B7 \
  --context-length 160 --batch-size 32 --lr 3e-4 --warmup-steps 50 --choice-weight 0 --bf16 --workers 0 \
  --log-every 20 --eval-n 64 --save-every-min 5 --seed 2 --clock cpu --compile --minutes 150 \
  --shards $RUN/shards_matrix120000,$RUN/shards_mix60000 --mix matrix=4,analogy=1,sequence=1 \
  --eval-every-tokens 8000000 --out $RUN/step8
# 9. Since 6 December 2026, night (docs/model-experiments.md, section 26): no training. The bundle step 8 exported
#    (B8; engine/bundles/default at commit 6ad54fd) keeps its weights and rules; its sampling defaults are swept
#    again with guided settings (each code drawn away from what the last prompt image alone predicts), on the
#    puzzles its rules were chosen on. Analogies sample guided at weight 2 (generative 38.0% vs 31.7% on the 350
#    held-out analogies, sign test p 0.0054); matrices and sequences stay unguided.
B8=${B8:-$RUN/bundle}
python -m engine.sampling_sweep --bundle $B8 --puzzles matrix:all,analogy,sequence --n 200 --first 350 \
  --settings "t=0.3;t=0.5;t=0.3,g=1;t=0.3,g=2;t=0.3,g=3" --json $RUN/sweep9.json --write
python -m engine.evaluate --bundle $B8 --puzzles matrix:all,analogy,sequence --n 350 --json $RUN/eval350_9.json
# 10. Since 7 December 2026 (docs/model-experiments.md, section 29): no training. The same weights; analogies rank
#     by `pmi_channel` (pmi_last_panel plus the log-likelihood of the example pairs read after the query and the
#     candidate), the rule --write-scoring chose on puzzles 350-549. It was decided on 500 other held-out analogies
#     (550-1049, set aside before the served graph ran): 56.4% against 52.2% (sign test p 0.024).
python -m engine.evaluate --bundle $B8 --puzzles matrix:all,analogy,sequence --n 200 --first 350 \
  --json $RUN/choose10.json --write-scoring
python -m engine.evaluate --bundle $B8 --puzzles analogy --n 500 --first 550 --json $RUN/decide10.json
python -m engine.evaluate --bundle $B8 --puzzles matrix:all,analogy,sequence --n 350 --json $RUN/eval350_10.json
