"""Run records on disk (DESIGN.md: run records, contract).

``results/<YYYYmmdd-HHMMSS>_<name>/`` holds ``history.pkl`` (plain dicts, lists, floats, str and
numpy arrays, readable with the standard library + numpy + torch), a copy of the config file, the
plots, and ``checkpoints/`` for ``--resume``. Every write goes to a temporary file first and is then
moved into place with :func:`os.replace`, so a crash never leaves a half-written history.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import pickle
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.registry import ConfigError

HISTORY = "history.pkl"
RECORD_VERSION = 2  # 2: metric columns are float64 arrays (1: lists of floats)
_RUN_DIR = re.compile(r"^\d{8}-\d{6}(-\d+)?_")


def now_iso() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def new_run_dir(out_dir: str | Path, name: str) -> Path:
    """A fresh ``<out_dir>/<YYYYmmdd-HHMMSS>_<name>`` (a ``-N`` suffix if that second is taken)."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".probe.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write run folders in {out_dir} ({exc.strerror or exc}); give a writable "
                          f"out_dir=... (a relative path is relative to the app folder)") from None
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "run"
    for i in range(1000):
        candidate = out_dir / (f"{stamp}_{safe}" if i == 0 else f"{stamp}-{i}_{safe}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run folder in {out_dir}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``.NAME.<pid>.tmp`` next to ``path``, then rename it over ``path``. A
    failed write (a full disk) removes its temporary file and raises; ``path`` is untouched."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers (an earlier failed write) are stale too
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user), or this platform cannot tell: keep it
    return True


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete the ``.*.<pid>.tmp`` files that a killed writer left in a run folder and its
    ``checkpoints/`` (those of a process still running are kept); returns what was removed."""
    run_dir = Path(run_dir)
    removed = []
    for folder in (run_dir, run_dir / "checkpoints"):
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
            match = re.match(r"^\..+\.(\d+)\.tmp$", tmp.name)
            if match and not _pid_alive(int(match.group(1))):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


class CorruptRecord(ConfigError):
    """A history.pkl (or a file given as one) that cannot be read; the message names it."""


def save_history(run_dir: Path, history: dict) -> None:
    """One whole, atomic write (the experiment driver appends instead: :mod:`workbench.history_file`)."""
    atomic_write_bytes(Path(run_dir) / HISTORY, pickle.dumps(history, protocol=4))


def load_history(run_dir: str | Path) -> dict:
    """The record of a run folder (or a history.pkl path), metric columns as float64 arrays
    (records of version 1 stored lists). Raises FileNotFoundError or :class:`CorruptRecord`."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / HISTORY
    if not path.is_file():
        raise FileNotFoundError(f"no {HISTORY} in {path.parent}: is it a run folder of results/?")
    try:
        with open(path, "rb") as f:
            history = pickle.load(f)
    except Exception as exc:  # noqa: BLE001  a truncated or foreign file can raise almost anything
        raise CorruptRecord(
            f"{path} cannot be read ({type(exc).__name__}: {exc}): it is empty, truncated or not a "
            f"{HISTORY} written by main.py. Give another run folder, or rerun the experiment") from None
    if not (isinstance(history, dict) and isinstance(history.get("runs"), list)):
        raise CorruptRecord(f"{path} is a pickle but not a run record (no 'runs' list); give a run folder of results/")
    for run in history["runs"]:
        run["metrics"] = {k: np.asarray(v, dtype=np.float64) for k, v in (run.get("metrics") or {}).items()}
    return history


LOCK = ".lock"


def acquire_lock(run_dir: str | Path) -> Path:
    """Mark the record as in use by this process (``run_dir/.lock``: pid, host, start time).

    Raises ConfigError if another live process holds it, or if the folder cannot be written
    (checked here, before anything trains). A lock of a dead process, or our own, is taken over."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK
    mine = json.dumps({"pid": os.getpid(), "host": platform.node(), "since": now_iso(), "command": " ".join(sys.argv)})
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(path)
            if holder is not None:
                raise ConfigError(
                    f"{run_dir} is in use by process {holder['pid']} on {holder['host']} (since {holder['since']}: "
                    f"{holder.get('command', '?')}). Wait for it to end or stop it (Ctrl-C); if no such process "
                    f"runs, delete {path}") from None
            path.unlink(missing_ok=True)
            continue
        except OSError as exc:
            raise ConfigError(f"cannot write in {run_dir} ({exc.strerror or exc}): the record cannot be continued "
                              f"there. Make the folder writable, or copy it to a writable place and --resume the "
                              f"copy") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(mine)
        history = run_dir / HISTORY
        if history.exists() and not os.access(history, os.W_OK):
            release_lock(run_dir)
            raise ConfigError(f"{history} is read-only; make it writable (or copy the folder) to continue the record")
        return path
    raise ConfigError(f"could not take {path}; delete it if no process uses {run_dir}")


def _lock_holder(path: Path) -> dict | None:
    """The lock's holder if it is another live process (or one on another host), else None."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        pid, host = int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # half-written by a process killed at that moment
    if host != platform.node():
        return holder
    return holder if _pid_alive(pid) else None


def release_lock(run_dir: str | Path) -> None:
    path = Path(run_dir) / LOCK
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def run_dirs(out_dir: str | Path = "results") -> list[Path]:
    """The run folders that hold a history, oldest first (by their timestamped names)."""
    out_dir = Path(out_dir)
    return sorted(
        p for p in out_dir.glob("*") if p.is_dir() and _RUN_DIR.match(p.name) and (p / HISTORY).is_file()
    ) if out_dir.is_dir() else []


def latest_run_dir(out_dir: str | Path = "results") -> Path:
    """The newest run folder (by its timestamped name) that holds a history."""
    candidates = run_dirs(out_dir)
    if not candidates:
        raise FileNotFoundError(f"no run folders with a {HISTORY} in {Path(out_dir).resolve()}; run main.py first")
    return candidates[-1]


def environment(device: torch.device) -> dict[str, Any]:
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "command": " ".join(sys.argv),
        "record_version": RECORD_VERSION,
    }
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        if commit.returncode == 0:
            env["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return env


def to_plain(value: Any) -> Any:
    """Record-safe copy: tensors -> floats or numpy arrays, tuples -> lists, recursively."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.ndim == 0 else value.numpy().copy()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool, type(None), np.ndarray)):
        return value
    return repr(value)


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
