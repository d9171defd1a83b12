#!/usr/bin/env bash
# The next default model in one run on one GPU, sized to fit a 10-minute job, on what the CPU comparisons of
# docs/model-experiments.md chose: the 17-code sentence (a gist code, the panel at 8x8 px from a codebook of 1,024,
# then a k-means codebook of 2,048 8x8 px patches of 32 px panels: a 3x3 matrix is 155 tokens), next-token loss
# only (a multiple-choice loss at weight 1 stopped next-token learning), fresh puzzles every step. On the CPU no lever
# moved the knee (7-8M tokens for one layout; the gist lifts the curve); a GPU brings the tens of millions of tokens
# the mix needs. LVM: 8 layers, width 320, SwiGLU 640 (10.2M parameters; its int8 bundle is 29.3 MB: the
# gist's codes cost the FFN 864 -> 640 to stay under 30 MB, docs/model-experiments.md section 17), with learned
# embeddings of each code's cell in its panel and of the panel's index (section 19).
# Everything worth keeping is left in $OUT: the tokenizer, the fp16 weights in parts under 16 MiB (for machines
# that hand back only small files), the log with its held-out evaluations (the learning curve), the loss curve,
# the output. The tokenizer is $TOKENIZER when that file exists (carry runs/gist/tokenizer.pt), else fitted here.
#
# For a GPU machine with PyTorch, onnx, onnxruntime, matplotlib and tqdm but no package index, first download
# what it lacks into .whl/ (installed from there when the folder exists):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 importlib_metadata
# On the GPU machine, in the repository root:   OUT=<folder to keep> bash engine/recipes/gpu.sh
# Then, on any machine:
#   cat <kept folder>/lvm_fp16.pt.part* > runs/gpu/lvm_fp16.pt
#   python -m engine.export --tokenizer <kept folder>/tokenizer.pt --lvm runs/gpu/lvm_fp16.pt --out runs/gpu/bundle \
#     --name default --int8 --static --fp16-storage
#   python -m engine.evaluate --bundle runs/gpu/bundle --puzzles matrix:all,analogy,sequence --n 200 --first 350 \
#     --json runs/gpu/choose.json --write-scoring      # each family's scoring rule, on other held-out puzzles
#   python -m engine.sampling_sweep --bundle runs/gpu/bundle --puzzles matrix:all,analogy,sequence --n 200 \
#     --first 350 --settings "t=0.3;t=0.5;t=0.3,g=1;t=0.3,g=2;t=0.3,g=3" --json runs/gpu/sweep.json --write
#   python -m engine.evaluate --bundle runs/gpu/bundle --puzzles matrix:all,analogy,sequence --n 350 \
#     --json runs/gpu/eval.json
#   python -m engine.compare <the shipped bundle's report on the same puzzles> runs/gpu/eval.json --metric both
#
# A dry run on a CPU goes through every step at toy length (tests/test_recipes.py does):
#   DEVICE=cpu MINUTES=0.05 BATCH=2 WORKERS=0 EVAL_N=1 EVAL_EVERY=0 TOKENIZER_PUZZLES=100 KMEANS_ITERATIONS=1 \
#     RUN=/tmp/gpu OUT=/tmp/out bash engine/recipes/gpu.sh
set -euo pipefail
OUT=${OUT:?set OUT to the folder whose files come back}
RUN=${RUN:-runs/gpu}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-7.5}  # training; export of the weights, the final evaluation and start-up fit in the rest
BATCH=${BATCH:-256}
WORKERS=${WORKERS:-14}  # of 16 cores: puzzle generation must keep up with the GPU
EVAL_N=${EVAL_N:-64}
EVAL_EVERY=${EVAL_EVERY:-25000000}
PYTHON=${PYTHON:-python3}
TOKENIZER=${TOKENIZER:-runs/gist/tokenizer.pt}
TOKENIZER_PUZZLES=${TOKENIZER_PUZZLES:-1500}  # when the tokenizer is fitted here (87 s on one CPU core)
KMEANS_ITERATIONS=${KMEANS_ITERATIONS:-25}
WHEELS=${WHEELS:-.whl}  # packages to install first, where the folder exists
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUN"

if [ -d "$WHEELS" ]; then
  site="$(cd "$RUN" && pwd)/site"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "$WHEELS"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
# fail in seconds, not minutes into the run, when a package or the device is missing
"$PYTHON" - "$DEVICE" <<'EOF' 2>&1 | tee "$OUT/environment.txt"
import sys
import diffusers, matplotlib, onnx, onnxruntime, torch, tqdm
device = sys.argv[1]
name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
      f"onnxruntime {onnxruntime.__version__}, device {name}")
EOF

if [ ! -f "$TOKENIZER" ]; then
  TOKENIZER="$RUN/tokenizer.pt"
  "$PYTHON" -m engine.patch_tokenizer --out "$TOKENIZER" --puzzles "$TOKENIZER_PUZZLES" \
    --iterations "$KMEANS_ITERATIONS" --gist-codes 1024 2>&1 | tail -n 1
fi
cp "$TOKENIZER" "$OUT/tokenizer.pt"

# The budget stops training after MINUTES, then it saves and evaluates. The timeout only guards against a hang
# (7.5 + 1.5 minutes with the defaults, inside a 10-minute job), so that the files below still come back.
status=0
timeout "$("$PYTHON" -c "print(int(60 * $MINUTES) + 90)")" "$PYTHON" -m engine.train_lvm --device "$DEVICE" \
  --tokenizer "$TOKENIZER" --out "$RUN/lvm" --minutes "$MINUTES" --batch-size "$BATCH" --lr 1.5e-3 \
  --warmup-steps 150 --mix matrix=3,analogy=2,sequence=2 --choice-weight 0 --context-length 160 --n-layer 8 \
  --d-model 320 --n-head 5 --n-kv-head 5 --ffn-hidden 640 --panel-positions --seed 20000000 --workers "$WORKERS" \
  --eval-every-tokens "$EVAL_EVERY" --eval-n "$EVAL_N" --log-every 100 --save-every-min 2 \
  --half-weights-out "$RUN/lvm_fp16.pt" > "$OUT/train.log" 2>&1 || status=$?

if [ -f "$RUN/lvm_fp16.pt" ]; then  # written at every save: a run cut short still brings its last weights back
  split -b 15M -d "$RUN/lvm_fp16.pt" "$OUT/lvm_fp16.pt.part"
fi
cp "$RUN/lvm/log.jsonl" "$RUN/lvm/loss_curve.png" "$OUT/" 2>/dev/null || true
tr '\r' '\n' < "$OUT/train.log" | grep -a -E "engine\.|Error" | tail -n 15 || true
exit $status
