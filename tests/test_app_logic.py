"""Plain functions behind the playground pages: layouts, settings, ranking, challenge, bank views."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest

from app import bank_views, bank_writes, model_picks, prompts, settings, solving, visitors
from app.pages import challenge
from puzzles.bank import repository
from puzzles.generators import generate

ROOT = Path(__file__).resolve().parent.parent


def _image(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, dtype=np.uint8)


def test_analogy_sentence_orders_pairs_then_b() -> None:
    names = ("slot-a1", "slot-a1p", "slot-a2", "slot-a2p", "slot-b")
    slots = {name: _image(value) for value, name in enumerate(names, start=1)}
    sentence = prompts.prompt_images("analogy", slots, pairs=2)
    assert [int(image[0, 0, 0]) for image in sentence] == [1, 2, 3, 4, 5]
    assert len(prompts.prompt_images("analogy", slots, pairs=1)) == 3


@pytest.mark.parametrize(
    ("layout", "slots", "pairs", "message"),
    [
        ("analogy", {"slot-a1": _image(1), "slot-a1p": _image(2)}, 1, "empty: B"),
        ("analogy", {"slot-a1": _image(1), "slot-a1p": _image(2), "slot-b": _image(3)}, 2, "empty: A2, A2'"),
        ("analogy", {}, 4, "1 to 3 example pairs"),
        ("sequence", {"seq-1": _image(1), "seq-3": _image(3)}, 1, "frame 2 is empty"),
        ("sequence", {"seq-1": _image(1)}, 1, "at least 2 frames"),
        ("matrix", {f"cell-{k}": _image(k) for k in range(1, 8)}, 1, "empty: row 3, col 2"),
        ("grid", {}, 1, "unknown layout 'grid'"),
    ],
)
def test_bad_prompts_name_the_problem(layout: str, slots: dict, pairs: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prompts.prompt_images(layout, slots, pairs)


def test_puzzles_fill_the_matching_layout() -> None:
    matrix = generate("matrix", 0, size=16)
    layout, _, slots = prompts.slots_from_puzzle("matrix", matrix.panels)
    assert layout == "matrix" and len(prompts.prompt_images("matrix", slots)) == 8
    analogy = generate("analogy", 0, size=16)
    layout, pairs, slots = prompts.slots_from_puzzle("analogy", analogy.panels)
    assert layout == "analogy" and pairs == (len(analogy.panels) - 1) // 2
    assert len(prompts.prompt_images(layout, slots, pairs)) == len(analogy.panels)
    layout, _, slots = prompts.slots_from_puzzle("sequence", [_image(k) for k in range(4)])
    assert layout == "sequence" and len(prompts.prompt_images(layout, slots)) == 4


def test_sample_settings_check_ranges_and_pick_a_seed() -> None:
    assert solving.SampleSettings.from_inputs(4, 0.8, 0, 1.0, 5).seed == 5
    assert solving.SampleSettings.from_inputs(4, 0.8, 0, 1.0, -1).seed >= 0
    with pytest.raises(ValueError, match="temperature"):
        solving.SampleSettings(temperature=0)
    with pytest.raises(ValueError, match="samples"):
        solving.SampleSettings(n_samples=0)


def test_ranking_rows_mark_pick_and_answer() -> None:
    rows = solving.ranking_rows([-3.0, -1.0, -2.0], pick=1, answer_index=2)
    assert [row["role"] for row in rows] == ["other", "pick", "answer"]
    assert [row["picked"] for row in rows] == [False, True, False]
    right = solving.ranking_rows([-3.0, -1.0], pick=1, answer_index=1)
    assert [row["role"] for row in right] == ["other", "answer"] and right[1]["picked"]


def test_ranking_shows_probabilities_among_candidates() -> None:
    """Log-likelihoods near -440 that differ by a few units become clearly different shares of 100%."""
    probabilities = solving.candidate_probabilities([-431.1, -433.4, -440.0])
    assert sum(probabilities) == pytest.approx(1.0)
    assert probabilities[0] > 0.85 and probabilities[2] < 0.001
    assert solving.candidate_probabilities([-5.0, -5.0]) == [0.5, 0.5]


def test_the_model_is_named_in_words_and_identified_exactly_in_a_tooltip() -> None:
    made = SimpleNamespace(manifest={"name": "default", "created": "2026-11-27T17:18:12+00:00", "version": "v6"})
    assert solving.model_name(made) == "default (trained 27 Nov 2026)"
    assert solving.model_name(SimpleNamespace(manifest={"name": "hand-made"})) == "hand-made"  # no date: the name
    result = solving.SolveResult(samples=[], settings=solving.SampleSettings(), bundle_id=solving.bundle_id(made),
                                 model_name=solving.model_name(made))
    line = result.settings_markdown()
    assert 'title="bundle default@v6">default (trained 27 Nov 2026)</span>' in line
    assert "top-k" in line and "reader" not in line
    result.from_attributes = True  # the matrix path's samples: only the temperature and seed applied
    line = result.settings_markdown()
    assert "top-k" not in line and "guidance" not in line and "answered from what a reader saw" in line


def test_challenge_rises_in_difficulty() -> None:
    puzzles = [{"id": f"p{i}", "family": "matrix", "difficulty": 1 + i % 5} for i in range(30)]
    puzzles.append({"id": "a", "family": "analogy", "difficulty": 1})
    ids = challenge.pick_challenge(puzzles, seed=0)
    levels = [next(p["difficulty"] for p in puzzles if p["id"] == i) for i in ids]
    assert len(ids) == challenge.CHALLENGE_SIZE and levels == sorted(levels) and set(levels) == {1, 2, 3, 4, 5}
    with pytest.raises(ValueError, match="no published matrix"):
        challenge.pick_challenge([{"id": "a", "family": "analogy"}])
    score = challenge.ChallengeScore(answered=12, correct=9, model_correct=3, seconds=60)
    assert "75.0%" in score.markdown() and "25.0%" in score.markdown() and "84.4%" in score.markdown()


@pytest.mark.parametrize(("choice", "index"), [("#3", 2), ("1", 0), (bank_views.GAVE_UP, None), (None, None)])
def test_choice_index(choice: str | None, index: int | None) -> None:
    assert bank_views.choice_index(choice) == index


def test_visitor_ids_are_kept_or_replaced() -> None:
    kept = visitors.new_visitor_id()
    assert visitors.ensure_visitor_id(kept) == kept
    assert visitors.ensure_visitor_id("<script>") != "<script>"
    assert visitors.ensure_visitor_id(None)


def test_bank_views_and_submission(make_bank, tmp_path: Path) -> None:  # noqa: ANN001
    bank = make_bank(tmp_path)
    matrix_id = repository.add_puzzle(bank, generate("matrix", 1, size=16), status="published")
    pictures, ids, pages = bank_views.bank_page(bank, repository.PuzzleFilter(family="matrix"), 0)
    assert ids == [matrix_id] and pages == 1 and pictures[0][0].shape[2] == 3
    assert matrix_id not in pictures[0][1] and "level" in pictures[0][1]  # captions in words, no internal id
    assert bank_views.bank_page(bank, repository.PuzzleFilter(family="analogy"), 0)[1] == []
    assert bank_views.id_from_choice(bank_views.example_choices(bank)[0]) == matrix_id
    assert bank_views.bank_thumbnails(bank)
    puzzle_id = bank_writes.submit_prompt(bank, "visitor1", "sequence", [_image(1), _image(2)], None, [], " Mine ")
    assert repository.get_puzzle(bank, puzzle_id).status == "pending"
    with pytest.raises(ValueError, match="already in the bank") as duplicate:
        bank_writes.submit_prompt(bank, "visitor1", "sequence", [_image(1), _image(2)], None, [], "again")
    assert puzzle_id not in str(duplicate.value)  # an id means nothing to the visitor who sees the message
    with pytest.raises(ValueError, match="no puzzle 'nope'"):
        bank_views.fetch_puzzle(bank, "nope")


def test_form_values_become_the_banks_filter() -> None:
    """The Bank page and the curator export read their forms into the bank's own PuzzleFilter."""
    assert bank_views.puzzle_filter("any", "any", "", 1, 5, False) == repository.PuzzleFilter()
    exported = bank_views.puzzle_filter("matrix", "any", " red ", 2, 4, True, status="any")
    assert exported == repository.PuzzleFilter(family="matrix", tag="red", difficulty=(2, 4), status=None,
                                               model_wrong=True)
    with pytest.raises(ValueError, match="lowest difficulty 4 is above the highest 2"):
        bank_views.puzzle_filter("any", "any", "", 4, 2, False)


