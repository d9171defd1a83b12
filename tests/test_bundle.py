"""engine/bundle.py, the one place for the bundle format: the manifest, the file checks and the directories."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.health import StartupError, choose_bundle
from engine.bundle import (
    MANIFEST,
    BundleError,
    read_manifest,
    update_manifest,
    verify_bundle,
    with_static_graph,
    write_manifest,
)


@pytest.fixture
def bundle_dir(tiny_bundle_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle_dir, tmp_path / "bundle"))


def test_update_keeps_the_files_and_their_checks(bundle_dir: Path) -> None:
    before = verify_bundle(bundle_dir)
    update_manifest(bundle_dir, metrics={"mc": 0.5}, sampling={"temperature": 0.7})
    after = verify_bundle(bundle_dir)
    assert after == {**before, "metrics": {"mc": 0.5}, "sampling": {"temperature": 0.7}}
    assert (bundle_dir / MANIFEST).read_text().endswith("}\n")


def test_the_manifest_is_checked_when_read(bundle_dir: Path) -> None:
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    write_manifest(bundle_dir, {**manifest, "special_tokens": {"bos": 0, "eos": 1}})
    with pytest.raises(BundleError, match="special_tokens .* does not match the sentence vocabulary"):
        read_manifest(bundle_dir)
    (bundle_dir / MANIFEST).write_text("{")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(bundle_dir)


def test_the_app_and_the_runtime_refuse_the_same_files(bundle_dir: Path, tmp_path: Path) -> None:
    with (bundle_dir / "decoder.onnx").open("ab") as graph:
        graph.write(b"\0")
    with pytest.raises(BundleError, match=r"decoder\.onnx: size"):
        verify_bundle(bundle_dir)
    with pytest.raises(StartupError, match=r"decoder\.onnx: size"):
        choose_bundle(bundle_dir, default=bundle_dir)
    with pytest.raises(BundleError, match="does not exist"):
        verify_bundle(tmp_path / "nowhere")


def test_a_static_graph_entry_lists_and_checks_the_file(bundle_dir: Path) -> None:
    shutil.copy(bundle_dir / "lvm.onnx", bundle_dir / "lvm_static.onnx")
    manifest = with_static_graph(read_manifest(bundle_dir), bundle_dir, "lvm_static.onnx", 99, "fp32")
    write_manifest(bundle_dir, manifest)
    assert verify_bundle(bundle_dir)["static_kv"] == {"file": "lvm_static.onnx", "max_positions": 99,
                                                      "weights": "fp32"}
    (bundle_dir / "lvm_static.onnx").write_bytes(b"x")
    with pytest.raises(BundleError, match="lvm_static.onnx"):
        verify_bundle(bundle_dir)
