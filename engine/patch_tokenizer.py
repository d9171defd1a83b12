"""A patch tokenizer: a panel cut into a grid of square patches, each patch the index of its nearest codebook
entry. The codebook is k-means over patches of training panels (flipped and turned, as the VQ tokenizer's data),
so there is no network to train: fitting takes minutes on a CPU, encoding is a nearest-neighbour search and
decoding a table lookup.

    python -m engine.patch_tokenizer --out runs/patch16/tokenizer.pt --image-size 32 --patch-size 8 \\
        --codebook-size 2048 --puzzles 1500

At 32 px with 8 px patches a panel is 16 codes: a 3x3 matrix is 146 tokens instead of 578 (docs/model-experiments.md).
With `--gist-codes N` each panel starts with one more code, a gist: the panel shrunk to 8 x 8 px and matched
against a second k-means codebook of N entries, so the shape's size, place and grey are one token that the LVM
reads (and, generating, decides) before the patches. The decoder draws the patches and ignores the gist.

Its checkpoint is a tokenizer checkpoint (`tokenizer_config` with `"kind": "patch"`, `tokenizer` with the
codebooks), which engine.tokenizer.load_tokenizer reads like the VQ tokenizer's.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.data import SYMMETRIES, turn_and_flip

KIND = "patch"


@dataclass
class PatchTokenizerConfig:
    image_size: int = 32  # square input side in pixels
    patch_size: int = 8  # square patch side; one code per patch
    codebook_size: int = 2048  # number of codes K the LVM sees: the patch codes, then the gist codes
    gist_codes: int = 0  # how many of the K codes are gist codes (0: no gist token)
    gist_size: int = 8  # side of the shrunk panel a gist code stands for
    kind: str = KIND

    def __post_init__(self) -> None:
        if self.kind != KIND:
            raise ValueError(f"not a patch tokenizer config: kind {self.kind!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        if self.image_size % self.gist_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by gist_size {self.gist_size}")
        if not 0 <= self.gist_codes < self.codebook_size:
            raise ValueError(f"gist_codes must lie in [0, {self.codebook_size}), got {self.gist_codes}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens_per_image(self) -> int:
        return self.grid * self.grid + (1 if self.gist_codes else 0)

    @property
    def patch_codes(self) -> int:
        return self.codebook_size - self.gist_codes

    @property
    def patch_dim(self) -> int:
        return self.patch_size * self.patch_size * 3

    @property
    def gist_dim(self) -> int:
        return self.gist_size * self.gist_size * 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PatchTokenizerConfig:
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown PatchTokenizerConfig fields: {', '.join(sorted(unknown))}")
        return cls(**values)


def is_patch_config(values: dict[str, Any]) -> bool:
    return values.get("kind") == KIND


class PatchTokenizer(nn.Module):
    """Images [N, 3, H, W] float in [0, 1] <-> codes [N, tokens_per_image] through fixed codebooks: the gist code
    first when there is one, then the patch codes row-major."""

    def __init__(self, config: PatchTokenizerConfig) -> None:
        super().__init__()
        self.tokenizer_config = config
        self.register_buffer("codebook", torch.zeros(config.patch_codes, config.patch_dim))
        if config.gist_codes:
            self.register_buffer("gist_codebook", torch.zeros(config.gist_codes, config.gist_dim))

    def _checked(self, images: torch.Tensor) -> torch.Tensor:
        cfg = self.tokenizer_config
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, cfg.image_size, cfg.image_size):
            raise ValueError(f"images must be [N, 3, {cfg.image_size}, {cfg.image_size}], got {tuple(images.shape)}")
        return images.float()

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> [N, grid*grid, p*p*3], each patch flattened as (row, column, channel)."""
        cfg = self.tokenizer_config
        n, g, p = images.shape[0], cfg.grid, cfg.patch_size
        grid = self._checked(images).permute(0, 2, 3, 1).reshape(n, g, p, g, p, 3)
        return grid.permute(0, 1, 3, 2, 4, 5).reshape(n, g * g, cfg.patch_dim)

    def gists(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> [N, s*s*3]: each panel's mean over s x s blocks, flattened as (row, column, channel)."""
        cfg = self.tokenizer_config
        n, s = images.shape[0], cfg.gist_size
        block = cfg.image_size // s
        shrunk = self._checked(images).reshape(n, 3, s, block, s, block).mean((3, 5))
        return shrunk.permute(0, 2, 3, 1).reshape(n, cfg.gist_dim)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        codes = self.encode_patches(self.patches(images))
        if not self.tokenizer_config.gist_codes:
            return codes
        gist = nearest_entry(self.gists(images), self.gist_codebook) + self.tokenizer_config.patch_codes
        return torch.cat([gist[:, None], codes], 1)

    def encode_patches(self, flat: torch.Tensor) -> torch.Tensor:
        return nearest_entry(flat, self.codebook)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        cfg = self.tokenizer_config
        codes = codes.long()
        if cfg.gist_codes:
            # the patches alone draw the panel; a gist code sampled into a patch's place draws the brightest entry
            codes = codes[:, 1:]
            codes = torch.where(codes < cfg.patch_codes, codes, self.codebook.sum(-1).argmax())
        n, g, p = codes.shape[0], cfg.grid, cfg.patch_size
        patches = self.codebook[codes].reshape(n, g, g, p, p, 3)
        return patches.permute(0, 5, 1, 3, 2, 4).reshape(n, 3, cfg.image_size, cfg.image_size).clamp(0.0, 1.0)


def nearest_entry(flat: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Nearest entry per row: argmin of |x|^2 - 2 x.c + |c|^2, the same in PyTorch and in the ONNX graph."""
    distances = (codebook * codebook).sum(-1) - 2.0 * flat.float() @ codebook.T
    return distances.argmin(-1)


# --- the 8 square symmetries in code space (whole-puzzle augmentation of pre-tokenized shards) -----------------


@dataclass
class CodeSymmetries:
    """Where each grid cell's code goes and which code a turned or flipped patch is nearest to, for each symmetry:
    a panel's codes under a flip or turn without decoding and re-encoding it."""

    cells: np.ndarray  # (8, g*g): the new panel's cell i holds the old panel's cell cells[s, i]
    codes: np.ndarray  # (8, K): code c's patch under symmetry s is nearest to code codes[s, c]

    def apply(self, codes: np.ndarray, symmetry: int) -> np.ndarray:
        """Codes (..., g*g) of panels, all under one symmetry."""
        return self.codes[symmetry][codes[..., self.cells[symmetry]]]


def code_symmetries(model: PatchTokenizer) -> CodeSymmetries:
    cfg = model.tokenizer_config
    if cfg.gist_codes:
        raise ValueError("whole-puzzle augmentation in code space needs a tokenizer without gist codes")
    g, p = cfg.grid, cfg.patch_size
    grid = np.arange(g * g).reshape(g, g)
    cells = np.stack([turn_and_flip(grid, s).ravel() for s in range(SYMMETRIES)])
    entries = model.codebook.detach().cpu().numpy().reshape(-1, p, p, 3)
    table = []
    for symmetry in range(SYMMETRIES):
        moved = np.stack([turn_and_flip(entry, symmetry) for entry in entries]).reshape(len(entries), -1)
        table.append(model.encode_patches(torch.from_numpy(np.ascontiguousarray(moved))).numpy())
    return CodeSymmetries(cells, np.stack(table))


def patch_tokenizer_from_checkpoint(checkpoint: dict[str, Any]) -> PatchTokenizer:
    model = PatchTokenizer(PatchTokenizerConfig.from_dict(checkpoint["tokenizer_config"]))
    model.load_state_dict({name: tensor.float() for name, tensor in checkpoint["tokenizer"].items()})
    return model.eval()


def save_patch_tokenizer(model: PatchTokenizer, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"tokenizer_config": model.tokenizer_config.to_dict(),
                "tokenizer": {name: tensor.cpu() for name, tensor in model.state_dict().items()}}, Path(path))


# --- fitting the codebook ------------------------------------------------------------------------------------


def training_images(config: PatchTokenizerConfig, puzzles: int, mix: str, seed: int) -> torch.Tensor:
    """Every panel, answer and candidate of `puzzles` training puzzles [N, 3, H, W] in [0, 1], each puzzle's
    images under one random flip or quarter turn."""
    import random

    from tqdm import tqdm

    from engine.data import PuzzleStream, StreamConfig, augment, parse_mix
    from puzzles.images import to_square
    from puzzles.seeds import check_training_seed

    stream = PuzzleStream(StreamConfig(mix=parse_mix(mix), base_seed=seed))
    found: list[torch.Tensor] = []
    for index in tqdm(range(puzzles), desc="puzzles", file=sys.stderr):
        puzzle_seed = check_training_seed(seed + index)
        puzzle = stream.puzzle_for(puzzle_seed, size=config.image_size)
        images = [*puzzle.panels, *([puzzle.answer] if puzzle.answer is not None else []), *puzzle.candidates]
        stack = augment(np.stack([to_square(image, config.image_size) for image in images]),
                        random.Random(puzzle_seed))
        found.append(torch.from_numpy(stack).permute(0, 3, 1, 2).float() / 255.0)
    return torch.cat(found)


def fit_codebook(patches: torch.Tensor, codebook_size: int, iterations: int, seed: int = 0) -> torch.Tensor:
    """Lloyd's k-means from distinct random patches (or gists); an empty code restarts at the worst-fitted one."""
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(seed)
    if len(patches) < codebook_size:
        raise ValueError(f"{len(patches)} distinct patches cannot fill {codebook_size} codes: use more puzzles")
    codebook = patches[torch.randperm(len(patches), generator=generator)[:codebook_size]].clone()
    for _ in tqdm(range(iterations), desc="k-means", file=sys.stderr):
        assignment, errors = nearest(patches, codebook)
        counts = torch.bincount(assignment, minlength=codebook_size)
        sums = torch.zeros_like(codebook).index_add_(0, assignment, patches)
        used = counts > 0
        codebook[used] = sums[used] / counts[used, None]
        if not used.all():
            codebook[~used] = patches[errors.topk(int((~used).sum())).indices]
    return codebook


def nearest(patches: torch.Tensor, codebook: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest code and the squared error, per patch (chunked to bound memory)."""
    indices, errors = [], []
    for start in range(0, len(patches), chunk):
        distances = torch.cdist(patches[start : start + chunk], codebook)
        best = distances.min(-1)
        indices.append(best.indices)
        errors.append(best.values.square())
    return torch.cat(indices), torch.cat(errors)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="checkpoint file to write")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=8)
    parser.add_argument("--codebook-size", type=int, default=2048, help="patch codes")
    parser.add_argument("--gist-codes", type=int, default=0, help="gist codes (0: no gist token)")
    parser.add_argument("--puzzles", type=int, default=1500, help="training puzzles whose images give the patches")
    parser.add_argument("--mix", default="matrix=3,analogy=3,sequence=3,grid=1", help="family weights")
    parser.add_argument("--iterations", type=int, default=25, help="k-means iterations")
    parser.add_argument("--seed", type=int, default=5_000_000, help="first training seed")
    args = parser.parse_args(argv)
    config = PatchTokenizerConfig(args.image_size, args.patch_size, args.codebook_size + args.gist_codes,
                                  gist_codes=args.gist_codes)
    started = time.monotonic()
    images = training_images(config, args.puzzles, args.mix, args.seed)
    model = PatchTokenizer(config)
    patches = torch.unique(model.patches(images).flatten(0, 1), dim=0)
    model.codebook.copy_(fit_codebook(patches, args.codebook_size, args.iterations, args.seed))
    print(f"{args.out}: {args.codebook_size} codes of {config.patch_size}x{config.patch_size} px from "
          f"{len(patches)} distinct patches", file=sys.stderr)
    if args.gist_codes:
        gists = torch.unique(model.gists(images), dim=0)
        model.gist_codebook.copy_(fit_codebook(gists, args.gist_codes, args.iterations, args.seed))
        print(f"{args.out}: {args.gist_codes} gist codes of {config.gist_size}x{config.gist_size} px from "
              f"{len(gists)} distinct gists", file=sys.stderr)
    save_patch_tokenizer(model, args.out)
    print(f"{args.out}: written in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return Path(args.out)


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.patch_tokenizer")
