"""The sequence path of a bundle: the frames' attribute sentence, reading a reader's outputs, when the path ranks,
and a trained pair exported into a bundle that serves it."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import sequence_probe as probe
from engine.bundle import BundleError, verify_bundle
from engine.serving import sequence_path as path
from engine.serving.matrix_path import Gate
from engine.serving.runtime import Bundle, images_to_tensor
from puzzles.generators import generate
from puzzles.generators.sequence import KINDS, objects_at, wrong_answers
from tests.helpers import FakeSession
from tests.helpers import run_fake as run

SHIPPED = Path(__file__).resolve().parent.parent / "engine" / "bundles" / "default"


def sequence(kind: str, seed: int = 53000300, frames: int = 4) -> Any:
    return generate("sequence", seed, size=32, kind=kind, frames=frames)


def states(puzzle: Any) -> list[path.FrameState]:
    """The prompt frames' and the answer's attributes, from the generator's parameters."""
    meta = puzzle.meta
    return [probe.frame_state(meta["params"]["background"], objects_at(meta["kind"], meta["params"], step))
            for step in range(len(puzzle.panels) + 1)]


def reader_outputs(frames: list[path.FrameState], strength: float = 8.0) -> np.ndarray:
    """What a reader sure of every attribute would output for these frames."""
    outputs = np.full((len(frames), path.READER_OUTPUTS), -strength)
    for row, state in enumerate(frames):
        start = 0
        for name, classes in path.CLASSES.items():
            outputs[row, start + getattr(state, name)] = strength
            start += classes
        angle = math.radians(state.angle)
        outputs[row, start:] = (state.x, state.y, state.r, math.sin(angle), math.cos(angle))
    return outputs


def expecting(frame: list[int]) -> FakeSession:
    """A reasoner whose every next token is the given frame's token at that place in a frame."""
    def logits(rows: np.ndarray) -> np.ndarray:
        out = np.zeros((*rows.shape, path.VOCAB), np.float32)
        for position in range(rows.shape[1]):
            out[:, position, frame[position % path.FRAME_TOKENS]] = 10.0
        return out
    return FakeSession(logits)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_reads_as_tokens_of_their_fields(kind: str) -> None:
    puzzle = sequence(kind)
    sentence = probe.sequence_sentence(puzzle)
    assert len(sentence) == 1 + 5 * path.FRAME_TOKENS and sentence[0] == path.BOS
    starts = list(path.FIELD_STARTS.values())
    for position, token in enumerate(sentence[1:]):
        field = position % path.FRAME_TOKENS
        assert starts[field] <= token < starts[field] + list(path.LEVELS.values())[field]
    frames = [sentence[1 + i * path.FRAME_TOKENS:1 + (i + 1) * path.FRAME_TOKENS] for i in range(5)]
    assert all(a != b for a, b in zip(frames, frames[1:], strict=False)), "each step reads apart from the last"


def test_a_sure_reading_gives_the_true_tokens_and_a_flat_class_an_unsure_picture() -> None:
    frames = states(sequence("count_up"))
    reading = path.read_outputs(reader_outputs(frames))
    assert reading.frames == [path.frame_tokens(state) for state in frames]
    assert min(reading.picture_sureness) > 0.99
    doubtful = reader_outputs(frames)
    doubtful[2, :path.CLASSES["shape"]] = 0.0  # every shape equally likely
    assert path.read_outputs(doubtful).picture_sureness[2] < 0.2


def test_a_near_miss_reads_apart_from_the_answer() -> None:
    """Every wrong answer the generator draws differs from the answer in some token (or is the same picture)."""
    for kind in KINDS:
        puzzle = sequence(kind, frames=5)
        meta = puzzle.meta
        answer = path.frame_tokens(states(puzzle)[-1])
        for label, objects in wrong_answers(np.random.default_rng(0), kind, meta["params"], 5):
            tokens = path.frame_tokens(probe.frame_state(meta["params"]["background"], objects))
            same_picture = objects == objects_at(kind, meta["params"], 5)
            assert tokens != answer or same_picture, (kind, label)


def test_a_candidate_read_a_level_off_scores_the_mass_of_its_level_and_the_next() -> None:
    """A position, size or turn read one level from where the reasoner expects it still scores what the reasoner
    gave that level's neighbours; two levels off it does not; a turn comes round from the last level to the first."""
    expected = path.frame_tokens(path.FrameState(2, 3, 1, 1, x=0.5, y=0.5, r=0.2, angle=0.0))
    log_probs = np.full((1, path.FRAME_TOKENS, path.VOCAB), np.log(1e-9))
    log_probs[0, np.arange(path.FRAME_TOKENS), expected] = 0.0
    x, angle = list(path.LEVELS).index("x"), list(path.LEVELS).index("angle")

    def score(frame: list[int]) -> float:
        return float(path.candidate_log_likelihoods(log_probs, np.array([frame]))[0])

    one_off, two_off, turned_back = list(expected), list(expected), list(expected)
    one_off[x] += 1
    two_off[x] += 2
    turned_back[angle] = path.FIELD_STARTS["angle"] + path.ANGLE_BINS - 1  # -15 degrees, beside 0
    assert score(expected) == pytest.approx(0.0, abs=1e-6)
    assert score(one_off) == pytest.approx(0.0, abs=1e-6) and score(turned_back) == pytest.approx(0.0, abs=1e-6)
    assert score(two_off) < -15
    shape_off = list(expected)
    shape_off[0] += 1  # a class is never tolerated
    assert score(shape_off) < -15


