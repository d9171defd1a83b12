"""`python -m app.bench --quick` starts the app on a tiny bundle, loads it and reports complete numbers (not the
timings, which live in the report itself)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app import bench
from tests.helpers import build_tiny_static_bundle


def positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and value > 0


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    root = tmp_path_factory.mktemp("app-bench")
    bundle_dir = build_tiny_static_bundle()[0]
    bench.main(["--bundle", str(bundle_dir), "--json", str(root / "bench.json"), "--markdown", str(root / "b.md"),
                "--quick"])
    return json.loads((root / "bench.json").read_text()), root


def test_app_end_to_end_numbers(quick_report: tuple[dict[str, Any], Path]) -> None:
    app = quick_report[0]["app"]
    assert positive(app["startup_s"]) and positive(app["first_solve_s"]) and app["background_work_s"] >= 0
    assert positive(app["rss_mb"]) and app["peak_rss_mb"] >= app["rss_mb"]
    assert set(app["visitors"]) == {"1", "2"}
    for round_ in app["visitors"].values():
        assert round_["errors"] == 0, round_["error_samples"]
        assert positive(round_["p50_s"]) and round_["p95_s"] >= round_["p50_s"]
        assert positive(round_["solves_per_minute"])
    split = app["solve_split"]  # where an idle Solve's time goes
    assert all(positive(split[key]) for key in ("click_to_samples_s", "engine_s", "run_files_s"))
    assert split["rest_s"] == pytest.approx(split["click_to_samples_s"] - split["engine_s"] - split["run_files_s"])


def test_targets_and_markdown(quick_report: tuple[dict[str, Any], Path]) -> None:
    report, root = quick_report
    assert [t["key"] for t in report["targets"]] == [key for key, *_ in bench.TARGETS]
    by_key = {t["key"]: t for t in report["targets"]}
    assert by_key["visitors_8_p95_s"]["measured"] is None and by_key["visitors_8_p95_s"]["met"] is None  # no round of 8
    assert by_key["app_startup_s"]["measured"] == report["app"]["startup_s"]
    assert by_key["browser_outside_engine_s"]["measured"] is None  # --quick leaves the browser out
    table = (root / "b.md").read_text()
    assert table.startswith("# App benchmark") and "| concurrent visitors (4 samples each) |" in table
    assert "An idle Solve (4 samples)" in table and "| target | limit | measured | met |" in table
    assert "A Solve in a browser: not measured (--quick)." in table
    assert report["meta"]["command"].startswith("python -m app.bench --bundle")


def test_a_missing_bundle_is_one_error_line(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "app.bench", "--bundle", str(tmp_path / "nowhere"), "--json", str(tmp_path / "b")]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("python -m app.bench: error: ") == 1 and "Traceback" not in result.stderr


def test_a_solve_in_a_browser_is_timed_against_the_engines_own_time(playground: dict[str, Any],
                                                                    tiny_bundle_dir: Path) -> None:
    split = bench.browser_split(playground["url"], playground["bank"], tiny_bundle_dir, rounds=2)
    assert positive(split["browser_click_to_samples_s"]) and positive(split["browser_engine_s"])
    # timed in the page from the click to the loaded samples: a round trip through the server and the picture files,
    # not a frame (a watcher that fired at the click itself) nor Playwright's polling steps
    assert 0.05 < split["browser_click_to_samples_s"] < 5
    assert split["browser_outside_engine_s"] == pytest.approx(
        split["browser_click_to_samples_s"] - split["browser_engine_s"])
