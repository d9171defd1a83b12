"""Evaluation: puzzle sources, per-puzzle metrics (checked with an oracle), the report schema and the CLI."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import evaluate, sampling_sweep
from engine.serving.decode import SamplingOptions
from engine.serving.runtime import SCORING_RULES, Bundle, sampling_defaults
from puzzles.generators import generate
from puzzles.generators.grid import puzzle_from_pairs
from puzzles.pack import write_pack
from puzzles.puzzle import Puzzle
from puzzles.seeds import eval_seed, is_held_out
from tests.helpers import build_tiny_bundle

ROOT = Path(__file__).resolve().parents[1]


class OracleBundle:
    """Stands in for a Bundle: generates the true answer and scores it highest, so every metric is known."""

    name, directory, provider, manifest, image_size, max_images = "oracle", Path("."), "none", {}, 64, 10
    sampling = SamplingOptions(temperature=0.7, top_k=10)

    def __init__(self, answer: np.ndarray, answer_index: int | None) -> None:
        self.answer, self.answer_index = answer, answer_index
        self.sampled_with: list[dict[str, Any]] = []

    def sampling_for(self, family: str | None) -> SamplingOptions:
        return replace(self.sampling, guidance=2.0 if family == "analogy" else 0.0)

    def scoring_rule(self, family: str | None = None) -> str:
        return "sum"

    def score(self, images: list[np.ndarray], candidates: list[np.ndarray], scoring: str | None = None,
              family: str | None = None) -> np.ndarray:
        return np.array([0.0 if i == self.answer_index else -1.0 for i in range(len(candidates))])

    def complete(self, images: list[np.ndarray], n_samples: int = 4, **options: Any) -> list[np.ndarray]:
        self.sampled_with.append(options)
        return [self.answer.copy() for _ in range(n_samples)]

    def roundtrip(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [np.clip(image.astype(int) + 1, 0, 255).astype(np.uint8) for image in images]


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return Bundle.load(build_tiny_bundle()[0])


def test_spec_entries_use_held_out_seeds_and_variants() -> None:
    assert evaluate.parse_spec("matrix:all, analogy,arc:arcagi1-eval") == [
        ("matrix", "all"), ("analogy", None), ("arc", "arcagi1-eval")]
    centre = evaluate.load_puzzles("matrix:center", 2, 32)
    assert [p.meta["layout"] for p in centre] == ["center", "center"]
    assert all(is_held_out(p.source["seed"]) for p in centre)
    every = evaluate.load_puzzles("matrix:all", 3, 32)
    assert len({p.meta["layout"] for p in every}) == 3
    arc = evaluate.load_puzzles("arc:arcagi1-eval", 2, 64)
    assert [p.family for p in arc] == ["grid", "grid"] and arc[0].meta["dataset"] == "arcagi1-eval"


@pytest.mark.parametrize(("spec", "message"), [
    ("nonsense", "unknown puzzle family 'nonsense'"),
    ("matrix:bogus", "unknown matrix layout 'bogus'"),
    ("arc:nowhere", "unknown ARC dataset 'nowhere'"),
    ("matrix,,analogy", "empty entry"),
])
def test_bad_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate.load_puzzles(spec, 1, 32)


def test_pack_and_raven_sources(tmp_path: Path) -> None:
    puzzles = [generate("sequence", 1_000_000_000 + i, size=32) for i in range(2)]
    write_pack(puzzles, tmp_path / "pack")
    assert [p.id for p in evaluate.load_puzzles(str(tmp_path / "pack"), None, 32)] == [p.id for p in puzzles]
    assert len(evaluate.load_puzzles(str(tmp_path / "pack"), 1, 32)) == 1
    raven = tmp_path / "raven" / "center_single"
    raven.mkdir(parents=True)
    for index in range(2):
        cells = np.random.default_rng(index).integers(0, 256, (16, 40, 40), dtype=np.uint8)
        np.savez(raven / f"RAVEN_{index}_test.npz", image=cells, target=np.array(3))
    loaded = evaluate.load_puzzles(str(tmp_path / "raven"), None, 32)
    assert len(loaded) == 2 and loaded[0].answer_index == 3 and loaded[0].panels[0].shape == (32, 32, 3)
    assert evaluate.configuration(loaded[0]) == "center_single"


def test_oracle_gets_every_metric_right() -> None:
    puzzle = generate("matrix", 1_000_000_000, size=64, layout="center")
    result = evaluate.evaluate_puzzle(OracleBundle(puzzle.answer, puzzle.answer_index), puzzle)
    assert result.multiple_choice_correct and result.generative_correct
    assert result.chosen_candidate == puzzle.answer_index and result.configuration == "center"
    assert result.psnr_generated == 100.0 and 45.0 < result.psnr_ceiling < 100.0
    assert result.pass_at_2 is None
    assert result.attributes_wrong == []


def test_wrong_choices_are_broken_down_by_the_attribute_they_miss() -> None:
    """The chosen candidate's attributes against the answer's, by the generator's meta; a report counts each."""
    puzzle = generate("matrix", 1_000_000_000, size=64, layout="center")
    changed = {f"{component}.{attribute}" for component, attribute in puzzle.meta["candidate_changes"]}
    described = puzzle.meta["candidates"]
    wrong = {index: evaluate.attributes_wrong(puzzle, index) for index in range(8)}
    assert wrong[puzzle.answer_index] == []
    assert {name for names in wrong.values() for name in names} == changed  # the cube's three attributes
    assert sum(len(names) == 3 for names in wrong.values()) == 1  # one corner differs in all three
    one_off = next(i for i, names in wrong.items() if len(names) == 1)
    name = wrong[one_off][0]
    component, attribute = name.split(".")
    assert described[one_off][component][attribute] != described[puzzle.answer_index][component][attribute]
    results = [evaluate.PuzzleResult("a", "matrix", "center", False, one_off, False, None, 1.0, 1.0, 0.1,
                                     attributes_wrong=wrong[one_off]),
               evaluate.PuzzleResult("b", "matrix", "center", True, 0, True, None, 1.0, 1.0, 0.1, attributes_wrong=[]),
               evaluate.PuzzleResult("c", "sequence", "s", True, 0, True, None, 1.0, 1.0, 0.1)]
    report = {"schema": evaluate.SCHEMA, "created": "now", "bundle": {"name": "b", "provider": "cpu"},
              **evaluate.build_report(results)}
    assert report["overall"]["multiple_choice_errors_by_attribute"] == {name: 0.5}
    assert f"choices wrong by attribute: {name} 50.0%" in evaluate.format_table(report)
    assert evaluate.attributes_wrong(generate("sequence", 1_000_000_000, size=64), 0) is None
    for entry in report["puzzles"]:  # a report written before the breakdown existed still reads
        del entry["attributes_wrong"]
    evaluate.validate_report(report)


