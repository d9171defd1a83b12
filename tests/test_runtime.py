"""The serving runtime: bundle verification, sessions, image normalisation, sampling, complete and score."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.bundle import BUNDLE_ENV, BundleError, default_bundle_dir
from engine.serving import decode, runtime
from engine.serving.runtime import Bundle
from tests.helpers import build_tiny_bundle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle_dir() -> Path:
    return build_tiny_bundle()[0]


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> Bundle:
    return Bundle.load(bundle_dir)


@pytest.fixture
def bundle_copy(bundle_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))


def pictures(count: int, size: int = 16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


# --- import hygiene and loading -------------------------------------------------------------------------------


def test_the_serving_package_never_imports_torch_onnx_or_the_generators() -> None:
    code = "import sys, engine.serving.runtime, engine.serving.batching, engine.serving.decode, " \
           "engine.serving.sentences, engine.serving.matrix_path; " \
           "bad = [m for m in ('torch', 'onnx', 'puzzles.generators') if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_load_reports_the_provider_it_got(bundle: Bundle) -> None:
    assert bundle.name == "tiny-test"
    assert bundle.provider == bundle.lvm.get_providers()[0]
    assert set(bundle.providers) == {"encoder", "decoder", "lvm"}
    assert bundle.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")


def test_cpu_session_options() -> None:
    options = runtime.session_options()
    assert options.intra_op_num_threads == runtime.physical_cores() >= 1
    assert options.inter_op_num_threads == 1
    assert options.graph_optimization_level == runtime.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_corrupt_file_is_refused_by_name(bundle_copy: Path) -> None:
    path = bundle_copy / "decoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"decoder\.onnx: sha256 does not match"):
        Bundle.load(bundle_copy)


def test_missing_file_is_refused_by_name(bundle_copy: Path) -> None:
    (bundle_copy / "encoder.onnx").unlink()
    with pytest.raises(BundleError, match=r"encoder\.onnx: file listed in the manifest is missing"):
        Bundle.load(bundle_copy)


def test_swapped_file_is_refused_by_name(bundle_copy: Path) -> None:
    shutil.copy(bundle_copy / "encoder.onnx", bundle_copy / "lvm.onnx")
    with pytest.raises(BundleError, match=r"lvm\.onnx: size \d+ bytes, manifest says"):
        Bundle.load(bundle_copy)


def test_bad_manifest_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    del manifest["files"]["lvm.onnx"]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not list lvm.onnx"):
        Bundle.load(bundle_copy)
    manifest["files"]["lvm.onnx"] = {"sha256": "0", "bytes": 0}
    manifest["special_tokens"]["bos"] = 0
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="special_tokens .* does not match the sentence vocabulary"):
        Bundle.load(bundle_copy)
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(bundle_copy)
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Bundle.load(tmp_path)
    with pytest.raises(BundleError, match="does not exist"):
        Bundle.load(tmp_path / "nowhere")


def test_default_bundle_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(BUNDLE_ENV, raising=False)
    assert default_bundle_dir() == ROOT / "engine" / "bundles" / "default"
    monkeypatch.setenv(BUNDLE_ENV, str(tmp_path))
    assert default_bundle_dir() == tmp_path


# --- images ---------------------------------------------------------------------------------------------------


def test_any_image_input_is_normalised(tmp_path: Path) -> None:
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)  # transparent, wide
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 7, dtype=np.uint8), "L").save(buffer, format="PNG")
    Image.fromarray(pictures(1, 12)[0]).save(tmp_path / "cell.png")
    tensor = runtime.images_to_tensor(
        [rgba, np.zeros((5, 5), dtype=np.uint8), Image.new("P", (4, 9)), buffer.getvalue(), tmp_path / "cell.png"], 16
    )
    assert tensor.shape == (5, 3, 16, 16) and tensor.dtype == np.float32
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0
    assert np.all(tensor[0] == 1.0)  # transparency composited onto white
    np.testing.assert_allclose(tensor[3], 7 / 255, atol=1e-6)  # grey bytes -> RGB


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((4, 4, 3), dtype=np.float32), "must be uint8"),
    (np.zeros((4, 4, 2), dtype=np.uint8), "is not"),
    ("not-a-file.png", "not-a-file.png"),
    (3.5, "unsupported image type"),
])
def test_bad_images_are_refused(image: object, message: str) -> None:
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=message):
        runtime.images_to_tensor([image], 16)


def test_encode_decode_roundtrip_shapes(bundle: Bundle) -> None:
    codes = bundle.encode(pictures(3, size=40))
    assert codes.shape == (3, 16) and codes.dtype == np.int64 and codes.max() < 32
    images = bundle.decode(codes)
    assert len(images) == 3 and images[0].shape == (16, 16, 3) and images[0].dtype == np.uint8
    assert all(np.array_equal(a, b) for a, b in zip(bundle.roundtrip(pictures(3, size=40)), images, strict=True))
    with pytest.raises(ValueError, match=r"codes must be \(N, 16\)"):
        bundle.decode(np.zeros((1, 5), dtype=np.int64))


# --- sampling -------------------------------------------------------------------------------------------------


def test_greedy_top_k_top_p() -> None:
    logits = np.log(np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))
    rng = np.random.default_rng(0)
    assert decode.sample_tokens(logits, decode.SamplingOptions(temperature=0), rng).tolist() == [1, 0]
    top1 = decode.SamplingOptions(top_k=1)
    assert decode.sample_tokens(logits, top1, rng).tolist() == [1, 0]
    nucleus = decode.filter_top_p(logits, 0.7)  # keeps 0.6 + 0.3 in row 0, 0.5 + 0.3 in row 1
    assert np.isinf(nucleus).tolist() == [[True, False, False], [False, True, False]]
    draws = decode.sample_tokens(np.repeat(logits[:1], 20000, axis=0), decode.SamplingOptions(), rng)
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 20000, [0.1, 0.6, 0.3], atol=0.02)


def test_sampling_never_leaves_the_code_range() -> None:
    logits = np.zeros((50, 40))
    logits[:, 35] = 100.0  # a special token the model loves
    restricted = decode.restrict_to_codes(logits, 0, 32)
    tokens = decode.sample_tokens(restricted, decode.SamplingOptions(), np.random.default_rng(1))
    assert tokens.max() < 32


def test_guided_logits_contrast_the_prompt_with_the_last_image_alone() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.2, 0.9]]))  # the last entry is not a code
    last_image = np.log(np.array([[0.8, 0.1, 0.1, 0.9]]))  # the last image alone already predicts code 0
    plain = decode.guided_logits(logits, last_image, (0, 3), 0.0)
    np.testing.assert_allclose(np.exp(plain[0, :3]), [0.5, 0.3, 0.2])
    guided = decode.guided_logits(logits, last_image, (0, 3), 2.0)
    assert np.isinf(guided[0, 3]) and guided[0, 3] < 0
    codes = decode.log_softmax(logits[:, :3])[0]
    np.testing.assert_allclose(guided[0, :3], 3 * codes - 2 * decode.log_softmax(last_image[:, :3])[0])
    assert guided[0, :3].argmax() == 1  # code 0 is what a copy of the last image would give: it drops behind


@pytest.mark.parametrize("options", [{"temperature": -1}, {"top_k": -2}, {"top_p": 0.0}, {"top_p": 1.5},
                                     {"guidance": -0.5}, {"guidance": 11.0}])
def test_bad_sampling_options_are_refused(options: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        decode.SamplingOptions(**options)


# --- complete and score ---------------------------------------------------------------------------------------


def test_complete_is_reproducible_and_reports_progress(bundle: Bundle) -> None:
    steps: list[tuple[float, str]] = []
    first = bundle.complete(pictures(3), n_samples=3, seed=5, progress=lambda f, m: steps.append((f, m)))
    again = bundle.complete(pictures(3), n_samples=3, seed=5)
    other = bundle.complete(pictures(3), n_samples=3, seed=6)
    assert len(first) == 3 and first[0].shape == (16, 16, 3) and first[0].dtype == np.uint8
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert all(isinstance(message, str) and message for _, message in steps)


def test_guided_samples_are_reproducible_and_differ_from_plain_ones(bundle: Bundle) -> None:
    prompt = pictures(3, seed=8)
    guided = bundle.complete(prompt, n_samples=4, seed=2, guidance=3.0)
    assert all(np.array_equal(a, b) for a, b in zip(guided, bundle.complete(prompt, n_samples=4, seed=2,
                                                                             guidance=3.0), strict=True))
    plain = bundle.complete(prompt, n_samples=4, seed=2)
    assert not all(np.array_equal(a, b) for a, b in zip(guided, plain, strict=True))
    context = bundle.context_tokens(bundle.encode(prompt))
    with pytest.raises(ValueError, match="last prompt image"):
        decode.generate(bundle.runner, context, bundle._empty_cache(), 1, 16, (0, 32),
                        decode.SamplingOptions(guidance=1.0))


def test_greedy_samples_are_identical(bundle: Bundle) -> None:
    samples = bundle.complete(pictures(2), n_samples=3, temperature=0.0)
    assert all(np.array_equal(samples[0], s) for s in samples[1:])


def test_score_equals_token_by_token_likelihood(bundle: Bundle) -> None:
    context_images, candidates = pictures(2), pictures(4, seed=1)
    scores = bundle.score(context_images, candidates)
    assert scores.shape == (4,) and np.all(scores < 0)
    # reference: each candidate as one full sequence without a cache, summing log p(code | prefix) over codes
    context = bundle.context_tokens(bundle.encode(context_images))
    for index, codes in enumerate(bundle.encode(candidates)):
        sequence = np.concatenate([context, codes])[None, :]
        logits, _ = bundle.runner.forward(sequence, bundle._empty_cache())
        log_probs = decode.log_softmax(logits[0, len(context) - 1 : -1, :32])
        expected = log_probs[np.arange(len(codes)), codes].sum()
        assert abs(scores[index] - expected) < 1e-3


def test_io_binding_runner_matches_plain_run(bundle: Bundle) -> None:
    assert isinstance(bundle.runner, decode.BoundLvmRunner)
    context = bundle.context_tokens(bundle.encode(pictures(2)))
    candidates = bundle.encode(pictures(3, seed=2))
    options = decode.SamplingOptions(temperature=0.8, top_p=0.9)
    results = []
    for runner in (decode.LvmRunner(bundle.lvm), decode.make_runner(bundle.lvm, io_binding=True)):
        tokens = decode.generate(runner, context, bundle._empty_cache(), 3, 16, (0, 32), options, seed=4)
        results.append((tokens, decode.score(runner, context, bundle._empty_cache(), candidates, (0, 32))))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-5)


def test_too_long_prompt_is_refused(bundle: Bundle) -> None:
    with pytest.raises(ValueError, match="more than the model's context"):
        bundle.complete(pictures(bundle.max_images + 1), n_samples=1)
    with pytest.raises(ValueError, match="no candidates"):
        bundle.score(pictures(2), [])
    with pytest.raises(ValueError, match="n_samples"):
        bundle.complete(pictures(2), n_samples=0)


def _with_manifest(bundle_copy: Path, key: str, value: object) -> Path:
    manifest_path = bundle_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest[key] = value
    manifest_path.write_text(json.dumps(manifest))
    return bundle_copy


def _with_scoring(bundle_copy: Path, scoring: object) -> Path:
    return _with_manifest(bundle_copy, "scoring", scoring)


def test_pmi_scoring_subtracts_the_last_panel_baseline(bundle: Bundle, bundle_copy: Path) -> None:
    pmi = Bundle.load(_with_scoring(bundle_copy, "pmi_last_panel"))  # one rule for every family
    prompt, candidates = pictures(3, seed=5), pictures(4, seed=6)
    raw = bundle.score(prompt, candidates)
    baseline = bundle.score(prompt[-1:], candidates)
    assert bundle.scoring_rule("analogy") == "sum" and pmi.scoring_rule("matrix") == "pmi_last_panel"
    np.testing.assert_allclose(pmi.score(prompt, candidates), raw - baseline, rtol=1e-5, atol=1e-4)


def test_scoring_rules_are_chosen_per_family(bundle: Bundle, bundle_copy: Path) -> None:
    chosen = Bundle.load(_with_scoring(bundle_copy, {"rules": {"analogy": "pmi_last_panel"}, "chosen_by": "test"}))
    prompt, candidates = pictures(3, seed=5), pictures(4, seed=6)
    raw = bundle.score(prompt, candidates)
    pmi = raw - bundle.score(prompt[-1:], candidates)
    np.testing.assert_allclose(chosen.score(prompt, candidates, family="analogy"), pmi, rtol=1e-5, atol=1e-4)
    for family in ("sequence", None, "no such family"):  # families without a rule, and none, use the plain sum
        np.testing.assert_allclose(chosen.score(prompt, candidates, family=family), raw, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(chosen.score(prompt, candidates, family="analogy", scoring="sum"), raw,
                               rtol=1e-5, atol=1e-4)


def test_pmi_channel_adds_the_examples_read_after_each_candidate(bundle: Bundle) -> None:
    prompt, candidates = pictures(5, seed=7), pictures(3, seed=8)  # two example pairs and a query
    pmi = bundle.score(prompt, candidates, scoring="pmi_last_panel")
    codes = bundle.encode([*prompt, *candidates])
    examples, channel = codes[:4].reshape(1, -1), []
    for candidate in codes[5:]:  # each sentence read whole: the query, the candidate, then the examples
        context = bundle.context_tokens(np.stack([codes[4], candidate]))
        channel += list(decode.score(bundle.runner, context, bundle._cache_for(context, 1, examples.shape[1]),
                                     examples, tuple(bundle.manifest["code_range"])))
    np.testing.assert_allclose(bundle.score(prompt, candidates, scoring="pmi_channel"), pmi + np.array(channel),
                               rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("count", [1, 2, 4])
def test_pmi_channel_without_pairs_to_read_is_pmi_last_panel(bundle: Bundle, count: int) -> None:
    prompt, candidates = pictures(count), pictures(2, seed=3)  # e.g. a pack's analogy of A, B only
    np.testing.assert_allclose(bundle.score(prompt, candidates, scoring="pmi_channel"),
                               bundle.score(prompt, candidates, scoring="pmi_last_panel"), rtol=1e-6)


def test_rules_for_offers_the_channel_only_where_prompts_are_pairs() -> None:
    assert runtime.rules_for("analogy") == runtime.rules_for("grid") == runtime.SCORING_RULES
    for family in ("matrix", "sequence", None):
        assert "pmi_channel" not in runtime.rules_for(family) and "pmi_last_panel" in runtime.rules_for(family)


@pytest.mark.parametrize(("scoring", "message"), [
    ({"rules": {"matrix": "vote"}}, "unknown scoring rule 'vote'"),
    ({"rules": {"matrix": "pmi_channel"}}, "the scoring rule 'pmi_channel' needs example pairs, which matrix"),
    ("pmi_channel", "the scoring rule 'pmi_channel' needs example pairs, which every family"),
    ({"rules": {"matrix": ["sum"]}}, r"unknown scoring rule \['sum'\]"),
    ({"rules": ["sum"]}, "scoring must be a rule name or"),
    (7, "scoring must be a rule name or"),
])
def test_a_bad_scoring_rule_is_refused_at_load(bundle_copy: Path, scoring: object, message: str) -> None:
    with pytest.raises(BundleError, match=f"manifest.json: {message}"):
        Bundle.load(_with_scoring(bundle_copy, scoring))


def _with_sampling(bundle_copy: Path, sampling: object) -> Path:
    return _with_manifest(bundle_copy, "sampling", sampling)


def test_guidance_is_chosen_per_family(bundle_copy: Path) -> None:
    chosen = Bundle.load(_with_sampling(bundle_copy, {"temperature": 0.3, "top_k": 0, "top_p": 1.0,
                                                      "guidance": {"analogy": 2.0}, "chosen_by": "test"}))
    assert chosen.sampling_for("analogy") == decode.SamplingOptions(temperature=0.3, guidance=2.0)
    for family in ("matrix", None):
        assert chosen.sampling_for(family) == decode.SamplingOptions(temperature=0.3)
    assert chosen.sampling == decode.SamplingOptions(temperature=0.3)


@pytest.mark.parametrize(("guidance", "message"), [
    ([2.0], "sampling guidance must be"),
    ({"analogy": -1}, "sampling guidance of 'analogy' must be a number"),
    ({"analogy": "strong"}, "sampling guidance of 'analogy' must be a number"),
    ({"analogy": True}, "sampling guidance of 'analogy' must be a number"),
])
def test_a_bad_guidance_weight_is_refused_at_load(bundle_copy: Path, guidance: object, message: str) -> None:
    with pytest.raises(BundleError, match=f"manifest.json: {message}"):
        Bundle.load(_with_sampling(bundle_copy, {"temperature": 0.3, "guidance": guidance}))
