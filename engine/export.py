"""Export trained checkpoints to a model bundle: encoder.onnx, decoder.onnx, lvm.onnx and manifest.json.

    python -m engine.export --tokenizer TOKENIZER.pt --lvm LVM.pt --out engine/bundles/NAME [--int8] [--static]
        [--name NAME]

The LVM graph carries its KV cache explicitly (`past_key_<i>`/`past_value_<i>` in, `present_key_<i>`/
`present_value_<i>` out) with dynamic batch, new length and past length, exported through torch.export
(dynamo) with example sizes >= 2 so that no dimension is specialised. `--int8` stores lvm.onnx's MatMul weights
as int8 (weights only, one scale per output column: engine.compact), as the served int8 graph does.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from engine import tokenizer as vq
from engine.bundle import FORMAT_VERSION, REQUIRED_FILES, file_entry, with_static_graph, write_manifest
from engine.compact import store_matmul_weights_int8, store_weights_fp16
from engine.export_static import STATIC_FILE, write_static_graph
from engine.model import LVM, model_from_checkpoint
from engine.patch_tokenizer import PatchTokenizer
from engine.serving.sentences import Vocabulary
from engine.tokenizer import TokenizerConfig

log = logging.getLogger(__name__)

OPSET = 20  # torch 2.13's dynamo default; ONNX Runtime 1.20+ runs it
EXAMPLE_BATCH = 2  # example sizes >= 2 keep torch.export from specialising a dimension to 0 or 1


# --- graph wrappers: plain tensors in, plain tensors out ------------------------------------------------------


class EncoderGraph(nn.Module):
    """float images (N, 3, H, W) in [0, 1] -> int64 codes (N, h*w); the nearest-code search stays in fp32.

    The VQ tokenizer encodes with its network; the patch tokenizer compares each patch with its codebook."""

    def __init__(self, tokenizer: nn.Module) -> None:
        super().__init__()
        self.tokenizer = tokenizer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if isinstance(self.tokenizer, PatchTokenizer):
            return self.tokenizer.encode(images)
        return vq.nearest_codes(self.tokenizer, vq.latents(self.tokenizer, images))


class DecoderGraph(nn.Module):
    """int64 codes (N, h*w) -> float images (N, 3, H, W) clamped to [0, 1]."""

    def __init__(self, tokenizer: nn.Module) -> None:
        super().__init__()
        self.tokenizer = tokenizer

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if isinstance(self.tokenizer, PatchTokenizer):
            return self.tokenizer.decode(codes)
        return vq.decode_latents(self.tokenizer, vq.embed_codes(self.tokenizer, codes)).clamp(0.0, 1.0)


class LvmGraph(nn.Module):
    """input_ids (B, T) + flat cache (key_0, value_0, ...) -> (logits (B, T, V), key_0, value_0, ...)."""

    def __init__(self, model: LVM) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, *flat_cache: torch.Tensor) -> tuple[torch.Tensor, ...]:
        past = [(flat_cache[2 * i], flat_cache[2 * i + 1]) for i in range(len(flat_cache) // 2)]
        logits, present = self.model(input_ids, past)
        return (logits, *[tensor for pair in present for tensor in pair])


def cache_names(prefix: str, n_layers: int) -> list[str]:
    """past_key_0, past_value_0, past_key_1, ... (the order LvmGraph takes and returns them in)."""
    return [f"{prefix}_{kind}_{layer}" for layer in range(n_layers) for kind in ("key", "value")]


# --- exporting ------------------------------------------------------------------------------------------------


def export_graph(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
                 dynamic_shapes: Any) -> None:
    """Export `module` on example `args` to an ONNX file at `path` (dynamo exporter, weights inside the file)."""
    module.eval()
    with torch.no_grad():
        torch.onnx.export(
            module, args, str(path), input_names=input_names, output_names=output_names,
            dynamic_shapes=dynamic_shapes, dynamo=True, external_data=False, opset_version=OPSET,
        )
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)


def export_encoder(tokenizer: nn.Module, path: Path) -> None:
    size = tokenizer.tokenizer_config.image_size
    images = torch.rand(EXAMPLE_BATCH, 3, size, size)
    batch = torch.export.Dim("batch")
    export_graph(EncoderGraph(tokenizer), (images,), path, ["images"], ["codes"], {"images": {0: batch}})


def export_decoder(tokenizer: nn.Module, path: Path) -> None:
    cfg: TokenizerConfig = tokenizer.tokenizer_config
    codes = torch.randint(0, cfg.codebook_size, (EXAMPLE_BATCH, cfg.tokens_per_image))
    batch = torch.export.Dim("batch")
    export_graph(DecoderGraph(tokenizer), (codes,), path, ["codes"], ["images"], {"codes": {0: batch}})


def export_lvm(model: LVM, path: Path) -> None:
    cfg = model.config
    input_ids = torch.randint(0, cfg.vocab_size, (EXAMPLE_BATCH, EXAMPLE_BATCH + 1))
    cache = [torch.randn(EXAMPLE_BATCH, cfg.n_kv_head, EXAMPLE_BATCH + 2, cfg.head_dim) for _ in range(2 * cfg.n_layer)]
    batch, new_len, past_len = torch.export.Dim("batch"), torch.export.Dim("seq"), torch.export.Dim("past")
    dynamic = {"input_ids": {0: batch, 1: new_len}, "flat_cache": tuple({0: batch, 2: past_len} for _ in cache)}
    export_graph(LvmGraph(model), (input_ids, *cache), path, ["input_ids", *cache_names("past", cfg.n_layer)],
                 ["logits", *cache_names("present", cfg.n_layer)], dynamic)


# --- the manifest ---------------------------------------------------------------------------------------------


def _first(checkpoint: dict[str, Any], *keys: str) -> Any:
    return next((checkpoint[key] for key in keys if checkpoint.get(key) is not None), None)


def provenance(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Training facts a checkpoint carries: its `provenance` dict, else what the training scripts record."""
    train_config = checkpoint.get("train_config") or {}
    found = {
        "data": _first(checkpoint, "data", "mix") or train_config.get("mix"),
        "steps": _first(checkpoint, "steps", "step"),
        "tokens": _first(checkpoint, "tokens", "tokens_seen", "images_seen"),
        "hardware": _first(checkpoint, "hardware", "device") or train_config.get("device"),
        "wall_seconds": _first(checkpoint, "wall_seconds", "elapsed"),
        "train_config": train_config or None,
    }
    found = {key: value for key, value in found.items() if value is not None}
    found.update(checkpoint.get("provenance") or {})
    return json.loads(json.dumps(found, default=str))  # JSON-safe (tensors, paths, dates become strings)


