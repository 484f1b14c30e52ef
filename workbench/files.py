"""Files written safely: atomic replacement, stale temporaries of killed writers, and the lock that
marks a run folder as in use by one process."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import sys
from pathlib import Path

from workbench.errors import ConfigError

HISTORY = "history.pkl"


def now_iso() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


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
