"""The image tokenizer: a diffusers `VQModel` turning 64x64 RGB images into a grid of codebook indices.

Images enter and leave as float [N, 3, H, W] in [0, 1]; the network works in [-1, 1]. Quantization
(nearest code by Euclidean distance) always runs in fp32, outside any autocast, so the encoder's codes
match the exported ONNX encoder's.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import VQModel

from engine import training
from engine.patch_tokenizer import (
    PatchTokenizer,
    PatchTokenizerConfig,
    is_patch_config,
    patch_tokenizer_from_checkpoint,
)


@dataclass
class TokenizerConfig:
    image_size: int = 64  # square input side in pixels
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)  # one per level; downsampling 2^(levels-1)
    layers_per_block: int = 1  # resnet layers per level
    latent_channels: int = 64  # channels around the quantizer's 1x1 projections
    vq_embed_dim: int = 8  # code vector width (small: better codebook use, cheap distance)
    codebook_size: int = 1024  # number of codes K
    norm_num_groups: int = 32  # GroupNorm groups (every channel count must divide by it)
    mid_block_attention: bool = True  # self-attention at the lowest resolution (cheap at 8x8)
    commitment: float = 0.25  # beta: weight of ||z - sg(e)||^2 in the VQ loss

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        if self.image_size % self.downsample:
            raise ValueError(f"image_size {self.image_size} is not divisible by the downsampling {self.downsample}")
        for channels in (*self.block_out_channels, self.latent_channels):
            if channels % self.norm_num_groups:
                raise ValueError(f"channel count {channels} is not divisible by norm_num_groups {self.norm_num_groups}")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def grid(self) -> int:
        """Side of the code grid (8 for 64x64 images with 4 levels)."""
        return self.image_size // self.downsample

    @property
    def tokens_per_image(self) -> int:
        return self.grid * self.grid

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["block_out_channels"] = list(self.block_out_channels)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TokenizerConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown TokenizerConfig fields: {', '.join(sorted(unknown))}")
        return cls(**values)


def build_tokenizer(cfg: TokenizerConfig) -> VQModel:
    levels = len(cfg.block_out_channels)
    model = VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        sample_size=cfg.image_size,
        num_vq_embeddings=cfg.codebook_size,
        norm_num_groups=cfg.norm_num_groups,
        vq_embed_dim=cfg.vq_embed_dim,
        mid_block_add_attention=cfg.mid_block_attention,
    )
    model.tokenizer_config = cfg  # travels with the module so checkpoints can store it
    return model


def _check_images(images: torch.Tensor, cfg: TokenizerConfig | None) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
    if cfg is not None and images.shape[-2:] != (cfg.image_size, cfg.image_size):
        raise ValueError(f"images must be {cfg.image_size}x{cfg.image_size}, got {tuple(images.shape[-2:])}")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got {images.dtype}")


def latents(model: VQModel, images: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [0, 1] -> pre-quantization latents [N, D, h, w]."""
    _check_images(images, getattr(model, "tokenizer_config", None))
    return model.encode(images * 2.0 - 1.0).latents


def nearest_codes(model: VQModel, z: torch.Tensor) -> torch.Tensor:
    """Latents [N, D, h, w] -> indices [N, h*w] of the nearest code (fp32, outside autocast)."""
    batch, dim = z.shape[:2]
    flat = z.permute(0, 2, 3, 1).reshape(-1, dim).float()  # (N*h*w, D)
    with torch.autocast(device_type=z.device.type, enabled=False):
        distances = torch.cdist(flat, model.quantize.embedding.weight.float())  # (N*h*w, K)
        return distances.argmin(dim=1).reshape(batch, -1)


