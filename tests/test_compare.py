"""Paired comparison of two evaluation reports: the sign test and the pairing by puzzle id."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import compare
from engine.evaluate import PuzzleResult, build_report


def result(puzzle_id: str, family: str, correct: bool | None, generated: bool | None = None,
           configuration: str = "all") -> PuzzleResult:
    return PuzzleResult(id=puzzle_id, family=family, configuration=configuration, multiple_choice_correct=correct,
                        chosen_candidate=0, generative_correct=generated, pass_at_2=None, psnr_generated=None,
                        psnr_ceiling=None, seconds=0.1)


def report(results: list[PuzzleResult]) -> dict:
    return {"schema": "gelato-evaluation/1", "created": "now", "bundle": {"name": "b", "provider": "cpu"},
            **build_report(results)}


def test_sign_test_matches_the_binomial_tail() -> None:
    assert compare.sign_test_p(5, 0) == pytest.approx(2 / 32)
    assert compare.sign_test_p(6, 0) == pytest.approx(2 / 64)
    assert compare.sign_test_p(3, 3) == 1.0 and compare.sign_test_p(0, 0) == 1.0
    assert compare.sign_test_p(9, 1) == pytest.approx(2 * 11 / 1024)


def test_puzzles_pair_by_id_and_unscored_ones_drop_out() -> None:
    baseline = [result("a", "matrix", False), result("b", "matrix", True), result("c", "matrix", None),
                result("d", "analogy", False)]
    candidate = [result("d", "analogy", True), result("b", "matrix", True), result("a", "matrix", True),
                 result("e", "matrix", True)]
    found = compare.compare(report(baseline), report(candidate), "multiple_choice")
    assert found["matrix"].n == 2 and found["matrix"].only_candidate == 1 and found["matrix"].only_baseline == 0
    assert found["all"].n == 3 and found["all"].baseline_accuracy == pytest.approx(1 / 3)
    assert found["all"].candidate_accuracy == 1.0 and found["all"].p_value == pytest.approx(0.5)


def test_reports_of_different_puzzles_are_refused() -> None:
    with pytest.raises(ValueError, match="share no scored puzzle"):
        compare.compare(report([result("a", "matrix", True)]), report([result("b", "matrix", True)]),
                        "multiple_choice")


def test_cli_prints_both_metrics_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [result(str(i), "sequence", i % 2 == 0, i % 3 == 0) for i in range(12)]
    better = [result(str(i), "sequence", True, True) for i in range(12)]
    (tmp_path / "a.json").write_text(json.dumps(report(rows)))
    (tmp_path / "b.json").write_text(json.dumps(report(better)))
    found = compare.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json", str(tmp_path / "c.json")])
    assert found["multiple_choice"]["all"].only_candidate == 6 and found["generative"]["all"].only_candidate == 8
    assert found["generative"]["all"].p_value == pytest.approx(2 / 256)
    out = capsys.readouterr().out
    assert "multiple_choice" in out and "generative" in out
    assert json.loads((tmp_path / "c.json").read_text())["generative"]["sequence"]["n"] == 12


def test_reports_of_one_spec_pair_by_seed_order_when_ids_differ() -> None:
    """Bundles of different image sizes render the same held-out seeds as puzzles of different ids."""
    small = {**report([result("s1", "matrix", True), result("s2", "matrix", False), result("s3", "analogy", False)]),
             "puzzle_source": "matrix,analogy"}
    large = {**report([result("L1", "matrix", False), result("L2", "matrix", False), result("L3", "analogy", True)]),
             "puzzle_source": "matrix,analogy"}
    found = compare.compare(large, small, "multiple_choice")
    assert found["matrix"].n == 2 and found["matrix"].only_candidate == 1 and found["matrix"].only_baseline == 0
    assert found["analogy"].only_baseline == 1
    with pytest.raises(ValueError, match="share no scored puzzle"):  # another spec: ids still rule
        compare.compare(large, {**small, "puzzle_source": "matrix"}, "multiple_choice")


def test_each_configuration_gets_its_own_row_after_its_family(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    baseline = [result("a", "matrix", True, configuration="center"), result("b", "matrix", False,
                configuration="grid3x3"), result("c", "matrix", False, configuration="grid3x3"),
                result("d", "sequence", True, configuration="grow")]
    candidate = [result("a", "matrix", False, configuration="center"), result("b", "matrix", True,
                 configuration="grid3x3"), result("c", "matrix", True, configuration="grid3x3"),
                 result("d", "sequence", True, configuration="grow")]
    found = compare.compare(report(baseline), report(candidate), "multiple_choice", by_configuration=True)
    assert list(found) == ["matrix", "matrix/center", "matrix/grid3x3", "sequence", "sequence/grow", "all"]
    assert found["matrix/grid3x3"].n == 2 and found["matrix/grid3x3"].only_candidate == 2
    assert found["matrix/center"].only_baseline == 1 and found["matrix"].only_candidate == 2
    assert list(compare.compare(report(baseline), report(candidate), "multiple_choice")) == ["matrix", "sequence",
                                                                                             "all"]
    (tmp_path / "a.json").write_text(json.dumps(report(baseline)))
    (tmp_path / "b.json").write_text(json.dumps(report(candidate)))
    compare.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--metric", "multiple_choice",
                  "--by-configuration"])
    assert "matrix/grid3x3" in capsys.readouterr().out
