"""Faults: kill -9 during writes, a corrupt or missing bundle file, a read-only database."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app import logic
from app.health import StartupError, choose_bundle
from puzzles.bank import connect, repository
from tests.reliability import figures

ROOT = Path(__file__).resolve().parents[2]

# A child that writes ratings one by one and prints each id once it is committed (its acknowledgement).
RATING_WRITER = """
import sys, numpy as np
from puzzles.bank import connect, repository
bank = connect(sys.argv[1])
for n in range(100000):
    output = np.full((4, 4, 3), n % 256, np.uint8); output[0, 0] = (n // 256) % 256
    rating = repository.add_rating(bank, visitor="v" * 8, output=output, score=1, prompt=[output])
    print(rating, flush=True)
"""

# A child that imports a large pack again and again into fresh banks is not needed: one import is the
# transaction under test; the parent kills it while it runs.
PACK_IMPORTER = """
import sys
from puzzles.bank import connect, repository
bank = connect(sys.argv[1])
print("start", flush=True)
report = repository.import_pack(bank, sys.argv[2])
print("done", report.imported, len(report.new), flush=True)
"""


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def _integrity(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def test_kill_9_during_a_stream_of_ratings_loses_no_acknowledged_one(tmp_path: Path) -> None:
    database = tmp_path / "gelato.db"
    connect(f"sqlite:///{database}").close()  # migrated before the child starts
    child = _child(RATING_WRITER, f"sqlite:///{database}")
    acknowledged = []
    assert child.stdout is not None
    while len(acknowledged) < 150:
        line = child.stdout.readline()
        assert line, "the writer stopped early"
        acknowledged.append(int(line))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    acknowledged += [int(line) for line in child.stdout.read().split()]  # printed before the kill landed
    assert _integrity(database) == "ok"
    bank = connect(f"sqlite:///{database}")
    try:
        stored = {row["id"] for row in repository.list_ratings(bank, limit=10**6)}
    finally:
        bank.close()
    lost = set(acknowledged) - stored
    figures.add(acknowledged_writes=len(acknowledged), lost_writes=len(lost))
    assert not lost


def test_kill_9_during_a_bulk_import_leaves_all_or_nothing(tmp_path: Path) -> None:
    from puzzles.generators import generate
    from puzzles.pack import write_pack

    pack = write_pack([generate("matrix", seed, size=32) for seed in range(60)], tmp_path / "big.zip")
    outcomes = set()
    for delay in (0.3, 0.8, 1.6):
        database = tmp_path / f"bank-{delay}.db"
        connect(f"sqlite:///{database}").close()
        child = _child(PACK_IMPORTER, f"sqlite:///{database}", str(pack))
        assert child.stdout is not None and child.stdout.readline().startswith("start")
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert _integrity(database) == "ok"
        bank = connect(f"sqlite:///{database}")
        try:
            count = sum(repository.bank_stats(bank)["puzzles"].values())
        finally:
            bank.close()
        assert count in (0, 60), f"a killed import left {count} of 60 puzzles"
        outcomes.add(count)
    assert 0 in outcomes, "the import was never caught mid-way; nothing was tested"


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
    answer = subprocess.run(
        [sys.executable, "-m", "app", "--bundle", str(bundle), "--data-dir", str(tmp_path / "data"), "--port", "0"],
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
        with pytest.raises(logic.BankWriteError, match="your answer could not be saved: .*readonly"):
            logic.record_attempt(bank, logic.new_visitor_id(), playground["puzzle_ids"][0], 0, 1.0)
        client = Client(playground["url"], verbose=False)
        with pytest.raises(Exception, match="could not be saved: the bank is not accepting writes"):
            client.predict(logic.new_visitor_id(), playground["puzzle_ids"][3], "#1", api_name="/attempt")
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
        with pytest.raises(logic.BankWriteError, match="could not be saved: .*disk is full.*try again later"):
            logic.record_attempt(bank, logic.new_visitor_id(), playground["puzzle_ids"][0], None, None)
    finally:
        event.remove(bank.engine, "before_cursor_execute", disk_full)
    assert repository.bank_stats(bank)["puzzles"]["published"] >= 6  # the app's bank still answers
