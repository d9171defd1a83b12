"""Model work at a lower CPU priority than the requests around it.

On a small server the model's runs and a person's answer, a page of the bank or a rating share the same cores; the
kernel's scheduler gives the lighter work the CPU first when the model's threads are "nicer". Linux keeps a nice
value per thread and a new thread inherits its creator's, so the sessions are created from a thread whose value is
raised (ONNX Runtime's pool threads start there) and the batcher's thread raises its own. Elsewhere nothing changes.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

PER_THREAD = sys.platform.startswith("linux")  # setpriority on a thread id means that thread only on Linux


def lower_this_thread(niceness: int) -> bool:
    """Raise the calling thread's nice value to `niceness` (never lowers it); whether it was applied."""
    if niceness <= 0 or not PER_THREAD:
        return False
    thread_id = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, thread_id) < niceness:
            os.setpriority(os.PRIO_PROCESS, thread_id, niceness)
    except OSError:  # a sandbox that forbids it: run at the usual priority
        return False
    return True


def run_lowered(niceness: int, make: Callable[[], T]) -> T:
    """`make()` run in a fresh thread at `niceness`, so the threads it starts (ONNX Runtime's pools) inherit it;
    its result or its exception comes back to the caller."""
    if niceness <= 0 or not PER_THREAD:
        return make()
    outcome: dict[str, object] = {}

    def work() -> None:
        lower_this_thread(niceness)
        try:
            outcome["value"] = make()
        except BaseException as error:  # noqa: BLE001 - handed to the caller as it is
            outcome["error"] = error

    thread = threading.Thread(target=work, name="model-load")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def nicer_threads(niceness: int, workers: int) -> ThreadPoolExecutor | None:
    """Threads at `niceness` for model calls made from a request's thread (the calling thread works inside ONNX
    Runtime's run as one of its pool); None where no priority is asked for or none can be set."""
    if niceness <= 0 or not PER_THREAD:
        return None
    return ThreadPoolExecutor(workers, thread_name_prefix="model", initializer=lower_this_thread, initargs=(niceness,))
