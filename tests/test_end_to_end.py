"""The whole path on a tiny model: train tokenizer and LVM for a few steps, export, serve, answer, evaluate.

Nothing here depends on a checked-in model: the bundle is built from scratch in a temp directory.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import evaluate, export
from engine.model import load_model
from engine.serving.runtime import Bundle
from engine.train_lvm import TrainLVMConfig
from engine.train_lvm import train as train_lvm
from engine.train_tokenizer import TrainTokenizerConfig
from engine.train_tokenizer import train as train_tokenizer
from puzzles.generators import generate
from puzzles.seeds import eval_seed

STEPS = 4
MIX = "matrix=1,sequence=1"
QUIET = {"device": "cpu", "workers": 0, "log_every": 1000, "warmup_steps": 1, "mix": MIX, "minutes": 0.5}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    tokenizer = train_tokenizer(TrainTokenizerConfig(
        out=str(root / "tokenizer"), steps=STEPS, batch_size=4, image_size=16, block_out_channels=(32, 32, 32),
        latent_channels=32, vq_embed_dim=4, codebook_size=64, restart_every=0, eval_every=0, eval_n=1, **QUIET))
    lvm = train_lvm(TrainLVMConfig(
        tokenizer=str(tokenizer), out=str(root / "lvm"), steps=STEPS, batch_size=2, context_length=160, n_layer=2,
        d_model=32, n_head=2, n_kv_head=2, ffn_hidden=64, bf16=False, eval_n=1, **QUIET))
    bundle = export.export_from_checkpoints(tokenizer, lvm, root / "bundle", name="e2e")
    return {"tokenizer": tokenizer, "lvm": lvm, "bundle": bundle}


@pytest.fixture(scope="module")
def bundle(trained: dict[str, Path]) -> Bundle:
    return Bundle.load(trained["bundle"])


def test_manifest_carries_training_provenance(trained: dict[str, Path]) -> None:
    manifest = json.loads((trained["bundle"] / "manifest.json").read_text())
    lvm = manifest["provenance"]["lvm"]
    assert lvm["steps"] == STEPS and lvm["tokens"] > 0 and lvm["wall_seconds"] > 0 and lvm["data"] == MIX
    assert manifest["provenance"]["tokenizer"]["steps"] == STEPS
    assert manifest["image_size"] == 16 and manifest["tokens_per_image"] == 16 and manifest["codebook_size"] == 64


def test_trained_model_greedy_matches_pytorch(trained: dict[str, Path], bundle: Bundle) -> None:
    puzzle = generate("matrix", eval_seed(0), size=16, layout="center")
    context = bundle.context_tokens(bundle.encode(puzzle.panels))
    model = load_model(trained["lvm"]).eval()
    expected = []
    with torch.no_grad():
        logits, cache = model(torch.from_numpy(context)[None, :])
        for _ in range(bundle.tokens_per_image):
            expected.append(int(logits[0, -1, : bundle.manifest["codebook_size"]].argmax()))
            logits, cache = model(torch.tensor([[expected[-1]]]), cache)
    greedy = bundle.complete(puzzle.panels, n_samples=1, temperature=0.0)[0]
    np.testing.assert_array_equal(greedy, bundle.decode(np.array([expected]))[0])


def test_complete_and_score_a_puzzle(bundle: Bundle) -> None:
    puzzle = generate("sequence", eval_seed(1), size=32)  # larger than the model's 16 px: resized on the way in
    samples = bundle.complete(puzzle.panels, n_samples=2, temperature=1.0, top_k=20, seed=3)
    assert len(samples) == 2 and samples[0].shape == (16, 16, 3)
    scores = bundle.score(puzzle.panels, puzzle.candidates)
    assert scores.shape == (len(puzzle.candidates),) and np.all(np.isfinite(scores))


def test_evaluate_a_handful_of_puzzles(bundle: Bundle) -> None:
    puzzles = evaluate.load_puzzles("matrix:center,sequence", 2, bundle.image_size)
    report = evaluate.evaluate(bundle, puzzles)
    evaluate.validate_report(json.loads(json.dumps(report)))
    assert report["overall"]["n"] == 4 and set(report["families"]) == {"matrix", "sequence"}
    assert report["overall"]["psnr_ceiling"] > 0
