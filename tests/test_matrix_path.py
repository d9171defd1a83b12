"""The matrix path of a bundle: the attribute sentence, reading a reader's outputs, when the path answers, how it
ranks and draws, and a trained pair exported into a bundle that serves it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.bundle import BundleError, verify_bundle
from engine.evaluate import nearest_candidate
from engine.serving import matrix_path as path
from engine.serving.runtime import Bundle, images_to_tensor
from puzzles.generators import generate
from puzzles.matrix_panels import LAYOUTS, draw_state
from tests.helpers import FakeSession
from tests.helpers import run_fake as run

SHIPPED = Path(__file__).resolve().parent.parent / "engine" / "bundles" / "default"


def matrix(layout: str, seed: int = 47000300) -> Any:
    return generate("matrix", seed, size=32, layout=layout)


def true_tokens(puzzle: Any) -> list[list[int]]:
    """Every picture's panel tokens (8 panels, then the candidates) from the generator's own record."""
    components = puzzle.meta["components"]
    return [path.panel_tokens(panel, components) for panel in [*puzzle.meta["panels"], *puzzle.meta["candidates"]]]


def reader_outputs(puzzle: Any, strength: float = 8.0) -> np.ndarray:
    """What a reader sure of every attribute would output for a matrix's 16 pictures (logits)."""
    outputs = np.full((16, path.READER_OUTPUTS), -strength)
    outputs[:, LAYOUTS.index(puzzle.meta["layout"])] = strength
    slots = outputs[:, len(LAYOUTS):].reshape(16, path.SLOTS, sum(path.HEAD))
    for picture, described in enumerate([*puzzle.meta["panels"], *puzzle.meta["candidates"]]):
        for slot, name in enumerate(puzzle.meta["components"]):
            values = described[name]
            starts = np.cumsum((0, *path.HEAD[:3]))
            for field, value in enumerate((values["type"], values["size"], values["colour"])):
                slots[picture, slot, starts[field] + value] = strength
            slots[picture, slot, starts[3] + np.array(values["positions"], dtype=int)] = strength
    return outputs


def knowing_reasoner(answer_tokens: list[int]) -> FakeSession:
    """A reasoner whose next token after the prompt is always the given answer's."""
    def logits(rows: np.ndarray) -> np.ndarray:
        out = np.zeros((*rows.shape, path.VOCAB), np.float32)
        for position in range(rows.shape[1]):
            answer_index = position + 1 - path.PROMPT_TOKENS
            if 0 <= answer_index < path.PANEL_TOKENS:
                out[:, position, answer_tokens[answer_index]] = 10.0
        return out
    return FakeSession(logits)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_panel_tokens_and_state_are_inverse(layout: str) -> None:
    puzzle = matrix(layout)
    for panel, tokens in zip(puzzle.meta["panels"], true_tokens(puzzle), strict=False):
        assert path.panel_state(layout, tokens) == panel


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_answer_token_lies_in_its_range(layout: str) -> None:
    ranges = path.answer_token_ranges(layout)
    assert len(ranges) == path.PANEL_TOKENS
    for seed in range(47000400, 47000410):
        for tokens in true_tokens(matrix(layout, seed)):
            assert all(start <= token < end for token, (start, end) in zip(tokens, ranges, strict=True))


def test_a_sure_reading_gives_the_true_tokens() -> None:
    puzzle = matrix("out_in_grid")
    reading = path.read_outputs(reader_outputs(puzzle))
    assert reading.layout == "out_in_grid" and reading.panels == true_tokens(puzzle)
    assert min(reading.picture_sureness) > 0.99 and path.Gate(0.99, 1.0).passes(reading)


def test_a_picture_of_another_layout_a_doubtful_attribute_or_no_cell_makes_that_picture_unsure() -> None:
    puzzle = matrix("left_right")
    outputs = reader_outputs(puzzle)
    outputs[3, :len(LAYOUTS)] = np.roll(outputs[3, :len(LAYOUTS)], 1)  # read as another layout
    outputs[5, len(LAYOUTS):len(LAYOUTS) + path.LEVELS["type"]] = 0.0  # every type equally likely
    cells = len(LAYOUTS) + sum(path.HEAD[:3])
    outputs[7, cells:cells + path.CELLS] = -8.0  # a component read in no cell
    sureness = path.read_outputs(outputs).picture_sureness
    assert sureness[3] == 0.0 and sureness[5] < 0.5 and sureness[7] == 0.0
    assert min(sureness[:3] + sureness[8:]) > 0.99


def test_the_gate_asks_for_a_share_of_surely_read_pictures() -> None:
    reading = path.Reading("center", [], [0.95] * 8 + [0.6] * 8)
    assert path.Gate(0.9, 0.5).passes(reading) and not path.Gate(0.9, 0.6).passes(reading)
    assert not path.Gate(0.97, 0.5).passes(reading) and path.Gate(0.5, 1.0).passes(reading)


def make_path(puzzle: Any, reasoner: FakeSession, strength: float = 8.0) -> path.MatrixPath:
    reader = FakeSession(lambda pixels: reader_outputs(puzzle, strength)[:len(pixels)])
    return path.MatrixPath(reader, reasoner, path.Gate(0.9, 0.5), 32, run)


