"""`python -m puzzles`: every command's --help, and the commands end to end on small packs."""
from __future__ import annotations

import importlib
import itertools
import json
import os
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from puzzles import cli, commands, starter
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


def test_convert_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"train": [{"input": [[11]], "output": [[1]]}], "test": []}))
    assert cli.main(["convert", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x.zip")]) == 1
    assert "outside the ARC palette" in capsys.readouterr().err


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


# ---------------------------------------------------------------------------------------------------------
# The error policy (puzzles/commands.py): a bad argument gives exit 1 and one line on stderr, no traceback

MISSING = "/nonexistent/gelato"
ROOT = Path(__file__).resolve().parent.parent
PUZZLES_BAD_ARGUMENTS = {
    "generate": ["--family", "matrix", "--n", "1", "--option", "bogus=1", "--out", "{tmp}/g.zip"],
    "validate": [MISSING],
    "stats": [MISSING],
    "convert": [MISSING, "--out", "{tmp}/c.zip"],
    "export-as": [MISSING, "--format", "pack", "--out", "{tmp}/e"],
    "build-starter": ["--size", "0", "--out", "{tmp}/s.zip"],
    "import": [MISSING + ".zip", "--data-dir", "{tmp}"],
    "export": ["{tmp}/gelato.db/out.zip", "--data-dir", "{tmp}"],  # under the bank file itself
    "curators": ["disable", "nobody", "--data-dir", "{tmp}"],
    "backup": ["{tmp}", "--data-dir", "{tmp}"],  # an existing path: a backup never overwrites
    "restore": [MISSING + ".zip", "--data-dir", "{tmp}"],
    "seed": ["--pack", MISSING + ".zip", "--data-dir", "{tmp}"],
}
ENGINE_BAD_ARGUMENTS = {
    "attribute_probe": ["train", "--data", MISSING, "--out", "{tmp}/probe"],
    "sequence_probe": ["train", "--data", MISSING, "--out", "{tmp}/probe"],
    "analogy_probe": ["train", "--data", MISSING, "--out", "{tmp}/probe"],
    "bench": ["--bundle", MISSING, "--json", "{tmp}/b.json", "--quick"],
    "evaluate": ["--bundle", MISSING, "--puzzles", "matrix", "--json", "{tmp}/e.json"],
    "export": ["--tokenizer", MISSING, "--lvm", MISSING, "--out", "{tmp}/bundle"],
    "export_static": ["--bundle", MISSING],
    "learning_curve": ["--tokenizer", MISSING, "--checkpoints", MISSING, "--out", "{tmp}/c.jsonl"],
    "patch_tokenizer": ["--out", "{tmp}/tok.pt", "--image-size", "30", "--patch-size", "8"],
    "model_card": ["--bundle", MISSING, "--eval", MISSING, "--lvm-log", MISSING, "--recipe", MISSING],
    "train_lvm": ["--tokenizer", MISSING, "--out", "{tmp}/lvm", "--steps", "1"],
    "train_tokenizer": ["--init", MISSING, "--out", "{tmp}/tok", "--steps", "1"],
    "compare": [MISSING, MISSING],
    "ceiling": ["--bundle", MISSING, "--n", "1"],
    "sample_sheet": ["--bundle", MISSING],
    "sampling_sweep": ["--bundle", MISSING, "--json", "{tmp}/s.json"],
    "shards": ["--tokenizer", MISSING, "--n", "1", "--seed", "0", "--out", "{tmp}/shards"],
}


def test_every_engine_command_has_a_bad_argument_case() -> None:
    tools = {path.stem for path in (ROOT / "engine").glob("*.py") if '__name__ == "__main__"' in path.read_text()}
    assert tools == set(ENGINE_BAD_ARGUMENTS)


def _fill(argv: list[str], tmp: Path) -> list[str]:
    return [part.format(tmp=tmp) for part in argv]


def _assert_one_error_line(err: str, prog: str) -> None:
    lines = [line for line in err.splitlines() if f"{prog}: error: " in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err


def test_every_puzzles_command_has_a_bad_argument_case() -> None:
    assert set(PUZZLES_BAD_ARGUMENTS) == set(cli.build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("command", sorted(PUZZLES_BAD_ARGUMENTS))
def test_puzzles_command_bad_argument(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert cli.main([command, *_fill(PUZZLES_BAD_ARGUMENTS[command], tmp_path)]) == commands.EXIT_FAILURE
    out, err = capsys.readouterr()
    if command in ("validate", "import"):  # they report what they found on stdout (import as JSON)
        assert MISSING in out and "Traceback" not in err
    else:
        _assert_one_error_line(err, f"python -m puzzles {command}")


@pytest.mark.parametrize("tool", sorted(ENGINE_BAD_ARGUMENTS))
def test_engine_command_bad_argument(tool: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Runs the module's own `__main__` block, as `python -m engine.TOOL` does."""
    monkeypatch.setattr(sys, "argv", [tool, *_fill(ENGINE_BAD_ARGUMENTS[tool], tmp_path)])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as done:
        warnings.simplefilter("ignore", RuntimeWarning)  # the module is already imported by other tests
        runpy.run_module(f"engine.{tool}", run_name="__main__")
    assert done.value.code == commands.EXIT_FAILURE
    _assert_one_error_line(capsys.readouterr().err, f"python -m engine.{tool}")


@pytest.mark.parametrize("tool", sorted(ENGINE_BAD_ARGUMENTS))
def test_engine_command_usage_error_exits_2(tool: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"engine.{tool}")
    with pytest.raises(SystemExit) as done:
        module.main(["--no-such-flag"])
    assert done.value.code == commands.EXIT_USAGE and "error:" in capsys.readouterr().err


def test_unknown_curator_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """The whole process, as a user runs it."""
    argv = [sys.executable, "-m", "puzzles", "curators", "disable", "nobody", "--data-dir", str(tmp_path)]
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "DATABASE_URL": ""})
    assert result.returncode == commands.EXIT_FAILURE
    _assert_one_error_line(result.stderr, "python -m puzzles curators")
    assert "no curator named 'nobody'" in result.stderr


def test_run_passes_bugs_through() -> None:
    with pytest.raises(TypeError):
        commands.run(lambda: len(None), "prog")  # type: ignore[arg-type]
