"""The bounded load test in its short CI form, and the queue and time limits."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gradio_client import Client, handle_file

from app import bank_views, prompts, solving
from app.loadtest import check_loopback, process_cpu_seconds, run_load, write_prompt_files
from engine.serving.decode import SamplingOptions
from tests.reliability import figures

CI_VISITORS, CI_SECONDS = 8, 10


def test_short_load_loses_nothing_and_makes_no_errors(playground: dict[str, Any], tmp_path: Path) -> None:
    bank = playground["bank"]
    analogy = bank_views.fetch_puzzle(bank, playground["puzzle_ids"][0])
    files = write_prompt_files(analogy["panels"], tmp_path)
    report = run_load(playground["url"], bank, playground["puzzle_ids"], files, CI_VISITORS, CI_SECONDS)
    print(report.summary())
    figures.add(requests=report.requests, errors=report.errors, refused_busy=report.refused_busy,
                acknowledged_writes=report.acknowledged_writes, lost_writes=report.lost_writes)
    assert report.errors == 0, report.error_samples[:3]
    assert report.lost_writes == 0
    assert report.requests >= CI_VISITORS * 3 and report.acknowledged_writes > 0
    assert set(report.percentiles()) >= {"browse", "attempt", "solve"}


def test_visitors_can_do_one_action_alone(playground: dict[str, Any], tmp_path: Path) -> None:
    bank = playground["bank"]
    files = write_prompt_files(bank_views.fetch_puzzle(bank, playground["puzzle_ids"][0])["panels"], tmp_path)
    report = run_load(playground["url"], bank, playground["puzzle_ids"], files, 2, 3, actions={"browse": 1.0})
    assert set(report.latencies) == {"browse"} and report.errors == 0
    with pytest.raises(ValueError, match="actions must be some of browse"):
        run_load(playground["url"], bank, playground["puzzle_ids"], files, 2, 3, actions={"delete": 1.0})


def test_a_process_cpu_time_counts_its_work_and_is_unknown_without_a_process() -> None:
    import os

    before = process_cpu_seconds(os.getpid())
    assert before is not None
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # work, not sleep: only work is CPU time
        pass
    assert process_cpu_seconds(os.getpid()) - before >= 0.2
    assert process_cpu_seconds(None) is None
    assert process_cpu_seconds(2**22 + 12345) is None  # above Linux's largest pid: no such process


def test_the_load_tool_refuses_other_hosts() -> None:
    check_loopback("http://127.0.0.1:7860/")
    for url in ("http://10.0.0.5:7860/", "http://example.org/"):
        with pytest.raises(ValueError, match="only targets loopback"):
            check_loopback(url)


class _SlowBundle:
    """Stands in for a model: every generated token takes 50 ms (the progress callback runs per token)."""

    manifest = {"name": "slow", "image_size": 16}
    provider = "CPUExecutionProvider"

    def sampling_for(self, family: str | None) -> SamplingOptions:
        return SamplingOptions()

    def complete(self, images: Any, n_samples: int = 1, progress: Any = None, **_: Any) -> list[np.ndarray]:
        for step in range(200):
            time.sleep(0.05)
            if progress is not None:
                progress(step / 200, f"token {step}")
        return [np.zeros((16, 16, 3), np.uint8)] * n_samples


def test_a_solve_past_its_time_limit_is_stopped_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(solving, "SOLVE_TIME_LIMIT_S", 0.3)
    images = [np.zeros((8, 8, 3), np.uint8)] * 3
    start = time.monotonic()
    with pytest.raises(solving.SolveTimeout, match="took longer than 0.3 s and was stopped"):
        solving.solve(_SlowBundle(), images, solving.SampleSettings(n_samples=1))
    assert time.monotonic() - start < 2


def test_past_the_queue_size_a_visitor_is_told_to_try_again(tmp_path: Path, tiny_bundle_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from app import server as server_module
    from app import services
    from app.loadtest import fill_bank
    from app.pages import play
    from app.settings import resolve
    from puzzles.bank import connect
    from tests.conftest import MANY_CLIENTS_LIMITS, serve_in_thread
    from tests.helpers import free_port

    monkeypatch.setattr(server_module, "QUEUE_MAX_SIZE", 2)
    monkeypatch.setattr(services, "_current", services._current)  # the playground's services come back after
    port = free_port()
    # One address sends every call: lift its per-client limits so the queue's size is what refuses
    settings = resolve({**MANY_CLIENTS_LIMITS, "data_dir": str(tmp_path), "port": str(port)}, environ={})
    bank = connect(f"sqlite:///{tmp_path / 'gelato.db'}")
    _, panels = fill_bank(bank)
    app = server_module.create_app(settings, bank=bank, bundle=_SlowBundle(), seed=False)
    server = serve_in_thread(app, port)
    try:
        files = write_prompt_files(panels, tmp_path)
        slots: list[Any] = [None] * len(prompts.ALL_SLOTS)
        for name, path in zip(("slot-a1", "slot-a1p", "slot-b"), files, strict=True):
            slots[prompts.ALL_SLOTS.index(name)] = handle_file(path)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        places = play.SOLVE_CONCURRENCY_LIMIT + 6  # every running place taken, and more waiting than the queue holds
        jobs = [client.submit("analogy", "1", *slots, None, 1, 1.0, 0, 1.0, 0, api_name="/solve")
                for _ in range(places)]
        messages = []
        for job in jobs:
            try:
                job.result(timeout=60)
            except Exception as error:  # noqa: BLE001 - the refusals are what this test looks at
                messages.append(str(error))
        busy = [m for m in messages if "queue is full" in m.lower() and "try again" in m.lower()]
        assert busy, f"no busy refusal among {messages}"
        figures.add(refused_busy=len(busy))
    finally:
        server.should_exit = True
        bank.close()
