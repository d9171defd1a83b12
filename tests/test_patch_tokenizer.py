"""The patch tokenizer: codes round-trip, the k-means fit, its checkpoint, its bundle graphs and training on it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import export, patch_tokenizer, shards, train_lvm
from engine import tokenizer as vq
from engine.model import LVM, LVMConfig
from engine.model_card import _panel_codes
from engine.patch_tokenizer import PatchTokenizer, PatchTokenizerConfig
from engine.serving.runtime import Bundle
from engine.serving.sentences import Vocabulary
from tests.helpers import TINY_LVM_FLAGS

CONFIG = PatchTokenizerConfig(image_size=16, patch_size=4, codebook_size=64)


def random_tokenizer(seed: int = 0) -> PatchTokenizer:
    model = PatchTokenizer(CONFIG)
    generator = torch.Generator().manual_seed(seed)
    model.codebook.copy_(torch.rand(CONFIG.codebook_size, CONFIG.patch_dim, generator=generator))
    return model.eval()


def test_decoded_codes_encode_back_to_the_same_codes() -> None:
    model = random_tokenizer()
    codes = torch.randint(0, CONFIG.codebook_size, (5, CONFIG.tokens_per_image))
    images = model.decode(codes)
    assert images.shape == (5, 3, 16, 16)
    assert torch.equal(model.encode(images), codes)


def test_a_patch_lands_in_its_own_cell() -> None:
    """Code i of row r, column c paints pixels [4r:4r+4, 4c:4c+4] with codebook entry i."""
    model = random_tokenizer()
    codes = torch.zeros(1, CONFIG.tokens_per_image, dtype=torch.long)
    codes[0, 1 * CONFIG.grid + 2] = 7
    image = model.decode(codes)[0]
    expected = model.codebook[7].reshape(4, 4, 3).permute(2, 0, 1)
    assert torch.allclose(image[:, 4:8, 8:12], expected)


def test_kmeans_finds_well_separated_clusters() -> None:
    centres = torch.eye(6).repeat_interleave(8, dim=1)[:, : CONFIG.patch_dim]  # 6 distinct corner-like patches
    noise = 0.01 * torch.randn(600, CONFIG.patch_dim, generator=torch.Generator().manual_seed(1))
    patches = centres.repeat(100, 1) + noise
    codebook = patch_tokenizer.fit_codebook(patches, 6, iterations=10)
    assert torch.cdist(centres, codebook).min(dim=1).values.max() < 0.05


def test_fit_refuses_too_few_patches() -> None:
    with pytest.raises(ValueError, match="cannot fill"):
        patch_tokenizer.fit_codebook(torch.rand(3, CONFIG.patch_dim), 8, iterations=1)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        PatchTokenizerConfig(image_size=30, patch_size=8)


def test_checkpoint_loads_as_a_patch_tokenizer(tmp_path: Path) -> None:
    model = random_tokenizer()
    patch_tokenizer.save_patch_tokenizer(model, tmp_path / "tok.pt")
    loaded = vq.load_tokenizer(tmp_path / "tok.pt")
    assert isinstance(loaded, PatchTokenizer) and torch.equal(loaded.codebook, model.codebook)
    images = (np.random.default_rng(0).random((4, 16, 16, 3)) * 255).astype(np.uint8)
    codes = vq.encode_uint8(loaded, images, torch.device("cpu"))
    expected = model.encode(torch.from_numpy(images).permute(0, 3, 1, 2) / 255.0)
    assert codes.shape == (4, 16) and np.array_equal(codes, expected.numpy())


@pytest.fixture(scope="module")
def patch_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    vocab = Vocabulary(CONFIG.codebook_size, CONFIG.tokens_per_image)
    lvm = LVM(LVMConfig(vocab_size=vocab.vocab_size, context_length=1 + 6 * 16 + 1, n_layer=1, d_model=32, n_head=2,
                        n_kv_head=1, ffn_hidden=64))
    return export.export_bundle(random_tokenizer(), lvm, tmp_path_factory.mktemp("bundle") / "patch", name="patch")


def test_bundle_encodes_and_decodes_as_pytorch(patch_bundle: Path) -> None:
    model, bundle = random_tokenizer(), Bundle.load(patch_bundle, providers=["CPUExecutionProvider"])
    assert bundle.manifest["tokenizer_config"]["kind"] == "patch" and bundle.tokens_per_image == 16
    codes = torch.randint(0, CONFIG.codebook_size, (3, CONFIG.tokens_per_image))
    images = [(image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for image in model.decode(codes)]
    decoded = bundle.decode(codes.numpy())
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(decoded, images, strict=True))
    pytorch = model.encode(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0)
    assert np.array_equal(bundle.encode(images), pytorch.numpy())


def test_codebook_is_read_back_from_the_bundle(patch_bundle: Path) -> None:
    back = vq.tokenizer_from_bundle(patch_bundle)
    assert isinstance(back, PatchTokenizer) and torch.equal(back.codebook, random_tokenizer().codebook)


def test_train_lvm_trains_on_patch_codes_from_shards(tmp_path: Path) -> None:
    patch_tokenizer.save_patch_tokenizer(random_tokenizer(), tmp_path / "tok.pt")
    shards.main(["--tokenizer", str(tmp_path / "tok.pt"), "--mix", "matrix=1,sequence=1", "--n", "4", "--seed", "700",
                 "--max-images", "9", "--out", str(tmp_path / "shards")])
    for run, extra in (("lvm", []), ("augmented", ["--augment"])):
        train_lvm.main(["--tokenizer", str(tmp_path / "tok.pt"), "--shards", str(tmp_path / "shards"),
                        "--out", str(tmp_path / run), "--steps", "2", *TINY_LVM_FLAGS, *extra])
        assert (tmp_path / run / "ckpt.pt").is_file()
    with pytest.raises(ValueError, match="give --shards"):
        train_lvm.main(["--tokenizer", str(tmp_path / "tok.pt"), "--out", str(tmp_path / "streamed"), "--steps", "1",
                        "--augment", *TINY_LVM_FLAGS])


@pytest.mark.parametrize("symmetry", range(patch_tokenizer.SYMMETRIES))
def test_codes_turned_in_code_space_are_the_codes_of_the_turned_picture(symmetry: int) -> None:
    """A panel drawn from codebook entries, turned or flipped as a picture and encoded again, has exactly the codes
    that the code-space symmetry gives (the whole-puzzle augmentation of shards)."""
    model = random_tokenizer()
    codes = torch.randint(0, CONFIG.codebook_size, (3, CONFIG.tokens_per_image))
    pictures = model.decode(codes).permute(0, 2, 3, 1).numpy()  # (n, H, W, 3)
    turned = np.stack([patch_tokenizer.turn_and_flip(picture, symmetry) for picture in pictures])
    encoded = model.encode(torch.from_numpy(np.ascontiguousarray(turned)).permute(0, 3, 1, 2))
    symmetries = patch_tokenizer.code_symmetries(model)
    assert np.array_equal(symmetries.apply(codes.numpy(), symmetry), encoded.numpy())
    assert (symmetry == 0) == np.array_equal(symmetries.apply(codes.numpy(), symmetry), codes.numpy())


def test_augmentation_needs_a_patch_tokenizer() -> None:
    with pytest.raises(ValueError, match="needs a patch tokenizer"):
        train_lvm.code_symmetries_for(vq.build_tokenizer(vq.TokenizerConfig()))


# --- the gist token: the panel shrunk to a few pixels, one code ahead of the patches ---------------------------

GIST_CONFIG = PatchTokenizerConfig(image_size=16, patch_size=4, codebook_size=64 + 8, gist_codes=8, gist_size=4)


def gist_tokenizer(seed: int = 0) -> PatchTokenizer:
    model = PatchTokenizer(GIST_CONFIG)
    model.codebook.copy_(random_tokenizer(seed).codebook)
    model.gist_codebook.copy_(torch.linspace(0, 1, 8)[:, None].repeat(1, GIST_CONFIG.gist_dim))  # flat greys
    return model.eval()


def test_the_gist_code_comes_first_and_names_the_shrunk_panel() -> None:
    model = gist_tokenizer()
    grey = torch.full((1, 3, 16, 16), 0.6)  # a flat grey panel: its gist is the nearest flat grey, 4/7
    codes = model.encode(grey)
    assert GIST_CONFIG.tokens_per_image == 17 and codes.shape == (1, 17)
    assert codes[0, 0] == GIST_CONFIG.patch_codes + 4
    assert torch.equal(codes[:, 1:], random_tokenizer().encode(grey))  # the patches are the plain tokenizer's


def test_the_decoder_draws_the_patches_and_ignores_the_gist() -> None:
    model, plain = gist_tokenizer(), random_tokenizer()
    patches = torch.randint(0, 64, (3, 16))
    for gist in (64, 71):
        codes = torch.cat([torch.full((3, 1), gist), patches], 1)
        assert torch.equal(model.decode(codes), plain.decode(patches))
    stray = patches.clone()
    stray[:, 5] = 70  # a gist code sampled into a patch's place draws the brightest patch
    brightest = int(model.codebook.sum(-1).argmax())
    expected = patches.clone()
    expected[:, 5] = brightest
    assert torch.equal(model.decode(torch.cat([torch.full((3, 1), 64), stray], 1)), plain.decode(expected))


def test_gist_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="gist_codes"):
        PatchTokenizerConfig(image_size=16, patch_size=4, codebook_size=8, gist_codes=8)
    with pytest.raises(ValueError, match="gist_size"):
        PatchTokenizerConfig(image_size=16, patch_size=4, codebook_size=72, gist_codes=8, gist_size=5)
    with pytest.raises(ValueError, match="without gist codes"):
        patch_tokenizer.code_symmetries(gist_tokenizer())


def test_a_gist_bundle_serves_as_pytorch_and_reads_back(tmp_path: Path) -> None:
    model = gist_tokenizer()
    vocab = Vocabulary(GIST_CONFIG.codebook_size, GIST_CONFIG.tokens_per_image)
    lvm = LVM(LVMConfig(vocab_size=vocab.vocab_size, context_length=1 + 6 * 18, n_layer=1, d_model=32, n_head=2,
                        n_kv_head=1, ffn_hidden=64))
    directory = export.export_bundle(model, lvm, tmp_path / "gist", name="gist")
    bundle = Bundle.load(directory, providers=["CPUExecutionProvider"])
    images = (np.random.default_rng(1).random((4, 16, 16, 3)) * 255).astype(np.uint8)
    pytorch = model.encode(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0)
    assert bundle.tokens_per_image == 17 and np.array_equal(bundle.encode(list(images)), pytorch.numpy())
    decoded = bundle.decode(pytorch.numpy())
    expected = (model.decode(pytorch).permute(0, 2, 3, 1).numpy() * 255).round()
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(decoded, expected, strict=True))
    back = vq.tokenizer_from_bundle(directory)
    assert torch.equal(back.codebook, model.codebook) and torch.equal(back.gist_codebook, model.gist_codebook)


def test_the_model_card_names_the_gist_and_the_patch_codebook_apart(tmp_path: Path) -> None:
    lvm = LVM(LVMConfig(vocab_size=Vocabulary(72, 17).vocab_size, context_length=1 + 6 * 18, n_layer=1, d_model=32,
                        n_head=2, n_kv_head=1, ffn_hidden=64))
    gist = json.loads((export.export_bundle(gist_tokenizer(), lvm, tmp_path / "gist") / "manifest.json").read_text())
    assert _panel_codes(gist) == ("one gist code (the panel shrunk to 4x4 px, from a second codebook of 8; the model "
                                  "reads it first, the decoder ignores it), then a 4x4 grid of codes from a codebook "
                                  "of 64")
    lvm = LVM(LVMConfig(vocab_size=Vocabulary(64, 16).vocab_size, context_length=1 + 6 * 17, n_layer=1, d_model=32,
                        n_head=2, n_kv_head=1, ffn_hidden=64))
    plain_bundle = export.export_bundle(random_tokenizer(), lvm, tmp_path / "plain")
    plain = json.loads((plain_bundle / "manifest.json").read_text())
    assert _panel_codes(plain) == "a 4x4 grid of codes from a codebook of 64"
