"""The named endpoints for programs (answer, rank, puzzle), driven through gradio_client as the README shows."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from app import bank_views
from puzzles.images import png_bytes

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def client(playground: dict[str, Any]) -> Client:
    return Client(playground["url"], verbose=False)


def test_view_api_lists_the_endpoints_with_named_parameters(client: Client) -> None:
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    names = {name: [p["parameter_name"] for p in info["parameters"]] for name, info in endpoints.items()}
    assert names["/answer"] == ["images", "layout", "n_samples", "temperature", "top_k", "top_p", "seed", "guidance"]
    assert names["/rank"] == ["images", "candidates", "layout"]
    assert names["/puzzle"] == ["puzzle_id"]


def test_the_readme_example_runs(client: Client, playground: dict[str, Any], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    puzzle = bank_views.fetch_puzzle(playground["bank"], playground["puzzle_ids"][0])
    names = ("a.png", "a2.png", "b.png", "c1.png", "c2.png")
    for name, image in zip(names, [*puzzle["panels"], *puzzle["candidates"][:2]], strict=True):
        (tmp_path / name).write_bytes(png_bytes(image))
    code = re.search(r"## Use it from a program.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    exec(code.replace("http://127.0.0.1:7860/", playground["url"]), scope)  # noqa: S102 - the README's own code
    assert len(scope["samples"]) == 2 and all(os.path.isfile(item["image"]) for item in scope["samples"])
    assert len(scope["chances"]) == 2 and sum(scope["chances"]) == pytest.approx(1.0)


def test_puzzle_and_bad_input(client: Client, playground: dict[str, Any]) -> None:
    puzzle_id = playground["puzzle_ids"][3]
    info, panels, candidates = client.predict(puzzle_id=puzzle_id, api_name="/puzzle")
    assert info["id"] == puzzle_id and info["family"] == "matrix" and "answer_index" not in info
    assert len(panels) == 8 and len(candidates) == 8
    with pytest.raises(Exception, match="no puzzle 'nope'"):
        client.predict(puzzle_id="nope", api_name="/puzzle")
    with pytest.raises(Exception, match="give at least one image as the prompt"):
        client.predict(images=[], layout="analogy", n_samples=1, temperature=1.0, top_k=0, top_p=1.0, seed=0,
                       api_name="/answer")