def build_manifest(
    name: str, tokenizer_cfg: TokenizerConfig, model: LVM, directory: Path, int8: bool,
    tokenizer_provenance: dict[str, Any], lvm_provenance: dict[str, Any],
) -> dict[str, Any]:
    vocab = Vocabulary(tokenizer_cfg.codebook_size, tokenizer_cfg.tokens_per_image)
    cfg = model.config
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "image_size": tokenizer_cfg.image_size,
        "token_grid": [tokenizer_cfg.grid, tokenizer_cfg.grid],
        "tokens_per_image": tokenizer_cfg.tokens_per_image,
        "codebook_size": tokenizer_cfg.codebook_size,
        "vocab_size": cfg.vocab_size,
        "code_range": [0, tokenizer_cfg.codebook_size],  # token ids that are image codes
        "special_tokens": {"bos": vocab.bos, "eos": vocab.eos},
        "context_length": cfg.context_length,
        "kv_cache": {"n_layers": cfg.n_layer, "n_kv_heads": cfg.n_kv_head, "head_dim": cfg.head_dim},
        "weights": "int8" if int8 else "fp32",
        "lvm_config": cfg.to_dict(),
        "tokenizer_config": tokenizer_cfg.to_dict(),
        "parameters": {"lvm": model.num_parameters()},
        "files": {name: file_entry(directory / name) for name in REQUIRED_FILES},
        "provenance": {"tokenizer": tokenizer_provenance, "lvm": lvm_provenance,
                       "exporter": {"torch": torch.__version__, "opset": OPSET}},
        "metrics": {},
    }


def check_compatible(tokenizer_cfg: TokenizerConfig, model: LVM) -> None:
    """The LVM must know every code plus BOS/EOS of this tokenizer."""
    vocab = Vocabulary(tokenizer_cfg.codebook_size, tokenizer_cfg.tokens_per_image)
    if model.config.vocab_size < vocab.eos + 1:
        raise ValueError(f"LVM vocab_size {model.config.vocab_size} is too small for a codebook of "
                         f"{tokenizer_cfg.codebook_size} codes plus BOS/EOS")
    if model.config.context_length < 1 + 2 * tokenizer_cfg.tokens_per_image:
        raise ValueError(f"LVM context {model.config.context_length} cannot hold two images of "
                         f"{tokenizer_cfg.tokens_per_image} tokens")