def test_ranks_the_candidate_the_reasoner_expects_first() -> None:
    puzzle = sequence("translate")
    frames = states(puzzle)
    candidates = frames[:3] + [frames[-1]]
    reader = FakeSession(lambda pixels: reader_outputs(frames[:4] + candidates))
    ranked = path.SequencePath(reader, expecting(path.frame_tokens(frames[-1])), Gate(0.9, 0.5), run)
    scores = ranked.score(np.zeros((8, 3, 32, 32), np.float32), 4)
    assert scores.shape == (4,) and int(scores.argmax()) == 3


def test_writes_and_draws_the_frame_the_reasoner_expects() -> None:
    """Drawn at 64 px, the written answer is nearest the true answer among the candidates (a level's middle is
    within a pixel of where the generator put it)."""
    puzzle = generate("sequence", 53000300, size=64, kind="translate", frames=5)
    frames = states(puzzle)
    reader = FakeSession(lambda pixels: reader_outputs(frames[:5]))
    answer = path.frame_tokens(frames[-1])
    writer = path.SequencePath(reader, expecting(answer), Gate(0.9, 0.5), run)
    drawn = writer.complete(np.zeros((5, 3, 32, 32), np.float32), 3, 0.0, 0, 64)
    assert len(drawn) == 3 and drawn[0].shape == (64, 64, 3)
    np.testing.assert_array_equal(drawn[0], path.draw_frame(answer, 64))
    distances = [np.abs(drawn[0].astype(float) - candidate).mean() for candidate in puzzle.candidates]
    assert int(np.argmin(distances)) == puzzle.answer_index
    assert np.abs(drawn[0].astype(float) - puzzle.answer).mean() < 3


def test_frames_of_many_objects_are_not_drawn() -> None:
    frames = states(sequence("count_up", frames=4))
    reader = FakeSession(lambda pixels: reader_outputs(frames[:4]))
    writer = path.SequencePath(reader, expecting([0] * path.FRAME_TOKENS), Gate(0.9, 0.5), run)
    assert frames[3].count > 1 and writer.complete(np.zeros((4, 3, 32, 32), np.float32), 2, 1.0, 0, 32) is None
    assert writer.drawn_reading(np.zeros((4, 3, 32, 32), np.float32), 32) is None


def test_what_the_path_sees_is_each_frame_drawn_from_its_reading() -> None:
    frames = states(sequence("rotate", frames=4))[:4]
    reader = FakeSession(lambda pixels: reader_outputs(frames))
    seer = path.SequencePath(reader, expecting([0] * path.FRAME_TOKENS), Gate(0.9, 0.5), run)
    drawn = seer.drawn_reading(np.zeros((4, 3, 32, 32), np.float32), 48)
    assert [image.shape for image in drawn] == [(48, 48, 3)] * 4
    for image, state in zip(drawn, frames, strict=True):
        np.testing.assert_array_equal(image, path.draw_frame(path.frame_tokens(state), 48))


def test_an_unsure_reader_leaves_the_puzzle_to_the_lvm() -> None:
    frames = states(sequence("grow"))
    reader = FakeSession(lambda pixels: reader_outputs(frames, strength=0.2))
    unsure = path.SequencePath(reader, expecting([0] * path.FRAME_TOKENS), Gate(0.9, 0.5), run)
    assert unsure.score(np.zeros((5, 3, 32, 32), np.float32), 4) is None
    assert unsure.complete(np.zeros((4, 3, 32, 32), np.float32), 2, 1.0, 0, 32) is None


def test_jitter_moves_positions_sizes_and_turns_by_one_level_within_their_field() -> None:
    rows = np.full((200, path.SENTENCE), path.PAD, np.int64)
    for row in range(200):
        sentence = probe.sequence_sentence(sequence(KINDS[row % len(KINDS)], 53000400 + row))
        rows[row, :len(sentence)] = sentence
    moved = probe.jitter(rows, np.random.default_rng(0), share=0.5)
    changed = moved != rows
    assert changed.any()
    fields = (np.arange(path.SENTENCE) - 1) % path.FRAME_TOKENS
    names = list(path.LEVELS)
    assert {names[f] for f in fields[np.nonzero(changed)[1]]} == set(probe.JITTERED)
    steps = np.abs(moved - rows)[changed]
    turned = fields[np.nonzero(changed)[1]] == names.index("angle")
    assert (steps[~turned] == 1).all() and np.isin(steps[turned], (1, path.ANGLE_BINS - 1)).all()
    assert (moved[rows == path.PAD] == path.PAD).all()
    for name in probe.JITTERED:
        field = fields == names.index(name)
        values = moved[:, field & (np.arange(path.SENTENCE) > 0)]
        values = values[values != path.PAD]
        assert values.min() >= path.FIELD_STARTS[name]
        assert values.max() < path.FIELD_STARTS[name] + path.LEVELS[name]


