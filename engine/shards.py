"""Pre-tokenized training shards: puzzles generated and encoded once, then read back memory-mapped, so the LVM
trains at its own speed instead of waiting on rendering and the tokenizer.

    python -m engine.shards --tokenizer TOK --mix matrix=3,analogy=2,sequence=2 --n 20000 --seed 50000000 \\
        --out runs/shards/NAME
    python -m engine.train_lvm --tokenizer TOK --shards runs/shards/NAME --out runs/lvm --minutes 60

A shard is a directory: `manifest.json` and one `.npy` array per field (ragged parts through offsets):

    codes.npy              uint16 (images, tokens_per_image)  each puzzle's sentence images (kept panels, answer)
    image_offsets.npy      int64 (puzzles + 1)                puzzle i's images are codes[off[i]:off[i+1]]
    candidates.npy         uint16 (candidates, tokens_per_image)
    candidate_offsets.npy  int64 (puzzles + 1)                no candidates: an empty slice
    answer_index.npy       int16 (puzzles,)                   -1 for a puzzle without candidates
    seeds.npy              int64 (puzzles,)                   the generator seed of each puzzle
    families.npy           int8 (puzzles,)                    index into the manifest's "families"

The manifest records the tokenizer (its path and config), the vocabulary, image size, images per sentence, the
mixture, the seed range and the sha256 of every array; seeds are checked against the held-out range when a shard
is written and again when it is read.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from puzzles.seeds import HELD_OUT_END, HELD_OUT_START

FORMAT = "gelato-shards/1"
ARRAYS = ("codes", "image_offsets", "candidates", "candidate_offsets", "answer_index", "seeds", "families")


class ShardError(ValueError):
    """A shard directory that cannot be trained on; the message names the file and the problem."""


def check_seed_range(first: int, count: int) -> None:
    """Refuse a seed range [first, first + count) that touches the held-out evaluation seeds."""
    last = first + count - 1
    if first < 0 or count < 1:
        raise ShardError(f"seed range starting at {first} with {count} puzzles is empty or negative")
    if first < HELD_OUT_END and last >= HELD_OUT_START:
        raise ShardError(f"seeds {first}..{last} overlap the held-out evaluation range "
                         f"[{HELD_OUT_START}, {HELD_OUT_END}): training must never see an evaluation puzzle")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- writing -------------------------------------------------------------------------------------------------


@dataclass
class ShardSpec:
    tokenizer: str  # tokenizer checkpoint or bundle directory
    mix: str  # family weights, as engine.train_lvm --mix
    n: int  # puzzles
    seed: int  # first seed; puzzle i uses seed + i
    out: str  # output directory
    max_images: int = 9  # images per sentence, answer included (the LVM's context must hold them)


def write_shards(spec: ShardSpec, progress: bool = True) -> Path:
    """Generate spec.n puzzles from consecutive training seeds, encode them, write the shard directory."""
    import torch
    from tqdm import tqdm

    from engine.data import PuzzleStream, StreamConfig, mix_families, parse_mix
    from engine.tokenizer import encode_uint8, load_frozen_tokenizer

    check_seed_range(spec.seed, spec.n)
    tokenizer = load_frozen_tokenizer(spec.tokenizer, "cpu")
    config = tokenizer.tokenizer_config
    mix = parse_mix(spec.mix)
    stream = PuzzleStream(StreamConfig(mix=mix, image_size=config.image_size, max_images=spec.max_images,
                                       base_seed=spec.seed, candidates=True))
    families = mix_families(mix)
    parts: dict[str, list[np.ndarray]] = {"codes": [], "candidates": []}
    image_counts, candidate_counts, answers, seeds, family_ids = [], [], [], [], []
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        stacks = [sample["images"] for sample in pending] + [sample.get("candidates", np.zeros(
            (0, config.image_size, config.image_size, 3), np.uint8)) for sample in pending]
        codes = encode_uint8(tokenizer, np.concatenate(stacks), torch.device("cpu")).astype(np.uint16)
        pieces = np.split(codes, np.cumsum([len(stack) for stack in stacks])[:-1])
        parts["codes"].extend(pieces[: len(pending)])
        parts["candidates"].extend(pieces[len(pending) :])
        pending.clear()

    bar = tqdm(total=spec.n, desc="shards", disable=not progress, file=sys.stderr)
    for sample in stream:
        if sample["seed"] >= spec.seed + spec.n:
            break
        pending.append(sample)
        image_counts.append(len(sample["images"]))
        candidate_counts.append(len(sample.get("candidates", ())))
        answers.append(sample.get("answer_index", -1))
        seeds.append(sample["seed"])
        family_ids.append(families.index(sample["family"]))
        if len(pending) == 64:
            flush()
        bar.update(1)
    if pending:
        flush()
    bar.close()
    arrays = {
        "codes": np.concatenate(parts["codes"]),
        "image_offsets": np.concatenate([[0], np.cumsum(image_counts)]).astype(np.int64),
        "candidates": (np.concatenate(parts["candidates"]) if parts["candidates"]
                       else np.zeros((0, config.tokens_per_image), np.uint16)),
        "candidate_offsets": np.concatenate([[0], np.cumsum(candidate_counts)]).astype(np.int64),
        "answer_index": np.asarray(answers, dtype=np.int16),
        "seeds": np.asarray(seeds, dtype=np.int64),
        "families": np.asarray(family_ids, dtype=np.int8),
    }
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(out / f"{name}.npy", array)
    manifest = {
        "format": FORMAT,
        "tokenizer": str(spec.tokenizer),
        "tokenizer_config": config.to_dict(),
        "codebook_size": config.codebook_size,
        "tokens_per_image": config.tokens_per_image,
        "image_size": config.image_size,
        "max_images": spec.max_images,
        "mix": spec.mix,
        "families": families,
        "seed_range": [spec.seed, spec.seed + spec.n - 1],
        "puzzles": len(seeds),
        "sha256": {name: file_sha256(out / f"{name}.npy") for name in ARRAYS},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


# --- reading -------------------------------------------------------------------------------------------------


class Shard:
    """A shard directory, checked and memory-mapped; `sample(i)` gives puzzle i as training code arrays."""

    def __init__(self, directory: str | Path, verify: bool = True) -> None:
        self.directory = Path(directory)
        self.manifest = self._read_manifest()
        first, last = self.manifest["seed_range"]
        check_seed_range(int(first), int(last) - int(first) + 1)
        self.arrays = {name: self._load(name, verify) for name in ARRAYS}
        self._check_shapes()

    def _read_manifest(self) -> dict[str, Any]:
        path = self.directory / "manifest.json"
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise ShardError(f"{path}: no shard manifest (write one with python -m engine.shards)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ShardError(f"{path}: unreadable shard manifest ({error})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ShardError(f"{path}: not a {FORMAT} manifest")
        missing = [key for key in ("tokenizer_config", "codebook_size", "tokens_per_image", "max_images",
                                   "families", "seed_range", "puzzles", "sha256") if key not in manifest]
        if missing:
            raise ShardError(f"{path}: manifest lacks {', '.join(missing)}")
        return manifest

    def _load(self, name: str, verify: bool) -> np.ndarray:
        path = self.directory / f"{name}.npy"
        if not path.is_file():
            raise ShardError(f"{path}: missing shard array")
        if verify and file_sha256(path) != self.manifest["sha256"].get(name):
            raise ShardError(f"{path}: checksum does not match the manifest (the shard is damaged; write it again)")
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ShardError(f"{path}: unreadable array ({error})") from None

    def _check_shapes(self) -> None:
        a, n, t = self.arrays, int(self.manifest["puzzles"]), int(self.manifest["tokens_per_image"])
        problems = []
        for name in ("answer_index", "seeds", "families"):
            if a[name].shape != (n,):
                problems.append(f"{name} has shape {a[name].shape}, expected ({n},)")
        for codes, offsets in (("codes", "image_offsets"), ("candidates", "candidate_offsets")):
            if a[offsets].shape != (n + 1,) or a[codes].ndim != 2 or a[codes].shape[1] != t \
                    or int(a[offsets][-1]) != a[codes].shape[0]:
                problems.append(f"{codes}/{offsets} do not fit {n} puzzles of {t} tokens per image")
        if a["codes"].size and int(a["codes"].max()) >= int(self.manifest["codebook_size"]):
            problems.append("codes lie outside the codebook")
        if problems:
            raise ShardError(f"{self.directory}: " + "; ".join(problems))

    def __len__(self) -> int:
        return int(self.manifest["puzzles"])

    def sample(self, index: int) -> dict[str, Any]:
        """Puzzle `index` as the training loop takes it: sentence codes, candidates' codes, answer index."""
        a = self.arrays
        start, end = int(a["image_offsets"][index]), int(a["image_offsets"][index + 1])
        sample: dict[str, Any] = {"codes": np.asarray(a["codes"][start:end], dtype=np.int64),
                                  "family": self.manifest["families"][int(a["families"][index])],
                                  "seed": int(a["seeds"][index])}
        c_start, c_end = int(a["candidate_offsets"][index]), int(a["candidate_offsets"][index + 1])
        if c_end > c_start and int(a["answer_index"][index]) >= 0:
            sample["candidate_codes"] = np.asarray(a["candidates"][c_start:c_end], dtype=np.int64)
            sample["answer_index"] = int(a["answer_index"][index])
        return sample

    def check_fits(self, tokenizer_config: dict[str, Any], max_images: int) -> None:
        """Refuse a shard made with another tokenizer, or with longer sentences than the model's context holds."""
        from engine.tokenizer import tokenizer_config_from_dict

        # filled in with the defaults of fields added since, so older shards of the same tokenizer still fit
        ours, theirs = tokenizer_config, self.manifest["tokenizer_config"]
        if tokenizer_config_from_dict(ours).to_dict() != tokenizer_config_from_dict(theirs).to_dict():
            raise ShardError(f"{self.directory}: made with another tokenizer ({self.manifest.get('tokenizer')}); "
                             "its codes mean nothing to this one")
        if int(self.manifest["max_images"]) > max_images:
            raise ShardError(f"{self.directory}: sentences of up to {self.manifest['max_images']} images, the "
                             f"model's context holds {max_images}")


