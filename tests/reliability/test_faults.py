"""Faults: kill -9 of the app during writes and of a bulk import, a corrupt or missing bundle file, a read-only
database."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from app import bank_writes, visitors
from app.health import StartupError, choose_bundle
from puzzles.bank import connect, repository
from tests.apps import START_TIMEOUT_S, analogy_files, rate, solve, start_app, stop_apps, wait_until_healthy
from tests.reliability import figures

ROOT = Path(__file__).resolve().parents[2]
KILL_AFTER_RATINGS = 12  # acknowledged ratings before the app is killed (more are in flight when it dies)
IMPORT_SIZE = 120  # puzzles in the bulk import: a write transaction of about a second here


def _integrity(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def _wait_for_seeding(database: Path, deadline: float) -> None:
    """The app seeds the starter pack in one transaction at start; rate once it is in, not against its lock."""
    bank = connect(f"sqlite:///{database}")
    try:
        while not repository.bank_stats(bank)["puzzles"]["published"]:
            assert time.monotonic() < deadline, "the starter pack was never seeded"
            time.sleep(0.5)
    finally:
        bank.close()


class RatingStream(threading.Thread):
    """Rates the last solve's samples, one fresh visitor after another, until the app stops answering."""

    def __init__(self, client: Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.acknowledged: dict[int, str] = {}  # rating id -> visitor
        self.stopped_by: Exception | None = None

    def run(self) -> None:
        try:
            while True:
                rating_id, visitor = rate(self.client, None, len(self.acknowledged) % 2)
                self.acknowledged[rating_id] = visitor
        except Exception as error:  # noqa: BLE001 - the kill ends the stream
            self.stopped_by = error


def test_kill_9_of_the_app_during_a_stream_of_ratings_loses_no_acknowledged_one(tiny_bundle_dir: Path,
                                                                               tmp_path: Path) -> None:
    data_dir, database = tmp_path / "data", tmp_path / "data" / "gelato.db"
    apps = [start_app("first", data_dir, tiny_bundle_dir, shared_secrets=False)]  # keys: files in the data dir
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        wait_until_healthy(apps[0], deadline)
        _wait_for_seeding(database, deadline)
        client = Client(apps[0].url, verbose=False)
        prompt = analogy_files(0, tmp_path / "prompt")
        solve(client, prompt)
        stream = RatingStream(client)
        stream.start()
        while len(stream.acknowledged) < KILL_AFTER_RATINGS:
            assert stream.is_alive() and time.monotonic() < deadline, f"the stream stopped: {stream.stopped_by!r}"
            time.sleep(0.02)
        os.kill(apps[0].process.pid, signal.SIGKILL)
        apps[0].process.wait()
        stream.join(timeout=30)
        assert not stream.is_alive(), "the stream did not notice the app was gone"
        acknowledged = dict(stream.acknowledged)

        apps.append(start_app("restarted", data_dir, tiny_bundle_dir, shared_secrets=False))
        wait_until_healthy(apps[1], time.monotonic() + START_TIMEOUT_S)
        assert _integrity(database) == "ok"
        bank = connect(f"sqlite:///{database}")
        try:
            stored = {row["id"]: row["visitor_id"] for row in repository.list_ratings(bank, limit=10**6)}
        finally:
            bank.close()
        lost = {rating: visitor for rating, visitor in acknowledged.items() if stored.get(rating) != visitor}
        figures.add(acknowledged_writes=len(acknowledged), lost_writes=len(lost))
        assert not lost
        # ids issued before the kill are still good: the key lives in the data dir, not in the process
        restarted = Client(apps[1].url, verbose=False)
        solve(restarted, prompt)
        visitor = next(iter(acknowledged.values()))
        assert rate(restarted, visitor, 0)[1] == visitor
    finally:
        stop_apps(apps)


def _write_locked(database: Path) -> bool:
    """Whether another connection holds the database's write lock right now."""
    connection = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        connection.close()


def _import_command(database: Path, pack: Path) -> list[str]:
    return [sys.executable, "-m", "puzzles", "import", "--database-url", f"sqlite:///{database}", str(pack)]


def _kill_when_writing(process: subprocess.Popen[bytes], database: Path, delay: float) -> bool:
    """SIGKILL `delay` s after the import is seen holding the write lock (twice in a row, so the moment
    the start-up migration check takes it does not count); whether that happened before it exited."""
    seen = 0
    while process.poll() is None and seen < 2:
        seen = seen + 1 if _write_locked(database) else 0
        time.sleep(0.03)
    time.sleep(delay)
    caught = seen == 2 and process.poll() is None
    process.kill()
    process.wait()
    return caught


def _puzzle_count(database: Path) -> int:
    bank = connect(f"sqlite:///{database}")
    try:
        return sum(repository.bank_stats(bank)["puzzles"].values())
    finally:
        bank.close()


def test_kill_9_during_a_bulk_import_leaves_all_or_nothing(tmp_path: Path) -> None:
    from puzzles.generators import generate
    from puzzles.pack import write_pack

    pack = write_pack([generate("matrix", seed, size=32) for seed in range(IMPORT_SIZE)], tmp_path / "big.zip")
    outcomes, caught = set(), 0
    for delay in (0.0, 0.2):
        database = tmp_path / f"bank-{delay}.db"
        connect(f"sqlite:///{database}").close()
        process = subprocess.Popen(_import_command(database, pack), cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        caught += _kill_when_writing(process, database, delay)
        assert _integrity(database) == "ok"
        count = _puzzle_count(database)
        assert count in (0, IMPORT_SIZE), f"a killed import left {count} of {IMPORT_SIZE} puzzles"
        outcomes.add(count)
    assert caught and 0 in outcomes, "the import was never caught mid-way; nothing was tested"
    subprocess.run(_import_command(database, pack), cwd=ROOT, check=True, capture_output=True, timeout=120)
    assert _puzzle_count(database) == IMPORT_SIZE  # the bank a killed import left takes the whole pack


def _copy_bundle(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_a_flipped_byte_in_the_bundle_refuses_the_start_naming_the_file(tiny_bundle_dir: Path,
                                                                        tmp_path: Path) -> None:
    bundle = _copy_bundle(tiny_bundle_dir, tmp_path / "bundle")
    lvm = bundle / "lvm.onnx"
    data = bytearray(lvm.read_bytes())
    data[len(data) // 2] ^= 0x01
    lvm.write_bytes(bytes(data))
    with pytest.raises(StartupError, match=r"lvm\.onnx: sha256 does not match"):
        choose_bundle(bundle, default=bundle)
    # the real entry point, with this corrupt copy standing in for the shipped default bundle
    start = ("import sys; from pathlib import Path; import engine.bundle; "
             "engine.bundle.SHIPPED_BUNDLE_DIR = Path(sys.argv[1]); "
             "from app.__main__ import main; main(['--data-dir', sys.argv[2], '--port', '0'])")
    answer = subprocess.run(
        [sys.executable, "-c", start, str(bundle), str(tmp_path / "data")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "GELATO_BUNDLE": str(bundle), "PYTHONPATH": str(ROOT)},
    )
    assert answer.returncode != 0
    assert "lvm.onnx" in answer.stderr and "refusing to start" in answer.stderr


def test_a_missing_file_in_a_non_default_bundle_falls_back_to_the_default(tiny_bundle_dir: Path,
                                                                          tmp_path: Path) -> None:
    default = _copy_bundle(tiny_bundle_dir, tmp_path / "default")
    broken = _copy_bundle(tiny_bundle_dir, tmp_path / "mine")
    (broken / "decoder.onnx").unlink()
    chosen, note = choose_bundle(broken, default=default)
    assert chosen == default.resolve()
    assert note is not None and "decoder.onnx" in note and "serving the default bundle" in note
    (default / "encoder.onnx").unlink()
    with pytest.raises(StartupError, match="decoder.onnx.*the default bundle is unusable too.*encoder.onnx"):
        choose_bundle(broken, default=default)


def test_a_read_only_database_gives_the_visitor_a_clear_error(playground: dict[str, Any]) -> None:
    import httpx
    from gradio_client import Client
    from sqlalchemy import event

    bank = playground["bank"]

    def read_only(dbapi_connection: Any, _record: Any) -> None:
        # Root ignores file modes, so the database is made read-only the way SQLite itself offers.
        dbapi_connection.execute("PRAGMA query_only = ON")

    event.listen(bank.engine, "connect", read_only)
    bank.engine.dispose()  # every new connection is read-only from here
    try:
        with pytest.raises(bank_writes.BankWriteError, match="your answer could not be saved: .*readonly"):
            bank_writes.record_attempt(bank, visitors.new_visitor_id(), playground["puzzle_ids"][0], 0, 1.0)
        client = Client(playground["url"], verbose=False)
        with pytest.raises(Exception, match="could not be saved: the bank is not accepting writes"):
            client.predict(visitors.new_visitor_id(), playground["puzzle_ids"][3], "#1", api_name="/attempt")
        assert httpx.get(playground["url"] + "healthz", timeout=30).status_code == 200  # reads still work
    finally:
        event.remove(bank.engine, "connect", read_only)
        bank.engine.dispose()


def test_a_full_disk_gives_the_visitor_a_clear_error(playground: dict[str, Any]) -> None:
    from sqlalchemy import event

    bank = playground["bank"]

    def disk_full(connection: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            raise sqlite3.OperationalError("database or disk is full")

    event.listen(bank.engine, "before_cursor_execute", disk_full)
    try:
        with pytest.raises(bank_writes.BankWriteError, match="could not be saved: .*disk is full.*try again later"):
            bank_writes.record_attempt(bank, visitors.new_visitor_id(), playground["puzzle_ids"][0], None, None)
    finally:
        event.remove(bank.engine, "before_cursor_execute", disk_full)
    assert repository.bank_stats(bank)["puzzles"]["published"] >= 6  # the app's bank still answers