def export_bundle(
    tokenizer: nn.Module, model: LVM, out: str | Path, name: str | None = None, int8: bool = False,
    tokenizer_provenance: dict[str, Any] | None = None, lvm_provenance: dict[str, Any] | None = None,
    static: bool = False, fp16_storage: bool = False,
) -> Path:
    """Write the three graphs and the manifest into `out` (created; existing bundle files are replaced).

    `static` also writes lvm_static.onnx (engine.export_static: fused attention, fixed-size KV cache), which
    the runtime then serves instead of lvm.onnx. `fp16_storage` stores the LVM's weights as fp16 (computed in
    fp32) and the tokenizer's wherever fp16 holds them exactly (engine.compact).
    """
    out = Path(out)
    cfg: TokenizerConfig = tokenizer.tokenizer_config
    check_compatible(cfg, model)
    out.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    graphs = ["lvm.onnx"]
    if isinstance(tokenizer, vq.BundleTokenizer):  # the tokenizer graphs of an existing bundle, as they are
        for graph in ("encoder.onnx", "decoder.onnx"):
            if (tokenizer.directory / graph).resolve() != (out / graph).resolve():
                shutil.copyfile(tokenizer.directory / graph, out / graph)
    else:
        tokenizer = tokenizer.float().eval()
        export_encoder(tokenizer, out / "encoder.onnx")
        export_decoder(tokenizer, out / "decoder.onnx")
        graphs += ["encoder.onnx", "decoder.onnx"]
    export_lvm(model, out / "lvm.onnx")
    if int8:
        store_matmul_weights_int8(out / "lvm.onnx")
    if fp16_storage:
        for graph in graphs:
            before, after = store_weights_fp16(out / graph, lossless_only=graph != "lvm.onnx" or int8)
            log.info("%s: %.1f MB -> %.1f MB with fp16 storage", graph, before / 1e6, after / 1e6)
    manifest = build_manifest(name or out.name, cfg, model, out, int8, tokenizer_provenance or {}, lvm_provenance or {})
    manifest["storage"] = "fp16" if fp16_storage else "fp32"
    if static:
        add_static_graph(model, out, manifest, int8)
    write_manifest(out, manifest)
    log.info("bundle %s written to %s", manifest["name"], out)
    return out


def add_static_graph(model: LVM, out: Path, manifest: dict[str, Any], int8: bool) -> None:
    """Write lvm_static.onnx from the model's own weights and list it in the manifest."""
    weights = {key: tensor.detach().float().numpy() for key, tensor in model.state_dict().items()}
    path = write_static_graph(weights, model.config.to_dict(), out / STATIC_FILE, int8=int8)
    manifest.update(with_static_graph(manifest, out, STATIC_FILE, model.config.context_length,
                                      "int8" if int8 else "fp32"))
    log.info("fixed-cache graph %s written", path.name)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)  # provenance may hold plain Python objects


def export_from_checkpoints(tokenizer_path: str | Path, lvm_path: str | Path, out: str | Path,
                            name: str | None = None, int8: bool = False, static: bool = False,
                            fp16_storage: bool = False) -> Path:
    if Path(tokenizer_path).is_dir():  # a bundle: reuse its exported tokenizer
        tokenizer = vq.BundleTokenizer(tokenizer_path)
        source = tokenizer.bundle.manifest
        tokenizer_facts = {**source.get("provenance", {}).get("tokenizer", {}), "from_bundle": source["name"]}
    else:
        tokenizer_ckpt = load_checkpoint(tokenizer_path)
        tokenizer, tokenizer_facts = vq.tokenizer_from_checkpoint(tokenizer_ckpt), provenance(tokenizer_ckpt)
    lvm_ckpt = load_checkpoint(lvm_path)
    return export_bundle(
        tokenizer, model_from_checkpoint(lvm_ckpt), out, name=name, int8=int8, tokenizer_provenance=tokenizer_facts,
        lvm_provenance=provenance(lvm_ckpt), static=static, fp16_storage=fp16_storage,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.export", description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True,
                        help="tokenizer checkpoint (ckpt.pt from engine.train_tokenizer), or a bundle to take it from")
    parser.add_argument("--lvm", required=True, help="LVM checkpoint (ckpt.pt from engine.train_lvm)")
    parser.add_argument("--out", required=True, help="bundle directory to write, e.g. engine/bundles/NAME")
    parser.add_argument("--name", default=None, help="bundle name in the manifest (default: the directory name)")
    parser.add_argument("--int8", action="store_true", help="store lvm.onnx's MatMul weights as int8 (weights only)")
    parser.add_argument("--fp16-storage", action="store_true",
                        help="store weights as fp16 (half the size; computed in fp32)")
    parser.add_argument("--static", action="store_true",
                        help="also write lvm_static.onnx (fused attention, fixed-size KV cache; served when present)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)  # one line per optimiser rewrite otherwise
    export_from_checkpoints(args.tokenizer, args.lvm, args.out, name=args.name, int8=args.int8, static=args.static,
                            fp16_storage=args.fp16_storage)


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.export")
