"""The analogy path of a bundle: the pair embedder's relation scores, how they join the LVM's ranking, when the
path is asked, and a trained embedder exported into a bundle that serves it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import analogy_probe as probe
from engine.bundle import BundleError, verify_bundle
from engine.serving import analogy_path as path
from engine.serving.runtime import Bundle
from puzzles.generators import generate

SHIPPED = Path(__file__).resolve().parent.parent / "engine" / "bundles" / "default"


class ChangeEmbedder:
    """A stand-in embedder: a pair's embedding is the mean change of each colour channel, made a unit vector."""

    def get_inputs(self) -> list[Any]:
        return [type("Input", (), {"name": name})() for name in ("before", "after")]


def run(session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    change = (feeds["after"] - feeds["before"]).mean((2, 3)) + 1e-3
    return [change / np.linalg.norm(change, axis=1, keepdims=True)]


def pictures(*colours: tuple[float, float, float]) -> np.ndarray:
    return np.stack([np.ones((3, 32, 32), np.float32) * np.array(colour, np.float32)[:, None, None]
                     for colour in colours])


def test_a_candidate_that_makes_the_examples_change_scores_highest() -> None:
    # examples: red goes up; the query; candidates: red up (right), green up, nothing
    prompt = pictures((0.2, 0.5, 0.5), (0.8, 0.5, 0.5), (0.1, 0.3, 0.3), (0.6, 0.5, 0.5), (0.3, 0.3, 0.3))
    candidates = pictures((0.7, 0.3, 0.3), (0.3, 0.8, 0.3), (0.3, 0.3, 0.3))
    scorer = path.AnalogyPath(ChangeEmbedder(), weight=1.0, sharpness=10.0, run=run)
    relation = scorer.relation_scores(np.concatenate([prompt, candidates]), len(prompt))
    assert relation.shape == (3,) and int(relation.argmax()) == 0


def test_the_paths_log_probabilities_join_the_lvms_at_its_weight() -> None:
    prompt = pictures((0.2, 0.5, 0.5), (0.8, 0.5, 0.5), (0.3, 0.3, 0.3))
    candidates = pictures((0.3, 0.8, 0.3), (0.7, 0.3, 0.3))
    pixels = np.concatenate([prompt, candidates])
    lvm = np.array([-10.0, -11.0])  # the LVM prefers the first
    for weight, winner in ((0.01, 0), (5.0, 1)):
        scorer = path.AnalogyPath(ChangeEmbedder(), weight=weight, sharpness=10.0, run=run)
        combined = scorer.combine(lvm, pixels, len(prompt))
        expected = path.log_softmax(lvm) + weight * path.log_softmax(scorer.relation_scores(pixels, len(prompt)))
        np.testing.assert_allclose(combined, expected)
        assert int(combined.argmax()) == winner
    assert np.exp(path.log_softmax(np.array([1.0, 2.0, 3.0]))).sum() == pytest.approx(1.0)


def test_training_data_refuses_held_out_seeds(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="held-out"):
        probe.write_data(10, 999_999_995, tmp_path / "analogies.npz", progress=False)


# --- a trained embedder, exported into a bundle ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_with_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("analogy_path")
    assert probe.write_data(12, 55000000, work / "analogies.npz", progress=False) == 12
    probe.train_scorer(probe.ScorerConfig(data=str(work / "analogies.npz"), out=str(work / "run"), minutes=0.02,
                                          eval_every_min=1.0, held_out=2, dim=16))
    bundle = work / "bundle"
    bundle.mkdir()
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    old = manifest.pop("analogy_path", None) or {}
    manifest["files"] = {name: entry for name, entry in manifest["files"].items() if name != old.get("embedder")}
    for name in manifest["files"]:
        shutil.copy(SHIPPED / name, bundle / name)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    probe.export_analogy_path(work / "run" / "model.pt", bundle, weight=0.5)
    return bundle


def test_export_lists_the_graph_and_the_bundle_ranks_with_it(bundle_with_path: Path) -> None:
    manifest = verify_bundle(bundle_with_path)
    assert manifest["analogy_path"]["weight"] == 0.5 and "analogy_embedder.onnx" in manifest["files"]
    bundle = Bundle.load(bundle_with_path)
    puzzle = generate("analogy", 1000003, size=32, pairs=2)
    with_path = bundle.score(puzzle.panels, puzzle.candidates, family="analogy")
    scorer, bundle.analogy_path = bundle.analogy_path, None
    lvm = bundle.score(puzzle.panels, puzzle.candidates, family="analogy")
    from engine.serving.runtime import images_to_tensor

    pixels = images_to_tensor([*puzzle.panels, *puzzle.candidates], 32)
    np.testing.assert_allclose(with_path, scorer.combine(lvm, pixels, len(puzzle.panels)))


def test_the_path_joins_only_analogies_of_one_to_three_pairs(bundle_with_path: Path) -> None:
    bundle = Bundle.load(bundle_with_path)
    bundle.analogy_path.relation_scores = lambda *a: pytest.fail("the analogy path was asked")  # type: ignore
    puzzle = generate("analogy", 1000004, size=32, pairs=1)
    bundle.score(puzzle.panels, puzzle.candidates, family="sequence")
    bundle.score(puzzle.panels, puzzle.candidates, family=None)
    bundle.score(puzzle.panels[:2], puzzle.candidates, family="analogy")  # no query after the pair


@pytest.mark.parametrize("change, message", [
    ({"embedder": "missing.onnx"}, "not one of the bundle's listed files"),
    ({"weight": 0}, "weight must be a number in"),
    ({"sharpness": "10"}, "sharpness must be a number in"),
])
def test_a_bad_analogy_path_entry_refuses_the_bundle(bundle_with_path: Path, tmp_path: Path, change: dict,
                                                     message: str) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_with_path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["analogy_path"].update(change)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        Bundle.load(copy)


def test_a_new_weight_is_a_new_model_id(bundle_with_path: Path, tmp_path: Path) -> None:
    from app.solving import bundle_id

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_with_path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["analogy_path"]["weight"] = 0.75
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert bundle_id(Bundle.load(copy)) != bundle_id(Bundle.load(bundle_with_path))
