"""The CLI pipeline end to end: generate each family -> validate -> import into a fresh bank -> export."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from puzzles import cli
from puzzles.pack import read_pack, validate_pack

FAMILY_OPTIONS = {"matrix": [], "analogy": [], "sequence": [], "grid": ["--option", "dataset=arcagi1-eval"]}


@pytest.mark.parametrize("family", sorted(FAMILY_OPTIONS))
def test_generate_validate_import_export_gives_identical_puzzles(family: str, tmp_path: Path) -> None:
    generated, exported = tmp_path / "generated.zip", tmp_path / "exported.zip"
    database = f"sqlite:///{tmp_path / 'bank.db'}"
    assert cli.main(["generate", "--family", family, "--n", "4", "--seed", "7", *FAMILY_OPTIONS[family],
                     "--out", str(generated)]) == 0
    assert cli.main(["validate", str(generated)]) == 0
    assert validate_pack(generated) == []
    assert cli.main(["import", "--database-url", database, str(generated)]) == 0
    assert cli.main(["export", "--database-url", database, str(exported)]) == 0

    before = {p.id: p for p in read_pack(generated)}
    after = {p.id: p for p in read_pack(exported)}
    assert sorted(before) == sorted(after) and len(before) == 4
    for puzzle_id, original in before.items():
        copy = after[puzzle_id]
        for field in ("family", "title", "answer_index", "layout", "tags", "difficulty", "source", "license", "meta"):
            assert getattr(copy, field) == getattr(original, field), field
        for name in ("panels", "candidates"):
            assert len(getattr(copy, name)) == len(getattr(original, name))
            for a, b in zip(getattr(copy, name), getattr(original, name), strict=True):
                np.testing.assert_array_equal(a, b)
        if original.answer is None:
            assert copy.answer is None
        else:
            np.testing.assert_array_equal(copy.answer, original.answer)