def test_settings_resolve_cli_over_env_over_default() -> None:
    resolved = settings.resolve({"port": "9000"}, environ={"GELATO_PORT": "8000", "GELATO_HOST": "0.0.0.0"})
    assert resolved.port == 9000 and resolved.host == "0.0.0.0" and resolved.bundle is None
    assert settings.resolve({}, environ={"GELATO_DATA_DIR": "/x"}).temp_dir == Path("/x/tmp")
    with pytest.raises(ValueError, match="port must be an integer"):
        settings.resolve({"port": "http"}, environ={})
    assert settings.resolve({}, environ={}).model_niceness == 0  # a browser on the same machine: no handicap
    assert settings.resolve({}, environ={"GELATO_MODEL_NICENESS": "10"}).model_niceness == 10
    for wrong in ("-1", "20"):
        with pytest.raises(ValueError, match="model_niceness must be between 0 and 19"):
            settings.resolve({"model_niceness": wrong}, environ={})


def test_settings_table_lists_every_setting() -> None:
    table = settings.markdown_table()
    for setting in settings.SETTINGS:
        assert f"`{setting.flag}`" in table and f"`{setting.env}`" in table


def test_readme_settings_table_matches_the_declared_settings() -> None:
    """Once README.md documents the settings (names an env var), it must carry markdown_table() verbatim."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    if any(setting.env in readme for setting in settings.SETTINGS):
        assert settings.markdown_table() in readme, "README.md settings table is stale: paste settings.markdown_table()"


def test_cli_help_lists_flags_and_importing_loads_no_model() -> None:
    code = "import sys, app.server, app.pages.play; assert not {'torch', 'onnxruntime'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    command = [sys.executable, "-m", "app", "--help"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    for setting in settings.SETTINGS:
        assert setting.flag in result.stdout and setting.env in result.stdout


def test_solve_defaults_are_the_bundle_manifest_sampling(tmp_path: Path, tiny_bundle_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    from types import SimpleNamespace

    from app import services

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for path in tiny_bundle_dir.iterdir():
        (bundle / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["sampling"] = {"temperature": 0.0, "top_k": 5, "top_p": 0.9}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(services, "_current", services.Services(SimpleNamespace(bundle=bundle), bank=None))
    chosen = solving.default_sampling()
    assert (chosen.temperature, chosen.top_k, chosen.top_p) == (solving.MIN_TEMPERATURE, 5, 0.9)  # greedy -> coolest
    settings = solving.SampleSettings.from_inputs(2, None, None, None, 7)
    assert (settings.temperature, settings.top_k, settings.top_p, settings.seed) == (0.1, 5, 0.9, 7)
    assert solving.SampleSettings.from_inputs(2, 1.5, 0, 1.0, 7).top_k == 0  # what a visitor sets wins
    monkeypatch.setattr(services, "_current", None)
    assert solving.default_sampling() == solving.SampleSettings()


def test_a_solve_samples_guided_as_the_bundle_guides_its_family(tiny_bundle_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from engine.serving.runtime import Bundle

    bundle_dir = Path(shutil.copytree(tiny_bundle_dir, tmp_path / "bundle"))
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["sampling"] = {"temperature": 0.5, "top_k": 0, "top_p": 1.0, "guidance": {"analogy": 2.0}}
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    bundle = Bundle.load(bundle_dir)
    asked: list[float] = []
    real_complete = bundle.complete
    monkeypatch.setattr(bundle, "complete", lambda *a, **k: asked.append(k["guidance"]) or real_complete(*a, **k))
    panels = generate("analogy", 0, size=32).panels[-3:]
    settings = solving.SampleSettings(n_samples=2, temperature=0.5, seed=1)
    analogy = solving.solve(bundle, panels, settings, family="analogy")
    plain = solving.solve(bundle, panels, settings, family="sequence")
    chosen = solving.solve(bundle, panels, replace(settings, guidance=0.0), family="analogy")  # the caller's wins
    assert asked == [2.0, 0.0, 0.0]
    assert analogy.settings.guidance == 2.0 and "guidance 2," in analogy.settings_markdown()
    assert "guidance off," in plain.settings_markdown() and chosen.settings.guidance == 0.0
    assert [a.tobytes() for a in chosen.samples] == [b.tobytes() for b in plain.samples]


def test_puzzle_pictures_frame_cells_and_mark_the_missing_one_with_a_question_mark() -> None:
    from puzzles.draw import CELL_BORDER, MISSING_FILL, MONTAGE_GAP

    cell = 48
    panels = generate("matrix", 3, size=cell).panels
    picture = bank_views.puzzle_picture({"family": "matrix", "panels": panels}, cell=cell)
    step = cell + MONTAGE_GAP
    assert picture.shape == (3 * step + MONTAGE_GAP, 3 * step + MONTAGE_GAP, 3)
    top = left = MONTAGE_GAP + step  # the middle cell: its frame is drawn whatever its shapes
    assert picture[top, left + cell // 2].tolist() == list(CELL_BORDER)
    assert picture[top + cell - 1, left + cell // 2].tolist() == list(CELL_BORDER)
    missing = picture[MONTAGE_GAP + 2 * step :][: cell, MONTAGE_GAP + 2 * step :][:, :cell]
    middle = missing[cell // 4 : 3 * cell // 4, cell // 4 : 3 * cell // 4, 0]
    assert (middle < 128).sum() > 20, "a dark '?' in the missing cell"
    centre_column = missing[cell // 4 : 3 * cell // 4, cell // 2, 0]
    assert (centre_column >= MISSING_FILL[0] - 5).sum() > 3, "a '?', not a solid vertical bar"


def test_an_arc_task_with_more_pairs_than_play_holds_keeps_its_first_pairs_and_test_input() -> None:
    panels = [_image(k) for k in range(9)]  # four in/out pairs, then the test input
    layout, pairs, slots = prompts.slots_from_puzzle("grid", panels)
    sentence = prompts.prompt_images(layout, slots, pairs)
    assert layout == "analogy" and pairs == prompts.MAX_PAIRS
    assert [int(image[0, 0, 0]) for image in sentence] == [0, 1, 2, 3, 4, 5, 8]


def test_named_api_prompts_are_checked_like_the_play_layouts() -> None:
    from app.pages import api

    assert len(api.sentence("analogy", [_image(k) for k in range(5)])) == 5
    assert len(api.sentence("sequence", [_image(k) for k in range(3)])) == 3
    with pytest.raises(ValueError, match="3, 5 or 7 images, not 4"):
        api.sentence("analogy", [_image(k) for k in range(4)])
    with pytest.raises(ValueError, match="at most 8 images, not 9"):
        api.sentence("matrix", [_image(k) for k in range(9)])
    with pytest.raises(ValueError, match="empty: row 3, col 2"):
        api.sentence("matrix", [_image(k) for k in range(7)])


def test_candidates_are_ranked_by_the_bundles_rule_for_the_layouts_family(
        tmp_path: Path, tiny_bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import shutil
    from types import SimpleNamespace

    from app import services
    from app.pages import api
    from engine.serving.runtime import Bundle

    bundle_dir = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, bundle_dir)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["scoring"] = {"rules": {"analogy": "pmi_channel"}, "chosen_by": "test"}
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(services, "_current", services.Services(SimpleNamespace(bundle=bundle_dir, model_niceness=0),
                                                                bank=None))
    bundle = Bundle.load(bundle_dir)
    prompt, candidates = [_image(k * 40) for k in range(3)], [_image(k * 30 + 5) for k in range(4)]
    for layout, rule in (("analogy", "pmi_channel"), ("sequence", "sum")):
        expected = solving.candidate_probabilities(list(bundle.score(prompt, candidates, scoring=rule)))
        np.testing.assert_allclose(api.rank(prompt, candidates, layout), expected, rtol=1e-4, atol=1e-5)
    too_many = [_image(k * 13) for k in range(17)]  # each candidate costs a scoring run: a ranking takes 16
    with pytest.raises(gr.Error, match="at most 16 candidates can be ranked at once, got 17"):
        api.rank(prompt, too_many, "analogy")


@pytest.mark.parametrize("make_bank", ["sqlite"], indirect=True)
def test_the_model_ranks_the_whole_bank_once_per_bundle(make_bank, tmp_path: Path, tiny_bundle_dir: Path) -> None:  # noqa: ANN001
    from engine.serving.runtime import Bundle

    bank = make_bank(tmp_path)
    for seed in range(3):
        puzzle = generate("analogy", seed, size=32)
        puzzle.panels, puzzle.layout = puzzle.panels[-3:], {**puzzle.layout, "pairs": 1}  # fits the tiny context
        puzzle.id = puzzle.content_id()
        repository.add_puzzle(bank, puzzle, status="published")
    repository.add_puzzle(bank, generate("matrix", 0, size=32), status="published")  # too long for it: skipped
    wrong_filter = repository.PuzzleFilter(model_wrong=True)
    assert bank_views.bank_page(bank, wrong_filter, 0)[1] == []  # a fresh bank: nothing known
    bundle = Bundle.load(tiny_bundle_dir)
    assert model_picks.record_model_picks(bank, bundle) == 3
    assert model_picks.record_model_picks(bank, bundle) == 0  # once per bundle
    known = [repository.puzzle_stats(bank, puzzle_id)["model_results"] for puzzle_id in
             [item.id for item in repository.list_puzzles(bank, family="analogy")[0]]]
    wrong = sum(not results[0]["correct"] for results in known)
    assert len(bank_views.bank_page(bank, wrong_filter, 0)[1]) == wrong
    rules_changed = tmp_path / "rules-changed"
    shutil.copytree(tiny_bundle_dir, rules_changed)
    manifest = json.loads((rules_changed / "manifest.json").read_text())
    manifest["scoring"] = {"rules": {"analogy": "pmi_channel"}, "chosen_by": "test"}
    (rules_changed / "manifest.json").write_text(json.dumps(manifest))
    rescored = Bundle.load(rules_changed)  # the same weights answering by another rule: a model to rank with again
    assert solving.bundle_id(rescored) != solving.bundle_id(bundle)
    assert solving.bundle_id(Bundle.load(tiny_bundle_dir)) == solving.bundle_id(bundle)
    assert model_picks.record_model_picks(bank, rescored) == 3


def test_the_models_answer_to_a_bank_puzzle_is_made_once_per_bundle_and_settings(
        tiny_bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.kept import KeptImages
    from engine.serving.runtime import Bundle

    monkeypatch.setattr(model_picks, "_answers", KeptImages(2))
    bundle = Bundle.load(tiny_bundle_dir)
    calls = []
    real_complete = bundle.complete
    monkeypatch.setattr(bundle, "complete", lambda *a, **k: calls.append(k["seed"]) or real_complete(*a, **k))
    puzzle = generate("analogy", 0, size=32)
    puzzle_dict = {"id": "p1", "panels": puzzle.panels[-3:]}
    settings = solving.SampleSettings(n_samples=1, seed=0)
    first = model_picks.model_answer(bundle, puzzle_dict, settings)
    again = model_picks.model_answer(bundle, puzzle_dict, settings)
    assert calls == [0] and again is first
    model_picks.model_answer(bundle, puzzle_dict, solving.SampleSettings(n_samples=1, seed=5))  # other settings
    model_picks.model_answer(bundle, {**puzzle_dict, "id": "p2"}, settings)  # another puzzle
    assert calls == [0, 5, 0]
    assert not first.flags.writeable  # shared by every request
    model_picks.model_answer(bundle, {**puzzle_dict, "id": "p3"}, settings)  # two kept: the oldest leaves
    assert len(model_picks._answers) == 2 and "p1" not in {key[1] for key in model_picks._answers.keys()}


def test_what_the_model_sees_of_a_matrix_is_what_its_reader_read() -> None:
    """The shipped bundle answers generated matrices on its matrix path: Play shows each panel as the reader read
    it, and says so under the samples; an analogy still shows the tokenizer's round trip."""
    from engine.bundle import SHIPPED_BUNDLE_DIR
    from engine.serving.runtime import Bundle
    from puzzles.generators import generate
    from puzzles.matrix_panels import draw_state

    bundle = Bundle.load(SHIPPED_BUNDLE_DIR)
    puzzle = generate("matrix", 1_000_000_000, size=96, layout="center")
    seen = solving.what_the_model_sees(bundle, puzzle.panels, family="matrix")
    assert [caption for _, caption in seen] == [f"input {i}, as read" for i in range(1, 9)]
    assert np.array_equal(seen[0][0], draw_state("center", puzzle.meta["panels"][0], bundle.image_size))
    assert solving.solve(bundle, puzzle.panels, solving.SampleSettings(n_samples=2), family="matrix").from_attributes
    analogy = generate("analogy", 1_000_000_000, size=64)
    assert [caption for _, caption in solving.what_the_model_sees(bundle, analogy.panels, family="analogy")][0] == \
        "input 1"


