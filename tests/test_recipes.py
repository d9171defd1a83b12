"""engine/recipes/gpu.sh at toy length on the CPU: every step of the GPU run, and what it brings back."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from engine import export

ROOT = Path(__file__).resolve().parent.parent
MAX_FILE_BACK = 16 * 1024 * 1024  # the largest file a GPU machine's run hands back


def test_gpu_recipe_dry_run_brings_back_weights_that_export_under_the_size_limit(tmp_path: Path) -> None:
    out, run = tmp_path / "out", tmp_path / "run"
    env = {**os.environ, "DEVICE": "cpu", "MINUTES": "0.02", "BATCH": "2", "WORKERS": "0", "EVAL_N": "1",
           "EVAL_EVERY": "0", "TOKENIZER": str(tmp_path / "none.pt"), "TOKENIZER_PUZZLES": "100",
           "KMEANS_ITERATIONS": "1", "RUN": str(run), "OUT": str(out), "PYTHON": sys.executable,
           "WHEELS": str(tmp_path / "no-wheels")}
    result = subprocess.run(["bash", "engine/recipes/gpu.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "device cpu" in (out / "environment.txt").read_text()

    parts = sorted(out.glob("lvm_fp16.pt.part*"))
    assert len(parts) == 2 and all(part.stat().st_size <= MAX_FILE_BACK for part in parts)
    weights = tmp_path / "lvm_fp16.pt"
    weights.write_bytes(b"".join(part.read_bytes() for part in parts))
    checkpoint = torch.load(weights, weights_only=False)
    config = checkpoint["lvm_config"]
    assert (config["n_layer"], config["d_model"], config["vocab_size"]) == (8, 320, 3080)  # 2,048 + 1,024 gist
    assert config["panel_tokens"] == 17  # learned cell and panel positions (docs/model-experiments.md, section 19)
    assert checkpoint["train_config"]["choice_weight"] == 0 and checkpoint["step"] >= 1

    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(record["kind"] == "eval" and "acc/matrix" in record for record in records)
    assert (out / "loss_curve.png").stat().st_size > 0

    bundle = tmp_path / "bundle"
    export.main(["--tokenizer", str(out / "tokenizer.pt"), "--lvm", str(weights), "--out", str(bundle),
                 "--int8", "--static", "--fp16-storage"])
    # room left for the model card and its pictures under the 30 MB a shipped bundle may take
    assert sum(path.stat().st_size for path in bundle.iterdir()) <= 29_500_000
