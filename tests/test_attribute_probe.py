"""The attribute probe: matrices written as their attributes, the rows it trains on, a short run's checks."""
import json

import numpy as np
import pytest

from engine import attribute_probe as probe
from engine.serving import matrix_path as vocab
from puzzles.generators import generate
from puzzles.seeds import HELD_OUT_START


def test_sentence_holds_each_panel_and_candidate_attributes():
    puzzle = generate("matrix", 47000001, size=32, layout="left_right")
    prompt, candidates, answer = probe.attribute_sentence(puzzle)
    assert len(prompt) == vocab.PROMPT_TOKENS and prompt[:2] == [vocab.BOS, vocab.LAYOUT0 + 3]
    assert len(candidates) == 8 and all(len(c) == vocab.PANEL_TOKENS for c in candidates)
    assert answer == puzzle.answer_index
    left = puzzle.meta["candidates"][answer]["left"]
    assert candidates[answer][:3] == [vocab.TYPE0 + left["type"], vocab.SIZE0 + left["size"],
                                      vocab.COLOUR0 + left["colour"]]
    assert all(candidates[i] != candidates[answer] for i in range(8) if i != answer)
    assert max(prompt + sum(candidates, [])) < vocab.VOCAB


def test_one_component_layout_pads_the_second_slot():
    prompt, candidates, _ = probe.attribute_sentence(generate("matrix", 47000002, size=32, layout="grid3x3"))
    half = vocab.PANEL_TOKENS // 2
    assert all(c[half:] == [vocab.EMPTY] * half for c in candidates)
    cells = candidates[0][3] - vocab.POSITIONS0
    assert 0 < cells < vocab.POSITION_SETS  # a set of grid cells, at least one filled


def test_refuses_what_is_not_a_generated_matrix():
    with pytest.raises(ValueError, match="not a generated matrix"):
        probe.attribute_sentence(generate("sequence", 47000003, size=32))


def test_data_refuses_held_out_seeds(tmp_path):
    with pytest.raises(ValueError, match="held-out"):
        probe.write_data(10, HELD_OUT_START - 5, tmp_path / "rows.npy", progress=False)


def test_rows_train_on_the_answer_after_the_prompt(tmp_path):
    kept = probe.write_data(6, 47000010, tmp_path / "rows.npy", progress=False)
    rows = np.load(tmp_path / "rows.npy")
    assert rows.shape == (kept, probe.ROW) and kept >= 5
    sentences = probe.sentences(rows)
    for row, sentence in zip(rows, sentences, strict=True):
        answer = int(row[-1])
        start = vocab.PROMPT_TOKENS + answer * vocab.PANEL_TOKENS
        assert list(sentence[vocab.PROMPT_TOKENS:]) == list(row[start:start + vocab.PANEL_TOKENS])


def test_a_short_run_logs_held_out_checks(tmp_path):
    probe.write_data(40, 47000100, tmp_path / "rows.npy", progress=False)
    config = probe.ProbeConfig(data=str(tmp_path / "rows.npy"), out=str(tmp_path / "run"), minutes=0.03,
                               eval_every_min=1.0, per_layout=1)
    checks = probe.train_probe(config)
    assert [c["puzzles"] > 0 for c in checks] == [False, True]
    assert set(checks[-1]["layouts"]) == set(probe.LAYOUTS)
    assert all(0.0 <= c["multiple_choice"] <= 1.0 for c in checks)
    assert (tmp_path / "run" / "model.pt").is_file()
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert logged == checks


def test_train_refuses_rows_of_another_shape(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((3, 10), np.int16))
    with pytest.raises(ValueError, match="rows of"):
        probe.train_probe(probe.ProbeConfig(data=str(tmp_path / "bad.npy"), out=str(tmp_path / "run")))


def test_pictures_come_with_their_attributes():
    puzzle = generate("matrix", 47000004, size=32, layout="center")
    pictures, targets = probe.panel_targets(puzzle)
    assert pictures.shape == (16, 32, 32, 3) and targets.shape == (16, vocab.SLOTS, 4)
    answer = puzzle.meta["candidates"][puzzle.answer_index]["main"]
    assert list(targets[8 + puzzle.answer_index, 0, :3]) == [answer["type"], answer["size"], answer["colour"]]
    assert (targets[:, 1] == -1).all()  # one component: the second slot is empty


def test_a_short_sight_run_reports_each_layout(tmp_path):
    probe.write_sight_data(8, 47000200, tmp_path / "pictures.npz", progress=False)
    reader = probe.train_reader(tmp_path / "pictures.npz", minutes=0.02)
    report = probe.sight_report(reader, probe.reasoner_model().eval(), per_layout=1)
    for measure in ("pictures_read_whole", "multiple_choice_from_pixels"):
        assert set(report[measure]) == set(probe.LAYOUTS)
        assert all(0.0 <= value <= 1.0 for value in report[measure].values())
