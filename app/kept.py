"""Values made once and kept in memory, at most a given number, the least recently used leaving first.

For pictures and answers that depend only on content-addressed inputs (a bank puzzle's images, a bundle's id), so a
kept value is never stale. Made read-only: every request that reads one shares it.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np


class KeptImages:
    def __init__(self, most: int) -> None:
        self.most = most
        self._values: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The kept value of `key`, else `make()` kept (made outside the lock: two first callers may both make it)."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = make()
        value.setflags(write=False)
        with self._lock:
            self._values[key] = value
            while len(self._values) > self.most:
                self._values.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._values)