def test_ranks_the_candidate_the_reasoner_expects_first() -> None:
    puzzle = matrix("grid2x2")
    answer = true_tokens(puzzle)[8 + puzzle.answer_index]
    scores = make_path(puzzle, knowing_reasoner(answer)).score(images_to_tensor([*puzzle.panels, *puzzle.candidates],
                                                                                32))
    assert scores.shape == (8,) and int(np.argmax(scores)) == puzzle.answer_index


def test_draws_the_answer_it_writes_in_the_plain_style() -> None:
    puzzle = generate("matrix", 47000301, size=32, layout="center", style={"rotation": 0.0, "jitter": 0.0})
    answer = true_tokens(puzzle)[8 + puzzle.answer_index]
    drawn = make_path(puzzle, knowing_reasoner(answer)).complete(images_to_tensor(puzzle.panels, 32), 3, 1.0, 0)
    expected = draw_state("center", puzzle.meta["candidates"][puzzle.answer_index], 32)
    assert len(drawn) == 3 and all(np.array_equal(image, expected) for image in drawn)
    assert nearest_candidate(drawn[0], puzzle.candidates) == puzzle.answer_index


def test_an_unsure_reader_leaves_the_puzzle_to_the_lvm() -> None:
    puzzle = matrix("center")
    unsure = make_path(puzzle, knowing_reasoner([0] * path.PANEL_TOKENS), strength=0.2)
    assert unsure.score(images_to_tensor([*puzzle.panels, *puzzle.candidates], 32)) is None
    assert unsure.complete(images_to_tensor(puzzle.panels, 32), 2, 1.0, 0) is None


# --- a trained pair, exported into a bundle ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_with_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped bundle's LVM files with a briefly trained reader and a small reasoner added."""
    import torch

    from engine import attribute_probe as probe

    work = tmp_path_factory.mktemp("matrix_path")
    probe.write_sight_data(8, 47000200, work / "pictures.npz", progress=False)
    torch.save(probe.train_reader(work / "pictures.npz", minutes=0.02).state_dict(), work / "reader.pt")
    probe.write_data(40, 47000100, work / "rows.npy", progress=False)
    probe.train_probe(probe.ProbeConfig(data=str(work / "rows.npy"), out=str(work / "run"), minutes=0.02,
                                        eval_every_min=1.0, per_layout=1, n_layer=2, d_model=64, ffn_hidden=128))
    bundle = work / "bundle"
    bundle.mkdir()
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    manifest.pop("matrix_path", None)
    manifest["files"] = {name: entry for name, entry in manifest["files"].items()
                         if name not in ("reader.onnx", "reasoner.onnx")}
    for name in manifest["files"]:
        shutil.copy(SHIPPED / name, bundle / name)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    probe.export_matrix_path(work / "reader.pt", work / "run" / "model.pt", bundle, path.Gate(0.9, 0.5))
    return bundle


def test_export_lists_both_graphs_and_the_bundle_serves_them(bundle_with_path: Path) -> None:
    manifest = verify_bundle(bundle_with_path)
    assert manifest["matrix_path"]["sure"] == {"attribute": 0.9, "pictures": 0.5}
    assert {"reader.onnx", "reasoner.onnx"} <= set(manifest["files"])
    bundle = Bundle.load(bundle_with_path)
    assert bundle.matrix_path is not None
    puzzle = matrix("up_down")
    rows = np.array([bundle.matrix_path.prompt(path.Reading("up_down", true_tokens(puzzle), 1.0))])
    assert bundle.matrix_path._log_probs(rows).shape == (1, path.PROMPT_TOKENS, path.VOCAB)
    scores = bundle.score(puzzle.panels, puzzle.candidates, family="matrix")  # either path: 8 finite scores
    assert scores.shape == (8,) and np.isfinite(scores).all()


def test_the_path_never_answers_other_families_or_other_prompt_lengths(bundle_with_path: Path) -> None:
    bundle = Bundle.load(bundle_with_path)
    bundle.matrix_path.gate = path.Gate(0.9, 0.0)
    bundle.matrix_path.read = lambda pixels: pytest.fail("the matrix path was asked")  # type: ignore[method-assign]
    puzzle = matrix("center")
    bundle.score(puzzle.panels, puzzle.candidates, family="sequence")
    bundle.complete(puzzle.panels[:5], n_samples=1)


@pytest.mark.parametrize("change, message", [
    ({"reader": "missing.onnx"}, "not one of the bundle's listed files"),
    ({"sure": 0.9}, "sure must be"),
    ({"sure": {"attribute": 1.5, "pictures": 0.5}}, "attribute must be a number in"),
    ({"sure": {"attribute": 0.9, "pictures": True}}, "pictures must be a number in"),
])
def test_a_bad_matrix_path_entry_refuses_the_bundle(bundle_with_path: Path, tmp_path: Path, change: dict,
                                                    message: str) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_with_path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["matrix_path"].update(change)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        Bundle.load(copy)


def test_a_new_gate_is_a_new_model_id(bundle_with_path: Path, tmp_path: Path) -> None:
    """The bank ranks its puzzles again and remembered answers are made afresh when the path answers by a new gate."""
    from app.solving import bundle_id

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_with_path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["matrix_path"]["sure"]["pictures"] = 0.75
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert bundle_id(Bundle.load(copy)) != bundle_id(Bundle.load(bundle_with_path))
