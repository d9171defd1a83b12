"""Export parity: the ONNX graphs of a tiny random-init bundle agree with PyTorch.

Tolerances (fp32): LVM logits max abs diff < 1e-3, decoder pixels max abs diff < 1e-4, encoder codes equal,
greedy generation token-for-token equal.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from engine import export
from engine import tokenizer as vq
from engine.bundle import sha256_file
from engine.model import LVM, LVMConfig, load_model
from engine.serving import decode
from tests.helpers import PROVENANCE, build_tiny_bundle, tiny_configs

TOKENIZER_CONFIG, VOCAB, LVM_CONFIG, _ = tiny_configs()


@pytest.fixture(scope="module")
def tiny() -> tuple[Path, Path, Path]:
    return build_tiny_bundle()


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def torch_greedy(model: LVM, context: torch.Tensor, n_tokens: int, code_end: int) -> list[int]:
    """Reference greedy decoding in PyTorch with the same rule as the runtime: only image codes are chosen."""
    tokens: list[int] = []
    with torch.no_grad():
        logits, cache = model(context[None, :])
        for _ in range(n_tokens):
            token = int(logits[0, -1, :code_end].argmax())
            tokens.append(token)
            logits, cache = model(torch.tensor([[token]]), cache)
    return tokens


def test_manifest_lists_files_configs_and_provenance(tiny: tuple[Path, Path, Path]) -> None:
    bundle_dir, _, _ = tiny
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["name"] == "tiny-test"
    assert manifest["image_size"] == 16 and manifest["token_grid"] == [4, 4] and manifest["tokens_per_image"] == 16
    assert manifest["codebook_size"] == 32 and manifest["vocab_size"] == VOCAB.vocab_size
    assert manifest["special_tokens"] == {"bos": VOCAB.bos, "eos": VOCAB.eos}
    assert manifest["context_length"] == LVM_CONFIG.context_length
    assert manifest["lvm_config"] == LVM_CONFIG.to_dict()
    assert manifest["tokenizer_config"] == TOKENIZER_CONFIG.to_dict()
    assert manifest["provenance"]["lvm"] == PROVENANCE
    assert manifest["provenance"]["tokenizer"] == {"steps": 7}
    assert manifest["metrics"] == {}
    assert set(manifest["files"]) == {"encoder.onnx", "decoder.onnx", "lvm.onnx"}
    for name, entry in manifest["files"].items():
        assert entry == {"sha256": sha256_file(bundle_dir / name), "bytes": (bundle_dir / name).stat().st_size}
    assert sorted(p.name for p in bundle_dir.iterdir()) == ["decoder.onnx", "encoder.onnx", "lvm.onnx", "manifest.json"]


def test_encoder_codes_match_pytorch(tiny: tuple[Path, Path, Path]) -> None:
    bundle_dir, tokenizer_path, _ = tiny
    tokenizer = vq.load_tokenizer(tokenizer_path)
    images = torch.rand(5, 3, 16, 16)  # batch 5: not the export's example batch
    expected = vq.encode(tokenizer, images).numpy()
    (codes,) = session(bundle_dir / "encoder.onnx").run(None, {"images": images.numpy()})
    assert codes.dtype == np.int64 and codes.shape == (5, 16)
    np.testing.assert_array_equal(codes, expected)


def test_decoder_images_close_to_pytorch(tiny: tuple[Path, Path, Path]) -> None:
    bundle_dir, tokenizer_path, _ = tiny
    tokenizer = vq.load_tokenizer(tokenizer_path)
    codes = torch.randint(0, 32, (3, 16))
    expected = vq.decode(tokenizer, codes).numpy()
    (images,) = session(bundle_dir / "decoder.onnx").run(None, {"codes": codes.numpy()})
    assert images.shape == (3, 3, 16, 16)
    assert np.abs(images - expected).max() < 1e-4


@pytest.mark.parametrize(("batch", "new_len", "past_len"), [(1, 7, 0), (3, 1, 5), (1, 1, 0), (4, 16, 17)])
def test_lvm_logits_and_cache_match_pytorch(tiny: tuple[Path, Path, Path], batch: int, new_len: int,
                                            past_len: int) -> None:
    bundle_dir, _, lvm_path = tiny
    model = load_model(lvm_path).eval()
    ids = torch.randint(0, VOCAB.vocab_size, (batch, new_len))
    shape = (batch, LVM_CONFIG.n_kv_head, past_len, LVM_CONFIG.head_dim)
    past = [(torch.randn(shape), torch.randn(shape)) for _ in range(LVM_CONFIG.n_layer)]
    with torch.no_grad():
        logits, present = model(ids, past)
    runner = decode.LvmRunner(session(bundle_dir / "lvm.onnx"))
    onnx_logits, onnx_cache = runner.forward(ids.numpy(), [t.numpy() for pair in past for t in pair])
    assert np.abs(onnx_logits - logits.numpy()).max() < 1e-3
    for onnx_tensor, tensor in zip(onnx_cache, [t for pair in present for t in pair], strict=True):
        assert onnx_tensor.shape == (batch, LVM_CONFIG.n_kv_head, past_len + new_len, LVM_CONFIG.head_dim)
        assert np.abs(onnx_tensor - tensor.numpy()).max() < 1e-3


def test_greedy_generation_identical_to_pytorch(tiny: tuple[Path, Path, Path]) -> None:
    bundle_dir, _, lvm_path = tiny
    model = load_model(lvm_path).eval()
    context = torch.cat([torch.tensor([VOCAB.bos]), torch.randint(0, 32, (2 * 16,))])
    expected = torch_greedy(model, context, 16, VOCAB.codebook_size)
    runner = decode.LvmRunner(session(bundle_dir / "lvm.onnx"))
    empty = decode.empty_cache(LVM_CONFIG.n_layer, LVM_CONFIG.n_kv_head, LVM_CONFIG.head_dim)
    tokens = decode.generate(runner, context.numpy(), empty, 2, 16, (0, 32), decode.SamplingOptions(temperature=0))
    assert tokens.tolist() == [expected, expected]


def test_int8_stores_weights_only_and_stays_close(tiny: tuple[Path, Path, Path], tmp_path: Path) -> None:
    bundle_dir, tokenizer_path, lvm_path = tiny
    export.main(["--tokenizer", str(tokenizer_path), "--lvm", str(lvm_path), "--out", str(tmp_path), "--int8"])
    quantized = tmp_path / "lvm.onnx"
    assert json.loads((tmp_path / "manifest.json").read_text())["weights"] == "int8"
    assert quantized.stat().st_size < (bundle_dir / "lvm.onnx").stat().st_size
    operators = {node.op_type for node in onnx.load(str(quantized)).graph.node}
    assert "DequantizeLinear" in operators and "DynamicQuantizeLinear" not in operators
    ids = np.random.default_rng(0).integers(0, VOCAB.vocab_size, (2, 9))
    empty = decode.empty_cache(LVM_CONFIG.n_layer, LVM_CONFIG.n_kv_head, LVM_CONFIG.head_dim, batch=2)
    fp32_logits, _ = decode.LvmRunner(session(bundle_dir / "lvm.onnx")).forward(ids, empty)
    int8_logits, _ = decode.LvmRunner(session(quantized)).forward(ids, empty)
    assert np.abs(int8_logits - fp32_logits).max() < 0.1 * np.abs(fp32_logits).max()


def test_incompatible_checkpoints_are_refused() -> None:
    small_vocab = LVM(LVMConfig(vocab_size=16, context_length=64, n_layer=1, d_model=16, n_head=2, n_kv_head=2,
                                ffn_hidden=32))
    with pytest.raises(ValueError, match="vocab_size 16 is too small"):
        export.check_compatible(TOKENIZER_CONFIG, small_vocab)


def test_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        export.export_from_checkpoints(tmp_path / "nowhere.pt", tmp_path / "lvm.pt", tmp_path / "out")


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "python -m engine.export" in help_text and "--int8" in help_text and "--tokenizer" in help_text


def test_fp16_storage_halves_weights_and_keeps_logits(tiny: tuple[Path, Path, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import compact

    bundle_dir, _, _ = tiny
    monkeypatch.setattr(compact, "MIN_ELEMENTS", 16)  # the tiny model's matrices are small
    stored = tmp_path / "lvm.onnx"
    stored.write_bytes((bundle_dir / "lvm.onnx").read_bytes())
    before, after = compact.store_weights_fp16(stored)
    assert after < 0.9 * before  # the tiny graph also holds int tensors and small constants
    ids = np.random.default_rng(1).integers(0, VOCAB.vocab_size, (2, 9))
    empty = decode.empty_cache(LVM_CONFIG.n_layer, LVM_CONFIG.n_kv_head, LVM_CONFIG.head_dim, batch=2)
    fp32_logits, _ = decode.LvmRunner(session(bundle_dir / "lvm.onnx")).forward(ids, empty)
    fp16_logits, _ = decode.LvmRunner(session(stored)).forward(ids, empty)
    assert np.abs(fp16_logits - fp32_logits).max() < 1e-2 * np.abs(fp32_logits).max()


def test_lossless_fp16_storage_changes_no_output(tiny: tuple[Path, Path, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx
    from onnx import numpy_helper

    from engine import compact

    bundle_dir, _, _ = tiny
    monkeypatch.setattr(compact, "MIN_ELEMENTS", 16)
    decoder = tmp_path / "decoder.onnx"
    model = onnx.load(str(bundle_dir / "decoder.onnx"))
    for index, initializer in enumerate(model.graph.initializer):  # make the weights exactly fp16-representable
        weights = numpy_helper.to_array(initializer)
        if weights.dtype == np.float32:
            rounded = numpy_helper.from_array(weights.astype(np.float16).astype(np.float32), initializer.name)
            model.graph.initializer[index].CopyFrom(rounded)
    onnx.save(model, str(decoder))
    original = tmp_path / "original.onnx"
    original.write_bytes(decoder.read_bytes())
    before, after = compact.store_weights_fp16(decoder, lossless_only=True)
    assert after < before
    codes = np.random.default_rng(2).integers(0, 32, (2, 16)).astype(np.int64)
    name = session(original).get_inputs()[0].name
    expected = session(original).run(None, {name: codes})[0]
    np.testing.assert_array_equal(session(decoder).run(None, {name: codes})[0], expected)


def test_stripping_the_exporters_notes_changes_no_output(tiny: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from engine import compact

    bundle_dir, _, _ = tiny
    stripped = tmp_path / "lvm.onnx"
    stripped.write_bytes((bundle_dir / "lvm.onnx").read_bytes())
    before, after = compact.strip_export_notes(stripped)
    assert after < before
    model = onnx.load(str(stripped))
    assert not model.graph.value_info and not any(node.metadata_props for node in model.graph.node)
    ids = np.random.default_rng(3).integers(0, VOCAB.vocab_size, (2, 9))
    empty = decode.empty_cache(LVM_CONFIG.n_layer, LVM_CONFIG.n_kv_head, LVM_CONFIG.head_dim, batch=2)
    expected, _ = decode.LvmRunner(session(bundle_dir / "lvm.onnx")).forward(ids, empty)
    logits, _ = decode.LvmRunner(session(stripped)).forward(ids, empty)
    np.testing.assert_array_equal(logits, expected)