def embed_codes(model: VQModel, codes: torch.Tensor) -> torch.Tensor:
    """Indices [N, h*w] -> code vectors [N, D, h, w] (square grid)."""
    batch, count = codes.shape
    side = int(round(count**0.5))
    if side * side != count:
        raise ValueError(f"{count} codes per image do not form a square grid")
    vectors = model.quantize.embedding(codes)  # (N, h*w, D)
    return vectors.reshape(batch, side, side, -1).permute(0, 3, 1, 2).contiguous()


def decode_latents(model: VQModel, quantized: torch.Tensor) -> torch.Tensor:
    """Quantized vectors [N, D, h, w] -> images [N, 3, H, W], roughly in [0, 1] (unclamped, for training)."""
    return (model.decode(quantized, force_not_quantize=True).sample + 1.0) / 2.0


@torch.no_grad()
def encode(model: VQModel, images: torch.Tensor) -> torch.Tensor:
    """Images [N, 3, H, W] float in [0, 1] -> LongTensor codes [N, h*w] (row-major grid)."""
    return nearest_codes(model, latents(model, images))


@torch.no_grad()
def decode(model: VQModel, codes: torch.Tensor) -> torch.Tensor:
    """LongTensor codes [N, h*w] -> images [N, 3, H, W] float in [0, 1]."""
    codebook_size = model.quantize.embedding.num_embeddings
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size})")
    return decode_latents(model, embed_codes(model, codes.long())).clamp(0.0, 1.0)