def test_training_data_refuses_held_out_seeds(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="held-out"):
        probe.write_data(10, 999_999_995, tmp_path / "rows.npz", progress=False)


# --- a trained pair, exported into a bundle ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_with_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped bundle's files with a briefly trained reader and a small reasoner as its sequence path."""
    import torch

    work = tmp_path_factory.mktemp("sequence_path")
    assert probe.write_sight_data(6, 54000000, work / "frames.npz", draw_size=64, progress=False) == 48
    torch.save(probe.train_reader([work / "frames.npz"], minutes=0.02).state_dict(), work / "reader.pt")
    assert probe.write_data(40, 53000000, work / "rows.npz", progress=False) == 40
    probe.train_reasoner(probe.ReasonerConfig(data=str(work / "rows.npz"), out=str(work / "run"), minutes=0.02,
                                              eval_every_min=1.0, held_out=2, n_layer=1, d_model=32, ffn_hidden=64))
    bundle = work / "bundle"
    bundle.mkdir()
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    old = manifest.pop("sequence_path", None) or {}
    manifest["files"] = {name: entry for name, entry in manifest["files"].items()
                         if name not in (old.get("reader"), old.get("reasoner"))}
    for name in manifest["files"]:
        shutil.copy(SHIPPED / name, bundle / name)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    probe.export_sequence_path(work / "reader.pt", work / "run" / "model.pt", bundle, Gate(0.9, 0.5))
    return bundle


def test_export_lists_both_graphs_and_the_bundle_serves_them(bundle_with_path: Path) -> None:
    manifest = verify_bundle(bundle_with_path)
    assert manifest["sequence_path"]["sure"] == {"attribute": 0.9, "pictures": 0.5}
    assert {"sequence_reader.onnx", "sequence_reasoner.onnx"} <= set(manifest["files"])
    bundle = Bundle.load(bundle_with_path)
    bundle.sequence_path.gate = Gate(0.9, 0.0)  # an untrained reader is unsure: let it answer anyway
    puzzle = sequence("bounce", frames=6)
    from_path = bundle.sequence_path.score(images_to_tensor([*puzzle.panels, *puzzle.candidates], 32), 6)
    scores = bundle.score(puzzle.panels, puzzle.candidates, family="sequence")
    assert scores.shape == (8,) and np.isfinite(scores).all() and np.allclose(scores, from_path)
    samples = bundle.complete(puzzle.panels, n_samples=2, family="sequence")  # either road: two 32 px frames
    assert len(samples) == 2 and all(sample.shape == (32, 32, 3) for sample in samples)


def test_the_path_ranks_only_sequences_of_three_to_eight_frames(bundle_with_path: Path) -> None:
    bundle = Bundle.load(bundle_with_path)
    bundle.sequence_path.read = lambda pixels: pytest.fail("the sequence path was asked")  # type: ignore
    puzzle = sequence("rotate", frames=8)
    bundle.score(puzzle.panels, puzzle.candidates, family=None)
    bundle.score(puzzle.panels[:4], puzzle.candidates, family="analogy")
    bundle.score(puzzle.panels[:2], puzzle.candidates, family="sequence")
    bundle.complete(puzzle.panels[:5], n_samples=1, family="analogy")
    bundle.complete(puzzle.panels, n_samples=1, family=None)
    with pytest.raises(ValueError, match="context"):  # 9 frames: the LVM's, too long for it
        bundle.score([*puzzle.panels, puzzle.answer], puzzle.candidates, family="sequence")


@pytest.mark.parametrize("change, message", [
    ({"reasoner": "missing.onnx"}, "not one of the bundle's listed files"),
    ({"sure": {"attribute": 0.9}}, "sequence_path sure must be"),
    ({"sure": {"attribute": 0.3, "pictures": 0.5}}, "attribute must be a number in"),
])
def test_a_bad_sequence_path_entry_refuses_the_bundle(bundle_with_path: Path, tmp_path: Path, change: dict,
                                                      message: str) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_with_path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["sequence_path"].update(change)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        Bundle.load(copy)


def test_a_new_sequence_gate_is_a_new_model_id(bundle_with_path: Path, tmp_path: Path) -> None:
    from app.solving import bundle_id

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_with_path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["sequence_path"]["sure"]["attribute"] = 0.95
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert bundle_id(Bundle.load(copy)) != bundle_id(Bundle.load(bundle_with_path))
