"""Helpers shared by test modules: a free local port and the tiny random-init model bundles.

Importing this module is cheap (the test session's conftest uses it); the tiny bundles import PyTorch only
when first built or configured.
"""
from __future__ import annotations

import atexit
import functools
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

PROVENANCE = {"data": {"matrix": 0.5, "analogy": 0.5}, "steps": 3, "tokens": 1234, "hardware": "test cpu",
              "wall_seconds": 1.5}


# a 1-layer LVM on the tiny training tokenizer: the flags short engine.train_lvm runs in tests share
TINY_LVM_FLAGS = ["--n-layer", "1", "--d-model", "32", "--n-head", "2", "--n-kv-head", "1", "--ffn-hidden", "64",
                  "--context-length", "160", "--batch-size", "3", "--workers", "0", "--log-every", "1",
                  "--eval-n", "1", "--device", "cpu", "--mix", "matrix=1,sequence=1"]


def tiny_training_tokenizer() -> Any:
    """The tokenizer config of short training runs: 16 px images, a 4x4 grid of 16 codes."""
    from engine.tokenizer import TokenizerConfig

    return TokenizerConfig(image_size=16, block_out_channels=(32, 32, 32), latent_channels=32, vq_embed_dim=4,
                           codebook_size=16, mid_block_attention=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TinyConfigs(NamedTuple):
    tokenizer: Any  # engine.tokenizer.TokenizerConfig: 16x16 images, 16 tokens each, 32 codes
    vocab: Any  # engine.serving.sentences.Vocabulary
    lvm: Any  # engine.model.LVMConfig of build_tiny_bundle: 2 layers, 4 heads, panel positions off
    static_lvm: Any  # the LVMConfig of build_tiny_static_bundle (see there)


@functools.cache
def tiny_configs() -> TinyConfigs:
    from engine import tokenizer as vq
    from engine.model import LVMConfig
    from engine.serving.sentences import Vocabulary

    tokenizer = vq.TokenizerConfig(
        image_size=16, block_out_channels=(8, 8, 8), layers_per_block=1, latent_channels=8, vq_embed_dim=4,
        codebook_size=32, norm_num_groups=4, mid_block_attention=True,
    )
    vocab = Vocabulary(tokenizer.codebook_size, tokenizer.tokens_per_image)
    lvm = LVMConfig(vocab_size=vocab.vocab_size, context_length=1 + 6 * 16 + 1, n_layer=2, d_model=32, n_head=4,
                    n_kv_head=2, ffn_hidden=64)
    # GroupQueryAttention wants head_dim % 16 == 0: 2 heads of 16, grouped-query (1 kv head); panel positions
    # on, so both graphs compute the cell and panel of each position
    static_lvm = LVMConfig(vocab_size=vocab.vocab_size, context_length=1 + 6 * 16 + 1, n_layer=2, d_model=32,
                           n_head=2, n_kv_head=1, ffn_hidden=64, panel_tokens=vocab.tokens_per_image)
    return TinyConfigs(tokenizer, vocab, lvm, static_lvm)


def _scratch_dir(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


@functools.cache
def build_tiny_bundle() -> tuple[Path, Path, Path]:
    """A random-init tokenizer + LVM saved as checkpoints and exported through the CLI (once per test run).

    Returns (bundle directory, tokenizer checkpoint, LVM checkpoint).
    """
    import torch

    from engine import export
    from engine import tokenizer as vq
    from engine.model import LVM

    configs = tiny_configs()
    root = _scratch_dir("gelato-tiny-bundle-")
    torch.manual_seed(0)
    tokenizer_path, lvm_path = root / "tokenizer.pt", root / "lvm.pt"
    torch.save({**vq.tokenizer_checkpoint(vq.build_tokenizer(configs.tokenizer)), "steps": 7}, tokenizer_path)
    model = LVM(configs.lvm)
    torch.save({"lvm_config": configs.lvm.to_dict(), "model": model.state_dict(), "provenance": PROVENANCE}, lvm_path)
    export.main(["--tokenizer", str(tokenizer_path), "--lvm", str(lvm_path), "--out", str(root / "tiny"),
                 "--name", "tiny-test"])
    return root / "tiny", tokenizer_path, lvm_path


@functools.cache
def build_tiny_static_bundle() -> tuple[Path, Path]:
    """A random-init tiny bundle exported with lvm.onnx only (once per test run): (bundle dir, LVM checkpoint)."""
    import torch

    from engine import export
    from engine import tokenizer as vq
    from engine.model import LVM

    configs = tiny_configs()
    root = _scratch_dir("gelato-tiny-static-")
    torch.manual_seed(1)
    model = LVM(configs.static_lvm)
    for table in (model.model.panel_cell_embed, model.model.panel_index_embed):  # they start at zero: make them count
        torch.nn.init.normal_(table.weight, std=1.0)
    torch.save({"lvm_config": configs.static_lvm.to_dict(), "model": model.state_dict()}, root / "lvm.pt")
    export.export_bundle(vq.build_tokenizer(configs.tokenizer), model, root / "tiny", name="tiny-static")
    return root / "tiny", root / "lvm.pt"


class FakeSession:
    """An ONNX Runtime session's input names and outputs, answering with a function of the feed (a path's reader or
    reasoner in tests that need no trained graph)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def get_inputs(self) -> list[Any]:
        return [type("Input", (), {"name": "x"})()]


def run_fake(session: FakeSession, feeds: dict[str, Any]) -> list[Any]:
    """The paths' `run` for a FakeSession."""
    return [session.answer(feeds["x"])]
