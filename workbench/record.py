"""Run records on disk (DESIGN.md: run records, contract).

``results/<YYYYmmdd-HHMMSS>_<name>/`` holds ``history.pkl`` (plain dicts, lists, floats, str and
numpy arrays, readable with the standard library + numpy + torch), a copy of the config file, the
plots, and ``checkpoints/`` for ``--resume``. Every write goes to a temporary file first and is then
moved into place with :func:`os.replace`, so a crash never leaves a half-written history.
"""
from __future__ import annotations

import datetime as _dt
import os
import pickle
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from workbench.errors import ConfigError
# the record's file helpers and table live in their own modules; callers find them here too
from workbench.files import (HISTORY, LOCK, acquire_lock, atomic_write_bytes, now_iso, release_lock,  # noqa: F401
                             remove_stale_temporaries)
from workbench.history_file import HistoryFile
from workbench.metric_table import MetricTable  # noqa: F401
from workbench.safe_pickle import UntrustedFile, load_record
from workbench.search import Space

RECORD_VERSION = 2  # 2: metric columns are float64 arrays (1: lists of floats)
_RUN_DIR = re.compile(r"^\d{8}-\d{6}(-\d+)?_")


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


class CorruptRecord(ConfigError):
    """A history.pkl (or a file given as one) that cannot be read; the message names it."""


def save_history(run_dir: Path, history: dict) -> None:
    """One whole, atomic write (the experiment driver appends instead: :mod:`workbench.history_file`)."""
    atomic_write_bytes(Path(run_dir) / HISTORY, pickle.dumps(history, protocol=4))


def load_history(run_dir: str | Path) -> dict:
    """The record of a run folder (or a history.pkl path), metric columns as float64 arrays
    (records of version 1 stored lists). Raises FileNotFoundError, :class:`CorruptRecord`, or
    :class:`~workbench.safe_pickle.UntrustedFile` for a file that names a type the app never writes
    (nothing of it runs)."""
    path = Path(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a run folder of results/ "
                                f"(results/<YYYYmmdd-HHMMSS>_<name>), or its {HISTORY}")
    if path.is_dir():
        path = path / HISTORY
    if not path.is_file():
        raise FileNotFoundError(f"no {HISTORY} in {path.parent}: is it a run folder of results/?")
    try:
        with open(path, "rb") as f:
            history = load_record(f, str(path))
    except UntrustedFile:
        raise
    except Exception as exc:  # noqa: BLE001  a truncated or foreign file can raise almost anything
        raise CorruptRecord(
            f"{path} cannot be read ({type(exc).__name__}: {exc}): it is empty, truncated or not a "
            f"{HISTORY} written by main.py. Give another run folder, or rerun the experiment") from None
    if not (isinstance(history, dict) and isinstance(history.get("runs"), list)):
        raise CorruptRecord(f"{path} is a pickle but not a run record (no 'runs' list); give a run folder of results/")
    for run in history["runs"]:
        run["metrics"] = {k: np.asarray(v, dtype=np.float64) for k, v in (run.get("metrics") or {}).items()}
    return history


def run_dirs(out_dir: str | Path = "results") -> list[Path]:
    """The run folders that hold a history, oldest first (by their timestamped names)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = [p for p in out_dir.glob("*") if p.is_dir() and _RUN_DIR.match(p.name) and (p / HISTORY).is_file()]
    return sorted(found, key=_created_order)


def _created_order(path: Path) -> tuple[str, int, str]:
    """(timestamp, -N suffix, name): ``..._x`` before ``...-1_x`` made in the same second."""
    match = _RUN_DIR.match(path.name)
    return match.group(0)[:15], int((match.group(1) or "-0")[1:]), path.name


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
    """Record-safe copy: tensors -> floats or numpy arrays, tuples -> lists, recursively (a
    config's search spaces stay: the record's reader rebuilds them)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.ndim == 0 else value.numpy().copy()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool, type(None), np.ndarray, Space)):
        return value
    return repr(value)




FINAL_STATUSES = ("finished", "diverged", "failed")


def new_history(config, environment: dict) -> dict:
    """The history of a new experiment: its resolved config, no runs yet."""
    return {"name": config["name"], "config": to_plain(dict(config)), "created": now_iso(),
            "finished": None, "environment": environment, "runs": []}


def run_ended(history: dict, index: int) -> bool:
    """Run ``index`` of a history has a final status (a run whose worker was lost has not)."""
    runs = history["runs"]
    return index < len(runs) and runs[index]["status"] in FINAL_STATUSES and not runs[index].get("lost_worker")