def test_generation_samples_at_the_bundle_defaults_unless_told_otherwise() -> None:
    puzzle = generate("matrix", 1_000_000_000, size=64, layout="center")
    oracle = OracleBundle(puzzle.answer, puzzle.answer_index)
    evaluate.evaluate_puzzle(oracle, puzzle)
    evaluate.evaluate_puzzle(oracle, puzzle, SamplingOptions(temperature=0.0))
    evaluate.evaluate_puzzle(oracle, generate("analogy", 1_000_000_000, size=64))  # the family's own guidance
    assert oracle.sampled_with[0] == {"temperature": 0.7, "top_k": 10, "top_p": 1.0, "seed": 0, "guidance": 0.0,
                                     "family": "matrix"}
    assert oracle.sampled_with[1]["temperature"] == 0.0 and oracle.sampled_with[1]["top_k"] == 0
    assert oracle.sampled_with[2]["guidance"] == 2.0


def test_sampling_defaults_come_from_the_manifest() -> None:
    assert sampling_defaults({}) == SamplingOptions(temperature=1.0, top_k=0, top_p=1.0)
    manifest = {"sampling": {"temperature": 0.5, "top_k": 4, "top_p": 0.9, "guidance": {"analogy": 1.5},
                             "chosen_by": "x"}}
    assert sampling_defaults(manifest) == SamplingOptions(temperature=0.5, top_k=4, top_p=0.9)
    assert sampling_defaults(manifest, "analogy") == SamplingOptions(temperature=0.5, top_k=4, top_p=0.9, guidance=1.5)


