"""Pre-tokenized training shards: the round trip, the held-out seed refusal, damaged shards, training from them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import shards, train_lvm
from engine.data import PuzzleStream, StreamConfig, parse_mix
from engine.patch_tokenizer import PatchTokenizerConfig
from engine.tokenizer import build_tokenizer, encode_uint8, load_tokenizer, save_tokenizer
from puzzles.seeds import HELD_OUT_START
from tests.helpers import TINY_LVM_FLAGS, tiny_training_tokenizer

MIX = "matrix=1,sequence=1"


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.pt"
    save_tokenizer(build_tokenizer(tiny_training_tokenizer()), path)
    return path


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_path: Path) -> Path:
    out = tmp_path_factory.mktemp("shards") / "small"
    shards.main(["--tokenizer", str(tokenizer_path), "--mix", MIX, "--n", "6", "--seed", "500",
                 "--max-images", "9", "--out", str(out)])
    return out


def test_shard_holds_the_codes_the_tokenizer_gives_each_puzzle(shard_dir: Path, tokenizer_path: Path) -> None:
    shard = shards.Shard(shard_dir)
    assert len(shard) == 6 and shard.manifest["seed_range"] == [500, 505]
    tokenizer = load_tokenizer(tokenizer_path).eval()
    stream = PuzzleStream(StreamConfig(mix=parse_mix(MIX), image_size=16, max_images=9, base_seed=500,
                                       candidates=True))
    for index, sample in zip(range(len(shard)), stream, strict=False):
        stored = shard.sample(index)
        assert stored["seed"] == sample["seed"] and stored["family"] == sample["family"]
        expected = encode_uint8(tokenizer, sample["images"], torch.device("cpu"))
        np.testing.assert_array_equal(stored["codes"], expected)
        np.testing.assert_array_equal(stored["candidate_codes"],
                                      encode_uint8(tokenizer, sample["candidates"], torch.device("cpu")))
        assert stored["answer_index"] == sample["answer_index"]


def test_shards_refuse_held_out_seeds(tokenizer_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="held-out"):
        shards.main(["--tokenizer", str(tokenizer_path), "--mix", MIX, "--n", "10", "--seed",
                     str(HELD_OUT_START - 5), "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()


def test_reading_refuses_a_manifest_whose_seeds_are_held_out(shard_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in shard_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["seed_range"] = [HELD_OUT_START, HELD_OUT_START + 5]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(shards.ShardError, match="held-out"):
        shards.Shard(copy)


def test_a_damaged_shard_gives_a_clear_error(shard_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "damaged"
    copy.mkdir()
    for path in shard_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    data = bytearray((copy / "codes.npy").read_bytes())
    data[-1] ^= 0xFF
    (copy / "codes.npy").write_bytes(bytes(data))
    with pytest.raises(shards.ShardError, match=r"codes\.npy: checksum does not match"):
        shards.Shard(copy)
    (copy / "seeds.npy").unlink()
    with pytest.raises(shards.ShardError, match=r"seeds\.npy: missing"):
        shards.Shard(copy, verify=False)
    with pytest.raises(shards.ShardError, match="no shard manifest"):
        shards.Shard(tmp_path / "nowhere")


def test_a_shard_of_another_tokenizer_is_refused(shard_dir: Path) -> None:
    other = {**shards.Shard(shard_dir).manifest["tokenizer_config"], "codebook_size": 64}
    with pytest.raises(shards.ShardError, match="another tokenizer"):
        shards.Shard(shard_dir).check_fits(other, 9)


def test_train_lvm_trains_from_shards(shard_dir: Path, tokenizer_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "lvm"
    train_lvm.main(["--tokenizer", str(tokenizer_path), "--shards", str(shard_dir), "--out", str(out),
                    *TINY_LVM_FLAGS, "--context-length", "200", "--choice-weight", "0.5", "--steps", "2"])
    checkpoint = torch.load(out / "ckpt.pt", weights_only=False)
    assert checkpoint["step"] == 2 and checkpoint["tokens_seen"] > 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert all(r["time/forward"] > 0 and r["time/backward"] > 0 and r["time/choice"] > 0 for r in train)


def test_a_shard_written_before_the_gist_fields_fits_the_same_patch_tokenizer(shard_dir: Path) -> None:
    shard = shards.Shard(shard_dir)
    config = PatchTokenizerConfig(image_size=32, patch_size=8, codebook_size=2048)
    shard.manifest["tokenizer_config"] = {"image_size": 32, "patch_size": 8, "codebook_size": 2048, "kind": "patch"}
    shard.check_fits(config.to_dict(), 9)  # the manifest lacks gist_codes and gist_size: their defaults hold
    gist = PatchTokenizerConfig(image_size=32, patch_size=8, codebook_size=3072, gist_codes=1024)
    with pytest.raises(shards.ShardError, match="another tokenizer"):
        shard.check_fits(gist.to_dict(), 9)


def test_several_shards_read_as_one(shard_dir: Path) -> None:
    one, both = shards.Shard(shard_dir), shards.ShardSet([shard_dir, shard_dir])
    assert len(both) == 2 * len(one)
    for index in range(len(one)):
        again = both.sample(len(one) + index)
        assert again["seed"] == one.sample(index)["seed"]
        assert np.array_equal(again["codes"], one.sample(index)["codes"])
    assert [both.sample(i)["family"] for i in range(len(both))] == both.family_names().tolist()


def test_the_mixture_weights_the_shards_families() -> None:
    families = np.array(["matrix"] * 6 + ["sequence"] * 6)
    order = shards.family_weighted_order(families, {"matrix": 3, "sequence": 1, "analogy": 5}, seed=0)
    drawn = [next(order) for _ in range(4000)]
    matrix_share = np.mean([index < 6 for index in drawn])
    assert abs(matrix_share - 0.75) < 0.03  # analogy is absent from the shards: renormalised over the others
    assert sorted(set(drawn)) == list(range(12))
    only = shards.family_weighted_order(families, {"sequence": 1}, seed=0)
    assert all(next(only) >= 6 for _ in range(100))
    with pytest.raises(shards.ShardError, match="none of the shards' families"):
        next(shards.family_weighted_order(families, {"analogy": 1}, seed=0))


def test_family_weights_count_a_layout_as_its_family() -> None:
    assert train_lvm.family_weights("matrix:center=1,matrix=2,analogy=1") == {"matrix": 3.0, "analogy": 1.0}
