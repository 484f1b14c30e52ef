"""The metric columns of one run, stored so that a save costs only the rows that are new."""
from __future__ import annotations

import math

import numpy as np


class MetricTable:
    """Equal-length float64 columns, NaN where a row did not measure a key (8 B per value).

    Each column is a list of sealed *chunks* (read-only arrays that never change) and an open tail
    buffer. :meth:`seal` turns the tail into a chunk; :class:`workbench.history_file.HistoryFile`
    writes every chunk once and refers to it afterwards, so a save costs the new chunks. The
    tail grows with the table (a quarter of its length), so a column has few chunks."""

    MIN_TAIL = 1024

    def __init__(self, columns: dict | None = None):
        columns = columns or {}
        self._chunks: dict[str, list[np.ndarray]] = {}
        self._sizes: list[int] = []       # the chunk sizes, shared by every column
        self._sealed = 0                  # rows in chunks
        self._tail: dict[str, np.ndarray] = {}
        self._filled = 0                  # rows in the tail
        self._capacity = self.MIN_TAIL
        n = len(next(iter(columns.values()))) if columns else 0
        if n:
            self._sizes = [n]
            self._sealed = n
        for key, values in columns.items():
            chunk = np.array(values, dtype=np.float64)
            chunk.flags.writeable = False
            self._chunks[key] = [chunk] if n else []
            self._tail[key] = np.full(self._capacity, np.nan)

    def __len__(self) -> int:
        return self._sealed + self._filled

    def keys(self):
        return self._chunks.keys()

    def _add_key(self, key: str) -> None:
        chunks = []
        for size in self._sizes:
            chunk = np.full(size, np.nan)
            chunk.flags.writeable = False
            chunks.append(chunk)
        self._chunks[key] = chunks
        self._tail[key] = np.full(self._capacity, np.nan)

    def add_row(self, row: dict[str, float]) -> None:
        if self._filled == self._capacity:
            self.seal()
        i = self._filled
        for key, value in row.items():
            if key not in self._chunks:
                self._add_key(key)
            self._tail[key][i] = value
        self._filled = i + 1

    def seal(self) -> None:
        """Move the tail's rows into a new chunk of every column."""
        k = self._filled
        if k == 0:
            return
        full = k == self._capacity
        for key, tail in self._tail.items():
            chunk = tail if full else tail[:k].copy()
            chunk.flags.writeable = False
            self._chunks[key].append(chunk)
        self._sizes.append(k)
        self._sealed += k
        self._filled = 0
        self._capacity = max(self.MIN_TAIL, len(self) // 4)
        self._tail = {key: np.full(self._capacity, np.nan) for key in self._tail}

    def chunks(self, key: str) -> list[np.ndarray]:
        """The sealed chunks of a column (call :meth:`seal` first to include every row)."""
        return self._chunks[key]

    def n_chunks(self) -> int:
        return len(self._sizes)

    def consolidate(self) -> None:
        """One chunk per column."""
        self.seal()
        if len(self._sizes) > 1:
            for key, chunks in self._chunks.items():
                chunk = np.concatenate(chunks)
                chunk.flags.writeable = False
                self._chunks[key] = [chunk]
            self._sizes = [self._sealed]

    def column(self, key: str) -> np.ndarray:
        """A new array of the column's ``len(self)`` values."""
        return np.concatenate([*self._chunks[key], self._tail[key][: self._filled]])

    def columns(self) -> dict[str, np.ndarray]:
        return {key: self.column(key) for key in self._chunks}

    def last(self, key: str, default: float = math.nan) -> float:
        if key not in self._chunks or not len(self):
            return default
        if self._filled:
            return float(self._tail[key][self._filled - 1])
        return float(self._chunks[key][-1][-1])

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` rows."""
        if n >= len(self):
            return
        self.seal()
        sizes, kept = [], 0
        for size in self._sizes:
            if kept + size > n:
                break
            sizes.append(size)
            kept += size
        for key, chunks in self._chunks.items():
            rest = chunks[len(sizes)][: n - kept].copy() if n > kept else None
            del chunks[len(sizes):]
            if rest is not None:
                rest.flags.writeable = False
                chunks.append(rest)
        if n > kept:
            sizes.append(n - kept)
        self._sizes, self._sealed = sizes, n

    def clear(self) -> None:
        """No rows and no columns."""
        self.__init__()