def test_what_the_model_sees_of_a_moving_shape_is_what_its_frame_reader_read() -> None:
    """A held-out sequence of one moving shape: Play shows each frame as the sequence path's reader read it and draws
    the answer there; a count of shapes, which cannot be drawn back, keeps the tokenizer's round trip."""
    from engine.bundle import SHIPPED_BUNDLE_DIR
    from engine.serving.runtime import Bundle
    from puzzles.generators import generate
    from puzzles.images import to_square

    bundle = Bundle.load(SHIPPED_BUNDLE_DIR)
    moving = generate("sequence", 1_000_000_001, size=96, kind="translate", frames=5)
    seen = solving.what_the_model_sees(bundle, moving.panels, family="sequence")
    assert [caption for _, caption in seen] == [f"input {i}, as read" for i in range(1, 6)]
    shrunk = [to_square(panel, bundle.image_size).astype(float) for panel in moving.panels]
    assert np.abs(seen[2][0] - shrunk[2]).mean() < np.abs(seen[2][0] - shrunk[0]).mean()  # frame 3, not frame 1
    assert solving.solve(bundle, moving.panels, solving.SampleSettings(n_samples=2), family="sequence").from_attributes
    counting = generate("sequence", 1_000_000_002, size=96, kind="count_up", frames=5)
    assert solving.what_the_model_sees(bundle, counting.panels, family="sequence")[0][1] == "input 1"
