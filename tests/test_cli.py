"""`python -m puzzles`: every command's --help, and the commands end to end on small packs."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from puzzles import cli, starter
from puzzles.pack import read_pack, validate_pack

COMMANDS = ("generate", "validate", "stats", "convert", "export-as", "build-starter")


def test_module_help_lists_the_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "puzzles", "--help"], capture_output=True, text=True, check=True)
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    assert f"python -m puzzles {command}" in capsys.readouterr().out


def test_optional_modules_are_skipped_only_when_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("puzzles.cli", "puzzles.nothing_here.cli"))
    monkeypatch.setattr(cli, "OPTIONAL_COMMAND_MODULES", frozenset({"puzzles.nothing_here.cli"}))
    assert cli.build_parser().parse_args(["stats", "x"]).command == "stats"
    monkeypatch.setattr(cli, "OPTIONAL_COMMAND_MODULES", frozenset())
    with pytest.raises(ModuleNotFoundError):
        cli.build_parser()


def test_generate_uses_consecutive_seeds(tmp_path: Path) -> None:
    out = tmp_path / "m.zip"
    args = ["generate", "--family", "matrix", "--n", "3", "--seed", "7", "--size", "32", "--option", "layout=center"]
    assert cli.main([*args, "--out", str(out)]) == 0
    puzzles = read_pack(out)
    assert [p.source["seed"] for p in puzzles] == [7, 8, 9]
    assert all(p.layout["kind"] == "center" for p in puzzles)


def test_generate_refuses_held_out_seeds(tmp_path: Path) -> None:
    out = str(tmp_path / "s.zip")
    args = ["generate", "--family", "sequence", "--n", "2", "--seed", str(999_999_999), "--out", out]
    assert cli.main(args) == 1
    assert not (tmp_path / "s.zip").exists()


def test_bad_option_syntax_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        cli.main(["generate", "--family", "matrix", "--option", "layout", "--out", str(tmp_path / "x.zip")])


def test_validate_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.zip"
    assert cli.main(["generate", "--family", "grid", "--n", "2", "--seed", "1", "--out", str(out)]) == 0
    assert cli.main(["validate", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["stats", str(out), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["puzzles"] == 2 and counts["family"] == {"grid": 2} and counts["tag"]["arc"] == 2
    (tmp_path / "broken").mkdir()
    assert cli.main(["validate", str(tmp_path / "broken")]) == 1
    assert "no pack.json" in capsys.readouterr().out


def test_convert_npz_tree_and_arc_json_then_export(tmp_path: Path) -> None:
    tree = tmp_path / "raven" / "center_single"
    tree.mkdir(parents=True)
    for index in range(2):
        image = np.random.default_rng(index).integers(0, 256, (16, 16, 16)).astype(np.uint8)
        np.savez(tree / f"RAVEN_{index}_val.npz", image=image, target=np.int64(index))
    assert cli.main(["convert", str(tmp_path / "raven"), "--out", str(tmp_path / "raven.zip")]) == 0
    assert [p.answer_index for p in read_pack(tmp_path / "raven.zip")] == [0, 1]
    export = ["export-as", str(tmp_path / "raven.zip"), "--format", "raven-npz", "--out", str(tmp_path / "n")]
    assert cli.main(export) == 0
    assert len(list((tmp_path / "n").glob("*.npz"))) == 2

    task = {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[3]], "output": [[4]]}]}
    (tmp_path / "task.json").write_text(json.dumps(task))
    assert cli.main(["convert", str(tmp_path / "task.json"), "--out", str(tmp_path / "arc_pack")]) == 0
    assert validate_pack(tmp_path / "arc_pack") == []
    export = ["export-as", str(tmp_path / "arc_pack"), "--format", "arc-json", "--out", str(tmp_path / "a")]
    assert cli.main(export) == 0
    [written] = (tmp_path / "a").glob("*.json")
    assert json.loads(written.read_text()) == task


def test_convert_reports_bad_input(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"train": [{"input": [[11]], "output": [[1]]}], "test": []}))
    assert cli.main(["convert", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x.zip")]) == 1
    assert "outside the ARC palette" in caplog.text


def test_starter_plan_covers_everything() -> None:
    from puzzles.generators import analogy, matrix, sequence

    plan = starter.starter_plan()
    assert len(plan) >= 300
    assert {family for family, _ in plan} == {"matrix", "analogy", "sequence", "grid"}
    assert {o["layout"] for f, o in plan if f == "matrix"} == set(matrix.LAYOUTS)
    assert {o["transform"] for f, o in plan if f == "analogy"} == set(analogy.TRANSFORMS)
    assert {o["kind"] for f, o in plan if f == "sequence"} == set(sequence.KINDS)
    arc = [o["task_id"] for f, o in plan if f == "grid"]
    assert len(arc) == len(set(arc)) == 40


def test_starter_puzzles_are_deterministic_with_training_seeds() -> None:
    first = list(itertools.islice(starter.starter_puzzles(size=32), 3))
    again = list(itertools.islice(starter.starter_puzzles(size=32), 3))
    assert [p.id for p in first] == [p.id for p in again]
    assert all(p.source["seed"] < 1_000_000_000 and "starter" in p.tags for p in first)


def test_shipped_starter_pack_is_valid() -> None:
    assert starter.DEFAULT_OUT.exists(), "build it with: python -m puzzles build-starter"
    assert starter.DEFAULT_OUT.stat().st_size < 8_500_000
    assert validate_pack(starter.DEFAULT_OUT) == []