def test_sampling_sweep_picks_the_best_setting_and_writes_it(bundle: Bundle, tmp_path: Path) -> None:
    assert sampling_sweep.parse_settings("t=0; t=0.7,k=10,p=0.9; t=0.5,g=2") == [
        SamplingOptions(temperature=0.0), SamplingOptions(temperature=0.7, top_k=10, top_p=0.9),
        SamplingOptions(temperature=0.5, guidance=2.0)]
    with pytest.raises(ValueError, match="not t=, k=, p= or g="):
        sampling_sweep.parse_settings("temperature=1")
    puzzles = evaluate.load_puzzles("matrix:center,sequence", 2, 16)
    report = sampling_sweep.sweep(bundle, puzzles, sampling_sweep.parse_settings("t=0;t=1;t=0.5,k=2"), samples=2)
    means = [result["mean"] for result in report["settings"][1:]]  # greedy is measured, never chosen
    best = report["settings"][1 + int(np.argmax(means))]["sampling"]
    assert report["best"] == {**{k: v for k, v in best.items() if k != "guidance"}, "guidance": {}}
    assert set(report["settings"][0]["families"]) == {"matrix", "sequence"}
    copy_dir = tmp_path / "bundle"
    copy_dir.mkdir()
    for path in bundle.directory.iterdir():
        (copy_dir / path.name).write_bytes(path.read_bytes())
    sampling_sweep.write_sampling(copy_dir, {"temperature": 0.5, "top_k": 3, "top_p": 1.0,
                                             "guidance": {"analogy": 2.0}}, "test")
    assert Bundle.load(copy_dir).sampling == SamplingOptions(temperature=0.5, top_k=3)
    assert Bundle.load(copy_dir).sampling_for("analogy") == SamplingOptions(temperature=0.5, top_k=3, guidance=2.0)


def _setting(temperature: float, guidance: float, hits: dict[str, list[int]]) -> dict[str, Any]:
    families = {family: sum(right) / (4 * len(right)) for family, right in hits.items()}
    return {"sampling": asdict(SamplingOptions(temperature=temperature, guidance=guidance)), "hits": hits,
            "families": families, "mean": sum(families.values()) / len(families)}


def test_the_sweep_gives_a_family_guidance_only_where_it_wins_beyond_noise() -> None:
    base = {"analogy": [1] * 40, "matrix": [1] * 40, "sequence": [2] * 40}
    results = [
        _setting(0.3, 0.0, base),
        _setting(0.7, 0.0, {"analogy": [1] * 40, "matrix": [0] * 40, "sequence": [2] * 40}),
        # analogy: better on 20 puzzles and worse on none (p 2e-6); matrix: 4 better (p 0.125); sequence worse
        _setting(0.3, 1.0, {"analogy": [2] * 20 + [1] * 20, "matrix": [2] * 4 + [1] * 36, "sequence": [1] * 40}),
        _setting(0.3, 2.0, {"analogy": [3] * 20 + [1] * 20, "matrix": [1] * 40, "sequence": [0] * 40}),
        _setting(0.7, 3.0, {"analogy": [4] * 40, "matrix": [4] * 40, "sequence": [4] * 40}),  # another temperature
    ]
    chosen = sampling_sweep.choose(results)
    assert chosen == {"temperature": 0.3, "top_k": 0, "top_p": 1.0, "guidance": {"analogy": 2.0}}


def test_grid_answers_are_read_back_as_grids() -> None:
    answer_grid = [[1, 2, 0], [0, 3, 3]]
    puzzle = puzzle_from_pairs([([[1]], [[2]])], [[5, 5]], answer_grid, 64, "toy", {"generator": "test"})
    right = evaluate.evaluate_puzzle(OracleBundle(puzzle.answer, None), puzzle)
    assert right.generative_correct and right.pass_at_2 and right.multiple_choice_correct is None
    wrong = evaluate.evaluate_puzzle(OracleBundle(np.full((64, 64, 3), 255, np.uint8), None), puzzle)
    assert wrong.generative_correct is False and wrong.pass_at_2 is False