class Record:
    """One experiment's record: the history (the contract's dict), one :class:`MetricTable` per run,
    ``history.pkl`` (appended saves, :mod:`workbench.history_file`) and the runs' checkpoints.

    It applies the runs' messages (:mod:`workbench.messages`) and alone decides what is on disk:
    the history is written before a checkpoint, so a checkpoint is never ahead of the rows. While
    runs train, their rows live in the tables; ``history["runs"][i]["metrics"]`` is brought up to
    date by :meth:`close`.
    """

    def __init__(self, run_dir: str | Path, history: dict):
        self.run_dir = Path(run_dir)
        self.history = history
        self.tables = [MetricTable(run["metrics"]) for run in history["runs"]]
        self.file = HistoryFile(self.run_dir / HISTORY)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.saved_at = time.monotonic()
        self.report: Callable[[str], None] = lambda text: print(text, file=sys.stderr)  # the driver's bars

    @property
    def runs(self) -> list[dict]:
        return self.history["runs"]

    def ended(self, index: int) -> bool:
        return run_ended(self.history, index)

    def runs_now(self) -> list[dict]:
        """The runs with their metric columns as recorded so far (shallow copies)."""
        return [{**run, "metrics": table.columns()} for run, table in zip(self.runs, self.tables)]

    def checkpoint_path(self, index: int) -> Path:
        return self.checkpoint_dir / f"run_{index:03d}.pt"

    def save(self) -> None:
        """Write history.pkl: what changed since the last save is appended."""
        self.file.save(self.history, self.tables)
        self.saved_at = time.monotonic()

    def save_if_due(self, seconds: float) -> None:
        """Save when the last save is ``seconds`` old, so that new rows reach history.pkl (and a
        ``plot.py`` of the running experiment) within that time; a failed write waits for the next."""
        if time.monotonic() - self.saved_at >= seconds:
            try:
                self.save()
            except OSError as exc:
                self.saved_at = time.monotonic()
                self.report(f"warning: could not append the new rows to {self.run_dir / HISTORY} ({exc}); the "
                            f"next save tries again")

    def close(self, interrupted: bool) -> None:
        """The last save: ``finished`` set unless ``interrupted``; the metric columns into the history."""
        if not interrupted:
            self.history["finished"] = now_iso()
        self.save()
        release_lock(self.run_dir)
        for run, table in zip(self.runs, self.tables):
            run["metrics"] = table.columns()

    # -- a run starts ---------------------------------------------------------------------------
    def hold_place(self, spec: dict) -> None:
        """The record of a planned run that has not started yet, while a later run of the plan starts
        (a stack takes runs from across the plan): status ``stopped`` and no rows until it starts, so
        a resume trains it."""
        if spec["index"] == len(self.runs):
            run = _new_run(spec)
            run["status"] = "stopped"
            self.runs.append(run)
            self.tables.append(MetricTable())

    def prepare(self, spec: dict, counts_of) -> bytes | None:
        """The run's record (new, or kept for a resume) and the checkpoint to continue from.

        A checkpoint is used only if the rows and snapshots it counts (``counts_of(bytes) -> (step,
        rows, snapshots)``) are all on disk; the rows recorded after it are dropped (its steps are
        redone). Otherwise the run starts afresh (None)."""
        index = spec["index"]
        if index == len(self.runs):
            self.runs.append(_new_run(spec))
            self.tables.append(MetricTable())
        if index > len(self.runs):
            raise ValueError(f"run {index} prepared before run {len(self.runs)}: hold its place first (hold_place)")
        run, table = self.runs[index], self.tables[index]
        run["status"], run["error"] = "running", None
        path = self.checkpoint_path(index)
        if not (path.is_file() and len(table)):
            return None
        data = path.read_bytes()
        step, rows, snapshots = counts_of(data)
        if rows > len(table) or snapshots > len(run["snapshots"].get("step", [])):
            self.report(f"{spec['label']} seed={spec['seed']}: its checkpoint (step {step}) is ahead of the rows "
                        f"on disk; training it again from the start")
            return None
        table.truncate(rows)
        for column in run["snapshots"].values():
            del column[snapshots:]
        return data

    # -- messages -----------------------------------------------------------------------------------
    def apply(self, message) -> None:
        """Fold one message of a run into the record (:class:`~workbench.messages.Progress` has
        nothing to record)."""
        from workbench import messages as m

        run = self.runs[message.index]
        match message:
            case m.Start(where=where):
                run["where"] = where
            case m.Reset(info=info, facts=facts):
                self.tables[message.index].clear()
                run["metrics"], run["snapshots"], run["info"], run["summary_facts"] = {}, {}, info, facts
            case m.Rows(rows=rows):
                table = self.tables[message.index]
                for row in rows:
                    table.add_row(row)
            case m.Snapshot(values=values):
                for key, value in values.items():
                    run["snapshots"].setdefault(key, []).append(value)
            case m.Checkpoint(data=data):
                self.write_checkpoint(message.index, data)
            case m.Done(status=status, error=error):
                self.finish(message.index, status, error)

    def write_checkpoint(self, index: int, data: bytes | None) -> None:
        """The history first, then the checkpoint. If the history cannot be written (a full
        disk), the checkpoint is not written either and the run goes on; the next save tries
        again (the rows stay in memory)."""
        target = self.run_dir / HISTORY
        try:
            self.save()
            if data is not None:
                target = self.checkpoint_path(index)
                self.checkpoint_dir.mkdir(exist_ok=True)
                atomic_write_bytes(target, data)
        except OSError as exc:
            self.report(f"warning: could not write {target} ({exc}); training goes on and the next save tries "
                        "again (what is on disk still agrees: no checkpoint is ahead of the history)")

    def finish(self, index: int, status: str, error: str | None) -> None:
        run = self.runs[index]
        run["status"], run["error"] = status, error
        run.pop("lost_worker", None)
        if status in FINAL_STATUSES:
            self.checkpoint_path(index).unlink(missing_ok=True)
        self.save()

    def fail_lost(self, index: int, error: str) -> None:
        """A run whose worker died twice: failed, resumable."""
        run = self.runs[index]
        run["status"], run["error"], run["lost_worker"] = "failed", error, True
        self.save()

    def stop_running(self) -> None:
        for run in self.runs:
            if run["status"] == "running":
                run["status"] = "stopped"


def _new_run(spec: dict) -> dict:
    run = {"label": spec["label"], "algorithm": spec["algorithm"], "params": to_plain(spec["params"]),
           "seed": spec["seed"], "phase": spec.get("phase", "final"), "entry": spec.get("entry"), "status": "running",
           "error": None, "info": {}, "metrics": {}, "snapshots": {}, "where": None}
    if "trial" in spec:
        run["trial"] = spec["trial"]
    return run