def vq_forward(model: VQModel, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training pass: images -> (reconstruction, VQ loss, codes), straight-through gradients to the encoder."""
    cfg: TokenizerConfig = model.tokenizer_config
    z = latents(model, images)
    codes = nearest_codes(model, z)
    quantized = embed_codes(model, codes).to(z.dtype)
    z_float, q_float = z.float(), quantized.float()
    codebook_loss = F.mse_loss(q_float, z_float.detach())  # pulls codes towards the encoder outputs
    commitment_loss = F.mse_loss(z_float, q_float.detach())  # keeps the encoder near its codes
    straight_through = z + (quantized - z).detach()
    reconstruction = decode_latents(model, straight_through)
    return reconstruction, codebook_loss + cfg.commitment * commitment_loss, codes


def tokenizer_checkpoint(model: VQModel, half: bool = False) -> dict[str, Any]:
    state = {name: (t.half() if half and t.is_floating_point() else t).detach().cpu()
             for name, t in model.state_dict().items()}
    return {"tokenizer_config": model.tokenizer_config.to_dict(), "tokenizer": state}


def save_tokenizer(model: VQModel, path: str | Path, half: bool = False) -> None:
    torch.save(tokenizer_checkpoint(model, half=half), Path(path))


def tokenizer_from_checkpoint(checkpoint: dict[str, Any]) -> VQModel | PatchTokenizer:
    """The tokenizer a checkpoint holds: the VQ network, or a patch codebook (`"kind": "patch"`)."""
    for key in ("tokenizer_config", "tokenizer"):
        if key not in checkpoint:
            raise ValueError(f"not a tokenizer checkpoint: missing {key!r} (keys: {', '.join(checkpoint)})")
    if is_patch_config(checkpoint["tokenizer_config"]):
        return patch_tokenizer_from_checkpoint(checkpoint)
    model = build_tokenizer(TokenizerConfig.from_dict(checkpoint["tokenizer_config"]))
    model.load_state_dict({name: t.float() if t.is_floating_point() else t
                           for name, t in checkpoint["tokenizer"].items()})
    return model.eval()


def load_tokenizer(path: str | Path, map_location: str | torch.device = "cpu") -> VQModel | PatchTokenizer:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer checkpoint not found: {path}")
    return tokenizer_from_checkpoint(torch.load(path, map_location=map_location, weights_only=True))


def tokenizer_config_from_dict(values: dict[str, Any]) -> TokenizerConfig | PatchTokenizerConfig:
    """A manifest's or checkpoint's tokenizer_config: the patch codebook's (`"kind": "patch"`) or the VQ network's."""
    return PatchTokenizerConfig.from_dict(values) if is_patch_config(values) else TokenizerConfig.from_dict(values)


def tokenizer_from_bundle(directory: str | Path) -> VQModel | PatchTokenizer:
    """The PyTorch tokenizer behind a bundle's encoder.onnx and decoder.onnx (fp32), to fine-tune.

    The exporter keeps the names of convolutions, the codebook and biases, but folds each GroupNorm's scale
    and shift into unnamed (C, 1, 1) constants and renames the attention matrices (stored transposed): those
    are matched in the order the graph uses them, which is the order the modules run in.
    """
    from engine.bundle import read_manifest

    directory = Path(directory)
    config = tokenizer_config_from_dict(read_manifest(directory)["tokenizer_config"])
    if isinstance(config, PatchTokenizerConfig):
        return _patch_tokenizer_from_graph(config, directory)
    model = build_tokenizer(config)
    state: dict[str, torch.Tensor] = {}
    for graph, part in (("encoder.onnx", "encoder"), ("decoder.onnx", "decoder")):
        state.update(_graph_state(model, directory / graph, part))
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise ValueError(f"{directory}: no weights found for {len(missing)} tokenizer tensors, e.g. {min(missing)}")
    model.load_state_dict(state)
    return model.eval()


def _patch_tokenizer_from_graph(config: PatchTokenizerConfig, directory: Path) -> PatchTokenizer:
    """The codebook is the decoder graph's one (codes, patch pixels) matrix (the exporter may rename buffers); a
    gist codebook is the encoder graph's one (gist codes, gist pixels) matrix, or its transpose where the exporter
    stored it transposed for the search."""
    model = PatchTokenizer(config)
    model.codebook.copy_(_one_matrix(directory / "decoder.onnx", (config.patch_codes, config.patch_dim)))
    if config.gist_codes:
        shape = (config.gist_codes, config.gist_dim)
        try:
            gists = _one_matrix(directory / "encoder.onnx", shape)
        except ValueError:
            gists = _one_matrix(directory / "encoder.onnx", shape[::-1]).T
        model.gist_codebook.copy_(gists)
    return model.eval()


def _one_matrix(path: Path, shape: tuple[int, int]) -> torch.Tensor:
    import onnx

    from engine.bundle import stored_weights

    found = [array for array in stored_weights(onnx.load(str(path))).values() if array.shape == shape]
    if len(found) != 1:
        raise ValueError(f"{path}: expected one codebook of shape {shape}, found {len(found)}")
    return torch.from_numpy(found[0].astype(np.float32))


def _graph_state(model: VQModel, path: Path, part: str) -> dict[str, torch.Tensor]:
    import onnx

    from engine.bundle import stored_weights

    graph = onnx.load(str(path))
    stored = stored_weights(graph)
    state = {name.removeprefix("tokenizer."): torch.from_numpy(array.copy()) for name, array in stored.items()
             if name.startswith("tokenizer.")}
    scales, shifts, matrices = [], [], []
    for node in graph.graph.node:
        for name in node.input:
            if name.startswith("tokenizer.") or name not in stored or stored[name].dtype != np.float32:
                continue
            array = stored.pop(name)  # first use only
            if node.op_type == "Mul" and array.ndim >= 2:
                scales.append(array.reshape(-1))
            elif node.op_type == "Add" and array.ndim >= 2:
                shifts.append(array.reshape(-1))
            elif node.op_type == "MatMul" and array.ndim == 2 and array.shape[0] == array.shape[1]:
                matrices.append(array.T)
    module = getattr(model, part)
    norms = _call_order(module, torch.nn.GroupNorm, model.tokenizer_config, part)
    attentions = [m for m in module.modules() if hasattr(m, "to_q")]
    linear = [layer for a in attentions for layer in (a.to_q, a.to_k, a.to_v, a.to_out[0])]
    if (len(scales), len(shifts), len(matrices)) != (len(norms), len(norms), len(linear)):
        raise ValueError(f"{path}: found {len(scales)} norm scales, {len(shifts)} shifts and {len(matrices)} "
                         f"attention matrices; the {part} has {len(norms)} norms and {len(linear)} matrices")
    names = {id(m): f"{part}.{name}" for name, m in module.named_modules()}
    for norm, scale, shift in zip(norms, scales, shifts, strict=True):
        state[f"{names[id(norm)]}.weight"] = torch.from_numpy(scale.copy())
        state[f"{names[id(norm)]}.bias"] = torch.from_numpy(shift.copy())
    for layer, matrix in zip(linear, matrices, strict=True):
        state[f"{names[id(layer)]}.weight"] = torch.from_numpy(np.ascontiguousarray(matrix))
    return state


def _call_order(module: torch.nn.Module, kind: type, cfg: TokenizerConfig, part: str) -> list[torch.nn.Module]:
    """The submodules of `kind` in the order one forward pass calls them."""
    called: list[torch.nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, *_: called.append(m)) for m in module.modules() if isinstance(m, kind)]
    with torch.no_grad():
        if part == "encoder":
            module(torch.zeros(1, 3, cfg.image_size, cfg.image_size))
        else:
            module(torch.zeros(1, cfg.latent_channels, cfg.grid, cfg.grid))
    for hook in hooks:
        hook.remove()
    return list(dict.fromkeys(called))


class BundleTokenizer:
    """A model bundle's exported tokenizer (ONNX Runtime), frozen: train a new LVM on the codes of a shipped
    bundle without its PyTorch checkpoint. It encodes exactly as serving does, because it is the served graph.
    """

    def __init__(self, directory: str | Path) -> None:
        from engine.serving.runtime import Bundle  # ONNX Runtime; imported here so plain tokenizer use does not need it

        self.bundle = Bundle.load(directory, providers=["CPUExecutionProvider"])
        self.directory = self.bundle.directory
        self.tokenizer_config = tokenizer_config_from_dict(self.bundle.manifest["tokenizer_config"])

    def encode_uint8(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) at the tokenizer's size -> int64 codes (N, h*w)."""
        return self.bundle.encode(list(images)) if len(images) else np.zeros((0, 0), dtype=np.int64)


FrozenTokenizer = VQModel | PatchTokenizer | BundleTokenizer


def load_frozen_tokenizer(path: str | Path, device: torch.device | str = "cpu") -> FrozenTokenizer:
    """A tokenizer to encode training data with: a checkpoint file (PyTorch, on `device`) or a bundle directory.

    A bundle's graphs run on the CPU: on a GPU that would starve training, so there the bundle's weights are read
    back into PyTorch and encode on the device (the same codes but for near ties, see tests/test_default_bundle.py).
    """
    if Path(path).is_dir() and torch.device(device).type == "cpu":
        return BundleTokenizer(path)
    model = tokenizer_from_bundle(path) if Path(path).is_dir() else load_tokenizer(path, map_location="cpu")
    return model.to(device).eval().requires_grad_(False)


@torch.no_grad()
def encode_uint8(tokenizer: FrozenTokenizer, images: np.ndarray, device: torch.device, chunk: int = 256) -> np.ndarray:
    """uint8 (N, H, W, 3) -> int64 codes (N, h*w), batched on the device, fp32 (as the exported encoder)."""
    if isinstance(tokenizer, BundleTokenizer):
        return tokenizer.encode_uint8(images)
    pieces = []
    for start in range(0, len(images), chunk):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + chunk])).to(device)
        batch = batch.permute(0, 3, 1, 2).float() / 255.0
        with training.exact_fp32():
            codes = tokenizer.encode(batch) if isinstance(tokenizer, PatchTokenizer) else encode(tokenizer, batch)
            pieces.append(codes.cpu().numpy())
    return np.concatenate(pieces) if pieces else np.zeros((0, 0), dtype=np.int64)
