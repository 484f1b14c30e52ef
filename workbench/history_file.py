"""``history.pkl`` written by appending what changed, always one complete standard pickle.

A save of a long run costs what changed since the last save, not the whole run, and the file stays
what the record contract promises at every instant: ``pickle.load`` with the standard library,
numpy and torch gives the whole history, metric columns as float64 arrays.

How. Each save appends one pickle *frame group* ``PROTO ... STOP`` after the file's last byte:

* new metric values go in as new float64 *chunks*: the sealed chunks of the run's
  :class:`~workbench.record.MetricTable` (shared, not copied), which stay in the pickler's memo
  for the life of the file, like every snapshot value already written;
* then the history itself, in which a column is ``numpy.concatenate([chunk, chunk, ...])`` over
  memo references, so it costs a few bytes per chunk.

After the appended bytes are on disk (fsync), the previous group's final ``STOP`` byte is
overwritten with ``POP``: an unpickler then builds the old history, discards it, and reads on into
the new group. Until that one-byte write lands, the file is the previous complete pickle followed
by bytes no unpickler reads. A kill at any moment therefore leaves a readable record; a failed
write (a full disk) too, and the next save rewrites the file.

The file is rewritten whole (atomically: temporary file, fsync, rename; one chunk per column)
when it is new, after a failed write, when the bytes appended since the last rewrite exceed both
the rewrite's own size and 1 MiB (so rewrites cost O(1) per appended byte, amortised, and the file
is at most about twice its content plus 1 MiB), or when a table has more than ``MAX_CHUNKS`` chunks.
"""
from __future__ import annotations

import os
import pickle
from io import BytesIO
from pathlib import Path

import numpy as np

from workbench.files import atomic_write_bytes
from workbench.metric_table import MetricTable

PROTOCOL = 4
_STOP, _POP = pickle.STOP, pickle.POP


class _Concat:
    """Pickles as ``numpy.concatenate(parts)``: a column rebuilt from its chunks on load."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts

    def __reduce__(self):
        return np.concatenate, (self.parts,)


class _MemoPickler(pickle._Pickler):
    """The pure-Python pickler, with a memo that outlives one ``dump``.

    Memo keys are handed out by a counter (the unpickler numbers MEMOIZE entries in the same
    order), so the memo can be pruned after each dump to the objects that stay valid: the chunks
    and the snapshot values, which never change once written."""

    def __init__(self, sink: BytesIO):
        super().__init__(sink, protocol=PROTOCOL)
        self.next_index = 0

    def memoize(self, obj):
        if self.fast:
            return
        self.write(self.put(self.next_index))
        self.memo[id(obj)] = self.next_index, obj
        self.next_index += 1

    def keep_only(self, keep: set[int]) -> None:
        self.memo = {key: value for key, value in self.memo.items() if key in keep}


class HistoryFile:
    """Writes one run folder's ``history.pkl`` (module docstring)."""

    MAX_CHUNKS = 256
    MIN_REWRITE_BYTES = 1 << 20

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._start_over()

    def _start_over(self) -> None:
        """Forget what is on disk: the next save rewrites the file."""
        self._pickler: _MemoPickler | None = None
        self._sink = BytesIO()
        self._end = 0                 # bytes of the file that are ours
        self._rewritten_size = 0
        self.last_save = "none"       # "rewrite" or "append": what the last save did

    def save(self, history: dict, tables: list[MetricTable]) -> None:
        """Write ``history`` with ``tables[i]`` as run ``i``'s metrics (``run["metrics"]`` is not
        read). Raises OSError if the disk refuses; the file then still holds the previous save."""
        for table in tables:
            table.seal()
        appended = self._end - self._rewritten_size
        rewrite = (self._pickler is None or appended > max(self._rewritten_size, self.MIN_REWRITE_BYTES)
                   or any(t.n_chunks() > self.MAX_CHUNKS for t in tables))
        try:
            if rewrite:
                self._rewrite(history, tables)
            else:
                self._append(history, tables)
        except BaseException:
            self._start_over()
            raise

    def _rewrite(self, history: dict, tables: list[MetricTable]) -> None:
        self._start_over()
        for table in tables:
            table.consolidate()
        self._pickler = _MemoPickler(self._sink)
        data = self._dump(history, tables)
        atomic_write_bytes(self.path, data)
        self._end = self._rewritten_size = len(data)
        self.last_save = "rewrite"

    def _append(self, history: dict, tables: list[MetricTable]) -> None:
        data = self._dump(history, tables)
        with open(self.path, "r+b") as f:
            f.seek(self._end)
            try:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            except BaseException:
                f.truncate(self._end)
                raise
            self._commit(f)
        self._end += len(data)
        self.last_save = "append"

    def _commit(self, f) -> None:
        """The previous group's STOP becomes POP: from here on the file reads as the new save."""
        f.seek(self._end - 1)
        f.write(_POP)
        f.flush()
        os.fsync(f.fileno())

    def _dump(self, history: dict, tables: list[MetricTable]) -> bytes:
        """The next frame group: the history, its columns over the tables' chunks (those written
        before are memo references)."""
        runs, keep = [], set()
        for run, table in zip(history["runs"], tables, strict=True):
            metrics = {}
            for key in table.keys():
                chunks = table.chunks(key)
                keep.update(id(c) for c in chunks)
                metrics[key] = (chunks[0] if len(chunks) == 1 else _Concat(list(chunks))) if chunks else np.zeros(0)
            for column in run.get("snapshots", {}).values():
                keep.update(id(v) for v in column)
            runs.append({**run, "metrics": metrics})
        self._pickler.dump({**history, "runs": runs})
        self._pickler.keep_only(keep)
        data = self._sink.getvalue()
        self._sink.seek(0)
        self._sink.truncate()
        return data