def test_evaluate_real_bundle_builds_a_valid_report(bundle: Bundle) -> None:
    puzzles: list[Puzzle] = [*evaluate.load_puzzles("matrix:center,sequence", 2, 16),
                             generate("analogy", 1_000_000_000, size=16, pairs=1)]
    steps: list[float] = []
    report = evaluate.evaluate(bundle, puzzles, progress=lambda fraction, message: steps.append(fraction))
    evaluate.validate_report(json.loads(json.dumps(report)))
    assert steps[-1] == 1.0 and len(steps) == 5
    assert report["overall"]["n"] == 5 and report["overall"]["n_multiple_choice"] == 5
    assert set(report["families"]) == {"matrix", "sequence", "analogy"}
    assert list(report["families"]["matrix"]["configurations"]) == ["center"]
    assert report["bundle"]["name"] == "tiny-test" and report["bundle"]["provider"] == bundle.provider
    for entry in report["puzzles"]:
        assert 0 <= entry["chosen_candidate"] < 8 and entry["seconds"] > 0
    assert "matrix" in evaluate.format_table(report)
    assert report["sampling"] == {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "guidance": {}}
    guided = evaluate.evaluate(bundle, puzzles[2:], overrides={"guidance": 1.5, "temperature": 0.5})
    assert guided["sampling"] == {"temperature": 0.5, "top_k": 0, "top_p": 1.0, "guidance": {"sequence": 1.5,
                                                                                           "analogy": 1.5}}


@pytest.mark.parametrize(("path", "value", "message"), [
    (("schema",), "other/1", "report.schema"),
    (("overall", "multiple_choice_accuracy"), 1.5, "multiple_choice_accuracy"),
    (("overall", "n"), -1, r"report.overall.n\b"),
    (("families", "matrix", "n"), 99, "do not add up"),
    (("puzzles",), [], "one entry per evaluated puzzle"),
])
def test_schema_check_names_the_problem(path: tuple[str, ...], value: Any, message: str) -> None:
    result = evaluate.PuzzleResult("x", "matrix", "center", True, 0, False, None, 12.0, 20.0, 0.5)
    report = {"schema": evaluate.SCHEMA, "created": "now", "bundle": {"name": "b", "provider": "cpu"},
              **evaluate.build_report([result])}
    evaluate.validate_report(report)
    broken = copy.deepcopy(report)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError, match=message):
        evaluate.validate_report(broken)


def test_cli_writes_json_and_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval" / "report.json"
    bundle_dir = str(build_tiny_bundle()[0])
    evaluate.main(["--bundle", bundle_dir, "--puzzles", "matrix:center", "--n", "1", "--json", str(out)])
    report = json.loads(out.read_text())
    evaluate.validate_report(report)
    assert report["puzzle_source"] == "matrix:center" and report["overall"]["n"] == 1
    assert "MC acc" in capsys.readouterr().out
    evaluate.main(["--bundle", bundle_dir, "--puzzles", "matrix:center", "--n", "1", "--json", str(out),
                   "--guidance", "1.5"])
    assert json.loads(out.read_text())["sampling"]["guidance"] == {"matrix": 1.5}
    with pytest.raises(SystemExit):
        evaluate.main(["--bundle", bundle_dir, "--puzzles", "matrix:center", "--json", str(out), "--guidance", "-1"])
    assert "guidance must be in [0, 10]" in capsys.readouterr().err


def test_first_takes_the_next_held_out_puzzles() -> None:
    both = evaluate.load_puzzles("matrix:all,analogy", 4, 16)
    later = evaluate.load_puzzles("matrix:all,analogy", 2, 16, first=2)
    assert [p.id for p in later] == [p.id for p in both[2:4] + both[6:8]]
    assert [p.meta["layout"] for p in later[:2]] == [p.meta["layout"] for p in both[2:4]]  # variants keep turning