class ShardSet:
    """Several shard directories read as one: puzzle indices run through them in the order given."""

    def __init__(self, directories: list[str | Path], verify: bool = True) -> None:
        if not directories:
            raise ShardError("no shard directory given")
        self.shards = [Shard(directory, verify) for directory in directories]
        self.starts = np.cumsum([0] + [len(shard) for shard in self.shards])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def sample(self, index: int) -> dict[str, Any]:
        which = int(np.searchsorted(self.starts, index, side="right")) - 1
        return self.shards[which].sample(index - int(self.starts[which]))

    def check_fits(self, tokenizer_config: dict[str, Any], max_images: int) -> None:
        for shard in self.shards:
            shard.check_fits(tokenizer_config, max_images)

    def family_names(self) -> np.ndarray:
        """Each puzzle's family name, in index order."""
        return np.concatenate([np.asarray(shard.manifest["families"])[np.asarray(shard.arrays["families"])]
                               for shard in self.shards])


def family_weighted_order(families: np.ndarray, weights: dict[str, float], seed: int, rank: int = 0,
                          world_size: int = 1) -> Iterator[int]:
    """Endless puzzle indices whose families follow `weights` (renormalised over the families the shards hold; a
    family without weight is never drawn); within a family, shuffled epochs as in `shard_order`."""
    drawn = [name for name in dict.fromkeys(families.tolist()) if weights.get(name, 0) > 0]
    if not drawn:
        raise ShardError(f"the mixture {weights} weights none of the shards' families "
                         f"({', '.join(sorted(set(families.tolist())))})")
    members = [np.flatnonzero(families == name) for name in drawn]
    orders = [shard_order(len(indices), seed + k, rank, world_size) for k, indices in enumerate(members)]
    share = np.array([weights[name] for name in drawn], dtype=float)
    share /= share.sum()
    rng = np.random.default_rng([seed, rank])
    while True:
        k = int(rng.choice(len(drawn), p=share))
        yield int(members[k][next(orders[k])])


def shard_order(count: int, seed: int, rank: int = 0, world_size: int = 1) -> Iterator[int]:
    """Endless epochs over `count` puzzles, each shuffled anew; ranks take interleaved slices."""
    epoch = 0
    while True:
        order = list(range(count))
        random.Random(seed + epoch).shuffle(order)
        yield from order[rank::world_size]
        epoch += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.shards", description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="tokenizer checkpoint or bundle directory")
    parser.add_argument("--mix", default="matrix=3,analogy=2,sequence=2", help="family weights")
    parser.add_argument("--n", type=int, required=True, help="puzzles to write")
    parser.add_argument("--seed", type=int, required=True, help="first training seed (puzzle i uses seed + i)")
    parser.add_argument("--max-images", type=int, default=9, help="images per sentence, answer included")
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    out = write_shards(ShardSpec(args.tokenizer, args.mix, args.n, args.seed, args.out, args.max_images))
    shard = Shard(out)
    sys.stdout.write(f"{len(shard)} puzzles, {shard.arrays['codes'].shape[0]} images -> {out}\n")


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.shards")
