"""The fused fixed-cache graph (lvm_static.onnx) agrees with lvm.onnx and PyTorch on a tiny random-init bundle."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from engine import export_static
from engine.bundle import (
    BundleError,
    bundle_weights,
    required_weights,
    weights_from_static_graph,
    weights_from_traced_graph,
)
from engine.model import load_model
from engine.serving import decode
from engine.serving.runtime import Bundle
from tests.helpers import build_tiny_static_bundle, tiny_configs

TOKENIZER_CONFIG, VOCAB, _, LVM_CONFIG = tiny_configs()


@pytest.fixture(scope="module")
def static_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = Path(shutil.copytree(build_tiny_static_bundle()[0], tmp_path_factory.mktemp("static") / "bundle"))
    export_static.main(["--bundle", str(directory)])  # adds the static graph from lvm.onnx's own weights
    return directory


def pictures(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(count)]


def test_weights_come_back_from_both_graphs(static_bundle: Path) -> None:
    state = {name: tensor.numpy() for name, tensor in load_model(build_tiny_static_bundle()[1]).state_dict().items()}
    config = LVM_CONFIG.to_dict()
    for weights in (weights_from_traced_graph(static_bundle / "lvm.onnx", config),
                    weights_from_static_graph(static_bundle / export_static.STATIC_FILE)):
        assert set(weights) == set(required_weights(config))
        for name, array in weights.items():
            np.testing.assert_allclose(array, state[name], rtol=0, atol=1e-6, err_msg=name)


def test_bundle_weights_are_the_exported_ones_not_the_int8_graphs(static_bundle: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(static_bundle, tmp_path / "int8"))
    export_static.add_to_bundle(bundle, int8=True)
    exported = weights_from_traced_graph(bundle / "lvm.onnx", LVM_CONFIG.to_dict())
    weights = bundle_weights(bundle)
    assert set(weights) == set(exported)
    for name, array in weights.items():
        np.testing.assert_array_equal(array, exported[name], err_msg=name)


def test_manifest_lists_the_static_graph(static_bundle: Path) -> None:
    manifest = json.loads((static_bundle / "manifest.json").read_text())
    # room for a full context and then 15 more images: 16 samples or candidates share one prompt
    max_positions = LVM_CONFIG.context_length + 15 * manifest["tokens_per_image"]
    assert manifest["static_kv"] == {"file": "lvm_static.onnx", "max_positions": max_positions, "weights": "fp32"}
    assert "lvm_static.onnx" in manifest["files"]
    bundle = Bundle.load(static_bundle)
    assert bundle.static and isinstance(bundle.runner, decode.StaticLvmRunner)
    assert not Bundle.load(static_bundle, static=False).static


def test_prefill_and_steps_match_pytorch(static_bundle: Path) -> None:
    model = load_model(build_tiny_static_bundle()[1]).eval()
    runner = Bundle.load(static_bundle).runner
    context = torch.randint(0, VOCAB.codebook_size, (1, 20))
    steps = torch.randint(0, VOCAB.codebook_size, (3, 4))  # 3 rows, 4 one-token steps
    with torch.no_grad():
        expected, _ = model(torch.cat([context.repeat(3, 1), steps], dim=1))
    cache = runner.new_cache(32)  # the context, then 3 rows of 4 tokens
    logits, cache = runner.forward(context.numpy(), cache)
    assert np.abs(logits - expected[:1, :20].numpy()).max() < 1e-4
    cache = decode.expand_cache(cache, 3)
    for step in range(4):
        logits, cache = runner.forward(steps[:, step : step + 1].numpy(), cache)
        assert np.abs(logits[:, 0] - expected[:, 20 + step].numpy()).max() < 1e-4
    with pytest.raises(ValueError, match="exceed the cache capacity of 32"):
        runner.forward(steps[:, :1].numpy(), cache)


def test_rows_branch_off_a_prompt_fed_one_token_at_a_time(static_bundle: Path) -> None:
    model = load_model(build_tiny_static_bundle()[1]).eval()
    runner = Bundle.load(static_bundle).runner
    prompt, steps = torch.randint(0, VOCAB.codebook_size, (1, 2)), torch.randint(0, VOCAB.codebook_size, (2, 3))
    with torch.no_grad():
        expected, _ = model(torch.cat([prompt.repeat(2, 1), steps], dim=1))
    cache = runner.new_cache(2 + 2 * 3)
    for token in range(2):  # one-token calls before the rows branch off
        logits, cache = runner.forward(prompt[:, token : token + 1].numpy(), cache)
    cache = decode.expand_cache(cache, 2)
    for step in range(3):
        logits, cache = runner.forward(steps[:, step : step + 1].numpy(), cache)
        assert np.abs(logits[:, 0] - expected[:, 2 + step].numpy()).max() < 1e-4


def test_complete_and_score_equal_the_growing_cache(static_bundle: Path) -> None:
    static, growing = Bundle.load(static_bundle), Bundle.load(static_bundle, static=False)
    images, candidates = pictures(3, seed=1), pictures(4, seed=2)
    for bundle_args in ({"temperature": 0.0, "n_samples": 2}, {"temperature": 1.0, "n_samples": 3, "seed": 5}):
        first, second = static.complete(images, **bundle_args), growing.complete(images, **bundle_args)
        assert [a.tobytes() for a in first] == [b.tobytes() for b in second]
    np.testing.assert_allclose(static.score(images, candidates), growing.score(images, candidates), atol=1e-3)


def test_more_rows_than_the_graph_takes(static_bundle: Path) -> None:
    static, growing = Bundle.load(static_bundle), Bundle.load(static_bundle, static=False)
    images, candidates = pictures(3, seed=3), pictures(20, seed=4)
    context = static.context_tokens(static.encode(images))
    assert static.max_rows(context) < len(candidates)  # so scoring runs them in groups
    np.testing.assert_allclose(static.score(images, candidates), growing.score(images, candidates), atol=1e-3)
    with pytest.raises(ValueError, match=f"at most {static.max_rows(context)} samples at once"):
        static.complete(images, n_samples=static.max_rows(context) + 1)


def test_a_static_graph_without_shared_rows_is_refused(static_bundle: Path, tmp_path: Path) -> None:
    import onnx

    from engine.bundle import sha256_file

    old = Path(shutil.copytree(static_bundle, tmp_path / "old"))
    # graphs written before position ids came in had no panel positions either, so build one without them
    rotary_only = {**LVM_CONFIG.to_dict(), "panel_tokens": 0}
    weights = weights_from_static_graph(old / export_static.STATIC_FILE)
    export_static.write_static_graph(weights, rotary_only, old / export_static.STATIC_FILE)
    graph = onnx.load(str(old / export_static.STATIC_FILE))
    for node in graph.graph.node:
        if node.op_type == "GroupQueryAttention":
            del node.input[-2:]  # the graph as written before position ids and the attention bias
    kept = [value for value in graph.graph.input if value.name not in ("position_ids", "attention_bias")]
    del graph.graph.input[:]
    graph.graph.input.extend(kept)
    onnx.save(graph, str(old / export_static.STATIC_FILE))
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["files"][export_static.STATIC_FILE]["sha256"] = sha256_file(old / export_static.STATIC_FILE)
    manifest["files"][export_static.STATIC_FILE]["bytes"] = (old / export_static.STATIC_FILE).stat().st_size
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="lacks attention_bias, position_ids .*python -m engine.export_static"):
        Bundle.load(old)


def test_int8_static_graph_is_smaller_and_close(static_bundle: Path, tmp_path: Path) -> None:
    weights = weights_from_static_graph(static_bundle / export_static.STATIC_FILE)
    path = export_static.write_static_graph(weights, LVM_CONFIG.to_dict(), tmp_path / "int8.onnx", int8=True)
    assert path.stat().st_size < (static_bundle / export_static.STATIC_FILE).stat().st_size
    operators = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "DequantizeLinear" in operators and "DynamicQuantizeLinear" not in operators  # weights only
    dequantized = weights_from_static_graph(path)
    for name in ("lm_head.weight", "model.layers.0.self_attn.q_proj.weight"):
        assert np.abs(dequantized[name] - weights[name]).max() < 0.02 * np.abs(weights[name]).max()


def test_int8_static_graph_stores_fp16_exact_tables_as_fp16(static_bundle: Path, tmp_path: Path) -> None:
    """The embedding table of an fp16-stored bundle takes half the bytes and comes back bit for bit."""
    weights = dict(weights_from_static_graph(static_bundle / export_static.STATIC_FILE))
    embeddings = weights["model.embed_tokens.weight"].astype(np.float16).astype(np.float32)
    weights["model.embed_tokens.weight"] = embeddings
    path = export_static.write_static_graph(weights, LVM_CONFIG.to_dict(), tmp_path / "int8.onnx", int8=True)
    stored = {tensor.name: tensor.data_type for tensor in onnx.load(str(path)).graph.initializer}
    assert stored["model.embed_tokens.weight__fp16"] == onnx.TensorProto.FLOAT16
    assert stored["rotary.cos_cache"] == onnx.TensorProto.FLOAT  # derived at export: fp16 would change it
    np.testing.assert_array_equal(weights_from_static_graph(path)["model.embed_tokens.weight"], embeddings)


def test_bad_inputs_are_named(static_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="weights lack"):
        export_static.build_static_graph({}, LVM_CONFIG.to_dict())
    with pytest.raises(ValueError, match="head_dim 8 is not a multiple of 16"):
        export_static.build_static_graph({}, {**LVM_CONFIG.to_dict(), "n_head": 4, "n_kv_head": 2})
    with pytest.raises(BundleError, match="manifest.json is missing"):
        export_static.add_to_bundle(tmp_path)
    broken = Path(shutil.copytree(static_bundle, tmp_path / "broken"))
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["static_kv"]["file"] = "elsewhere.onnx"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="static_kv names 'elsewhere.onnx'"):
        Bundle.load(broken)