def test_each_family_gets_the_scoring_rule_that_chose_best(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def results(family: str, by_rule: list[dict[str, bool]]) -> list[evaluate.PuzzleResult]:
        return [evaluate.PuzzleResult(f"{family}{i}", family, "c", rule["sum"], 0, False, None, 12.0, 20.0, 0.5,
                                      correct_by_rule=rule) for i, rule in enumerate(by_rule)]
    sum_wins, pmi_wins, tie = ({"sum": True, "pmi_last_panel": False}, {"sum": False, "pmi_last_panel": True},
                               {"sum": True, "pmi_last_panel": True})
    report = evaluate.build_report([*results("analogy", [pmi_wins] * 12 + [sum_wins, tie]),
                                    *results("sequence", [sum_wins] * 9 + [tie]),
                                    *results("matrix", [pmi_wins] * 9 + [sum_wins, tie])])
    # analogy: 12 wins to 1 (p 0.003); matrix: 9 to 1 (p 0.021) is not enough evidence, so it keeps the sum
    assert evaluate.best_scoring(report) == {"analogy": "pmi_last_panel"}

    bundle_dir = tmp_path / "bundle"
    shutil.copytree(build_tiny_bundle()[0], bundle_dir)
    evaluate.main(["--bundle", str(bundle_dir), "--puzzles", "analogy", "--n", "2", "--first", "5",
                   "--json", str(tmp_path / "choose.json"), "--write-scoring"])
    chosen = json.loads((tmp_path / "choose.json").read_text())
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["scoring"] == {"rules": evaluate.best_scoring(chosen),
                                   "chosen_by": "engine.evaluate --puzzles analogy --n 2 --first 5"}
    assert "multiple choice by scoring rule: analogy sum" in capsys.readouterr().out
    Bundle.load(bundle_dir)  # the bundle still verifies


def test_cli_help() -> None:
    result = subprocess.run([sys.executable, "-m", "engine.evaluate", "--help"], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    assert "--puzzles" in result.stdout and "--json" in result.stdout


def test_training_curve_is_drawn_from_the_log_the_card_is_given(tmp_path: Path) -> None:
    """Several runs' logs joined into one file give one curve; a log without training records gives none."""
    from engine.model_card import plot_training_curve

    records = [{"kind": "train", "tokens": 1000 * step, "loss": 5.0 - step / 10} for step in range(1, 9)]
    plot_training_curve(records + [{"kind": "eval", "tokens": 8000, "acc/analogy": 0.3}], tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000
    plot_training_curve([{"kind": "eval", "tokens": 8000, "acc/analogy": 0.3}], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_sample_sheet_shows_prompt_answer_and_framed_samples(bundle: Bundle, tmp_path: Path) -> None:
    from engine import sample_sheet

    out = sample_sheet.main(["--bundle", str(bundle.directory), "--per-family", "1", "--samples", "2",
                             "--out", str(tmp_path / "sheet.png")])
    from PIL import Image

    sheet = np.asarray(Image.open(out))
    cell = bundle.image_size + 2 * sample_sheet.GAP
    assert sheet.shape[0] == 3 * cell  # one row per family
    # the last cell of the widest row is a sample, framed green (its nearest candidate is the answer) or red
    widest = max(range(3), key=lambda r: (sheet[r * cell:(r + 1) * cell] != 255).any(axis=(0, 2)).nonzero()[0].max())
    frame = tuple(int(v) for v in sheet[widest * cell + sample_sheet.GAP, -cell + sample_sheet.GAP + 5])
    assert frame in (sample_sheet.RIGHT, sample_sheet.WRONG)


def test_sample_sheet_takes_one_layout_and_refuses_an_unknown_one(bundle: Bundle, tmp_path: Path) -> None:
    from PIL import Image

    from engine import sample_sheet

    out = sample_sheet.main(["--bundle", str(bundle.directory), "--per-family", "2", "--samples", "1",
                             "--puzzles", "matrix:center", "--out", str(tmp_path / "center.png")])
    cell = bundle.image_size + 2 * sample_sheet.GAP
    assert np.asarray(Image.open(out)).shape[0] == 2 * cell  # two rows, both of the one entry
    row = sample_sheet.puzzle_row(bundle, "matrix", 0, 1, "center")
    assert row.shape[0] == cell
    with pytest.raises(SystemExit):
        sample_sheet.main(["--bundle", str(bundle.directory), "--puzzles", "matrix:spiral"])


def test_ceiling_counts_answers_the_tokenizer_keeps_apart(bundle: Bundle) -> None:
    from engine import ceiling

    puzzles = evaluate.load_puzzles("matrix:center,sequence", 2, 16)
    report = ceiling.ceiling(bundle, puzzles)
    assert report["overall"]["n"] == 4 and set(report["families"]) == {"matrix", "sequence"}
    rows = [ceiling.puzzle_ceiling(bundle, p) for p in puzzles]
    assert report["overall"]["distinct"] == pytest.approx(np.mean([r["distinct"] for r in rows]))
    twin = copy.deepcopy(puzzles[0])  # a distractor equal to the answer can never be told apart
    other = (twin.answer_index + 1) % len(twin.candidates)
    twin.candidates[other] = twin.candidates[twin.answer_index].copy()
    assert ceiling.puzzle_ceiling(bundle, twin)["distinct"] is False
    assert "distinct" in ceiling.format_table(report)


def test_model_card_shows_samples_at_the_defaults(bundle: Bundle, tmp_path: Path) -> None:
    from engine.model_card import write_card

    copy_dir = tmp_path / "bundle"
    copy_dir.mkdir()
    for path in bundle.directory.iterdir():
        (copy_dir / path.name).write_bytes(path.read_bytes())
    report = evaluate.evaluate(Bundle.load(copy_dir), evaluate.load_puzzles("matrix:center,sequence", 2, 16))
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in (
        {"kind": "train", "step": 1, "tokens": 100, "loss": 3.0, "elapsed": 1.0},
        {"kind": "eval", "step": 1, "tokens": 100, "elapsed": 1.0, "acc/matrix": 0.5, "acc/sequence": 0.5})))
    card = write_card(copy_dir, report, "matrix:center,sequence", 2, log, None, "# recipe", "evaluate ...").read_text()
    assert "![samples at the default settings](samples.png)" in card
    assert (copy_dir / "samples.png").stat().st_size > 0
    assert "ranks the candidates by the sum of their codes' log-likelihoods after the prompt." in card


def test_model_card_says_which_families_subtract_the_last_panels_prediction() -> None:
    from engine.model_card import _scoring_text

    chosen = _scoring_text({"scoring": {"rules": {"analogy": "pmi_last_panel"}, "chosen_by": "engine.evaluate x"}})
    assert "for analogy, less their log-likelihood after the last prompt panel alone" in chosen
    assert "chosen by `engine.evaluate x`" in chosen
    assert "for every family" in _scoring_text({"scoring": "pmi_last_panel"})
    channel = _scoring_text({"scoring": {"rules": {"analogy": "pmi_channel"}, "chosen_by": "engine.evaluate y"}})
    assert "for analogy, less their log-likelihood after the query panel alone and plus" in channel
    assert "`pmi_channel`" in channel and "chosen by `engine.evaluate y`" in channel
    assert "pmi_last_panel" not in channel


def test_the_channel_rule_is_measured_and_chosen_only_where_prompts_are_pairs(bundle: Bundle) -> None:
    matrix, analogy = generate("matrix", eval_seed(0), size=32), generate("analogy", eval_seed(1), size=32)
    assert set(evaluate.evaluate_puzzle(bundle, matrix).correct_by_rule) == {"sum", "pmi_last_panel"}
    assert set(evaluate.evaluate_puzzle(bundle, analogy).correct_by_rule) == set(SCORING_RULES)

    def results(family: str, by_rule: list[dict[str, bool]]) -> list[evaluate.PuzzleResult]:
        return [evaluate.PuzzleResult(f"{family}{i}", family, "c", rule["sum"], 0, False, None, 12.0, 20.0, 0.5,
                                      correct_by_rule=rule) for i, rule in enumerate(by_rule)]
    both, channel_only = ({"sum": False, "pmi_last_panel": True, "pmi_channel": True},
                          {"sum": False, "pmi_last_panel": False, "pmi_channel": True})
    report = evaluate.build_report([*results("analogy", [both] * 12 + [channel_only] * 3),
                                    *results("matrix", [{"sum": False, "pmi_last_panel": True}] * 12)])
    assert evaluate.best_scoring(report) == {"analogy": "pmi_channel", "matrix": "pmi_last_panel"}
    by_rule = report["families"]["matrix"]["multiple_choice_accuracy_by_rule"]
    assert by_rule["pmi_channel"] is None and by_rule["pmi_last_panel"] == 1.0
    assert evaluate.format_table(report).endswith("matrix sum 0.0% / pmi_last_panel 100.0%")  # no pmi_channel


def test_model_card_says_whether_the_lvm_read_shards_or_fresh_puzzles() -> None:
    from engine.model_card import _data_source

    sharded = {"lvm": {"train_config": {"shards": "runs/a,runs/b"}}}
    assert _data_source(sharded) == "Puzzles generated once and pre-tokenized into shards (`runs/a,runs/b`)"
    assert _data_source({"lvm": {"train_config": {"shards": None}}}) == "Puzzles streamed fresh from the generators"
    assert _data_source({}) == "Puzzles streamed fresh from the generators"
    assert _data_source({"lvm": {"train_config": None}}) == "Puzzles streamed fresh from the generators"


def test_model_card_table_gives_each_headline_row_its_target_and_floor() -> None:
    from engine.model_card import metrics_table

    summary = {"n": 350, "multiple_choice_accuracy": 0.5, "generative_accuracy": 0.25}
    table = metrics_table({"families": {"analogy": summary, "sequence": summary},
                           "matrix_layout_mean": {"multiple_choice_accuracy": 0.3, "generative_accuracy": 0.2},
                           "matrix_layouts": {"center": {**summary, "n": 50}}})
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert rows["analogy"] == "| analogy | 350 | 50.0% | 85% (65%) | 25.0% | 60% (35%) |"
    assert rows["sequence"].endswith("| 95% (85%) | 25.0% | 60% (35%) |")
    assert rows["matrix, mean of the 7 layouts"] == ("| matrix, mean of the 7 layouts | 50 | 30.0% | 60% (40%) "
                                                     "| 20.0% | 60% (35%) |")
    assert rows["matrix, one centred shape"].startswith("| matrix, one centred shape | 50 | 50.0% | 98% (85%) |")


def test_a_report_says_how_often_a_wrong_choice_has_less_ink_than_the_answer() -> None:
    """A pull to panels with less drawn (a ranking that favours cheap codes) shows as a share above one half."""
    white, grey, black = (np.full((8, 8, 3), value, np.uint8) for value in (255, 128, 0))
    assert evaluate.ink(white) == 0.0 and evaluate.ink(black) == 255.0
    candidates = [white, grey, black]
    assert evaluate.chosen_lighter(candidates, 0, 1) is True
    assert evaluate.chosen_lighter(candidates, 2, 1) is False
    assert evaluate.chosen_lighter(candidates, 1, 1) is None  # right
    assert evaluate.chosen_lighter(candidates, None, 1) is None  # no choice

    def result(name: str, layout: str, lighter: bool | None) -> evaluate.PuzzleResult:
        return evaluate.PuzzleResult(name, "matrix", layout, lighter is None, 0, False, None, 1.0, 1.0, 0.1,
                                     chosen_lighter=lighter)

    results = [result("a", "grid3x3", True), result("b", "grid3x3", True), result("c", "grid3x3", False),
               result("d", "center", False), result("e", "center", None)]
    report = {"schema": evaluate.SCHEMA, "created": "now", "bundle": {"name": "b", "provider": "cpu"},
              **evaluate.build_report(results)}
    matrix = report["families"]["matrix"]
    assert matrix["wrong_choices_lighter_than_answer"] == 0.5
    assert matrix["configurations"]["grid3x3"]["wrong_choices_lighter_than_answer"] == 2 / 3
    assert matrix["configurations"]["center"]["wrong_choices_lighter_than_answer"] == 0.0
    assert ("wrong choices with less ink than the answer (about half when nothing pulls): matrix 50.0% "
            "(center 0.0%, grid3x3 66.7%)") in evaluate.format_table(report)
    for entry in report["puzzles"]:  # a report written before the share existed still reads and prints
        del entry["chosen_lighter"]
    for summary in (report["overall"], matrix, *matrix["configurations"].values()):
        del summary["wrong_choices_lighter_than_answer"]
    evaluate.validate_report(report)
    assert "less ink" not in evaluate.format_table(report)
