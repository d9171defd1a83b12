"""`python -m engine.bench --quick` runs end to end on a tiny bundle and its JSON is complete (not the timings)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import bench, export_static
from tests.helpers import build_tiny_static_bundle

STAGES = {"preprocess_3_images", "encoder_3_images", "prefill_3_images", "decoder_1_image", "decoder_4_images",
          "score_8_candidates_tokens_only", "analogy_solve_1_sample", "analogy_solve_4_samples",
          "matrix_score_8_candidates", "analogy_score_8_candidates"}


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    root = tmp_path_factory.mktemp("bench")
    bundle_dir = Path(shutil.copytree(build_tiny_static_bundle()[0], root / "bundle"))
    export_static.add_to_bundle(bundle_dir)
    bench.main(["--bundle", str(bundle_dir), "--json", str(root / "bench.json"), "--markdown", str(root / "b.md"),
                "--quick"])
    return json.loads((root / "bench.json").read_text()), root


def positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_served_stages_and_decode_speeds_are_all_there(quick_report: tuple[dict[str, Any], Path]) -> None:
    report, _ = quick_report
    assert set(report["served"]["stages"]) == STAGES
    for stage in report["served"]["stages"].values():
        assert positive(stage["median_ms"]) and stage["p95_ms"] >= stage["median_ms"] and stage["n"] >= 2
    assert set(report["served"]["decode_ms_per_token"]) == {"batch_1", "batch_4", "batch_8"}
    assert all(positive(v) for v in report["served"]["decode_ms_per_token"].values())
    assert report["meta"]["graph"] == "fixed-size KV cache" and report["meta"]["quick"] is True
    assert report["meta"]["command"].startswith("python -m engine.bench --bundle")


def test_engines_int8_and_floor(quick_report: tuple[dict[str, Any], Path]) -> None:
    report, _ = quick_report
    engines = report["engines"]
    for name in ("onnxruntime_static_fp32", "onnxruntime_static_int8", "onnxruntime_growing_cache", "pytorch_eager",
                 "pytorch_eager_1_thread"):
        assert positive(engines[name]), name
        assert len(engines["runs_ms"][name]) == 2
    assert engines["served_engine"] == "onnxruntime_static_fp32"
    best_torch = min(engines["pytorch_eager"], engines["pytorch_eager_1_thread"])
    assert engines["speedup_vs_pytorch"] == pytest.approx(best_torch / engines["onnxruntime_static_fp32"])
    int8 = report["int8"]
    assert positive(int8["fp32_ms_per_token"]) and positive(int8["int8_ms_per_token"])
    assert int8["n"] == 2 and set(int8["delta_int8_minus_fp32"]) == {
        "multiple_choice_accuracy", "generative_accuracy", "psnr_generated"}
    floor = report["floor"]
    assert positive(floor["bandwidth_gb_s"]) and positive(floor["floor_ms_per_token"])
    assert floor["weights_graph"] == "lvm_static.onnx"
    assert floor["ratio"] == pytest.approx(floor["measured_ms_per_token"] / floor["floor_ms_per_token"])
    assert floor["measured_ms_per_token"] == report["served"]["decode_ms_per_token"]["batch_1"]
    assert floor["interleaved_ms_per_token"] == report["engines"][report["engines"]["served_engine"]]


def test_targets_and_markdown(quick_report: tuple[dict[str, Any], Path]) -> None:
    report, root = quick_report
    assert [t["key"] for t in report["targets"]] == [key for key, *_ in bench.TARGETS]
    for target in report["targets"]:
        assert target["met"] in (True, False) and target["measured"] is not None, target
    table = (root / "b.md").read_text()
    assert table.startswith("# Benchmark") and "| target | limit | measured | met |" in table
    assert "pytorch eager" in table and "app" not in report


def test_summary_and_bandwidth_helpers() -> None:
    stats = bench.summary([0.003, 0.001, 0.002, 0.010])
    assert stats == {"median_ms": pytest.approx(2.5), "p95_ms": pytest.approx(10.0), "n": 4}
    assert bench.memory_bandwidth(8, repeats=2) > 1e8  # bytes/s: any machine moves more than 100 MB/s
    images = bench.sample_images(2, 16, seed=0)
    assert [image.shape for image in images] == [(16, 16, 3)] * 2 and images[0].dtype == np.uint8


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_a_variant_of_the_shipped_bundle_carries_every_file_it_lists(tmp_path: Path) -> None:
    """The int8-vs-fp32 check loads a variant of the bundle: the paths' graphs must come along."""
    from engine.bundle import verify_bundle
    from engine.serving.runtime import Bundle

    shipped = Bundle.load()
    static = shipped.directory / export_static.STATIC_FILE
    variant = bench.variant_bundle(shipped, static, "int8", tmp_path)
    listed = set(verify_bundle(variant)["files"])
    assert {"reader.onnx", "sequence_reader.onnx", "analogy_embedder.onnx"} <= listed
    assert all((variant / name).is_file() for name in listed)
