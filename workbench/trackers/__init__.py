"""Trackers: where a record's rows go besides ``history.pkl``, as they reach the driver.

``tracker = "NAME"`` in a config uses the module ``workbench/trackers/NAME.py``, whose class
``Tracker`` subclasses :class:`BaseTracker`. The driver calls it with every run's start, every
metrics row (with any executor: rows reach the driver from worker processes and Ray tasks alike)
and every run's end; a tracker that raises is switched off with one warning, never costing the
record. A W&B or MLflow tracker is one such file (README "Trackers"); ``tensorboard`` ships.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

from workbench.errors import ConfigError, closest_hint


class BaseTracker:
    """What the driver calls; every method may be left as it is.

    ``run_dir``: the record's folder; ``history``: the record (name, config, environment).
    """

    def __init__(self, run_dir: Path, history: dict):
        self.run_dir, self.history = Path(run_dir), history

    @classmethod
    def check_available(cls) -> None:
        """Raise ConfigError naming the install command when a package the tracker needs is missing
        (called before the run folder exists)."""

    def start_run(self, index: int, spec: dict, resumed_at: int | None) -> None:
        """Run ``index`` (its plan entry ``spec``: label, algorithm, params, seed, phase) starts, or
        continues from step ``resumed_at`` (rows after it will be sent again)."""

    def log(self, index: int, row: dict) -> None:
        """One metrics row of run ``index``: ``step``, ``time``, ``epoch`` and the metrics."""

    def end_run(self, index: int, status: str) -> None:
        """Run ``index`` ended (finished, diverged, failed or stopped)."""

    def close(self) -> None:
        """The experiment ends (or is interrupted): flush and release everything."""


def available() -> list[str]:
    """The tracker names: the modules of this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def tracker_class(name: str) -> type[BaseTracker]:
    """The ``Tracker`` class of ``workbench/trackers/<name>.py``, its packages checked."""
    if name not in available():
        raise ConfigError(f"unknown tracker {name!r}.{closest_hint(name, available())} Trackers: "
                          f"{', '.join(available())} (a new one is one file in workbench/trackers/)")
    cls = importlib.import_module(f"workbench.trackers.{name}").Tracker
    cls.check_available()
    return cls


def run_name(label: str, seed: int) -> str:
    """``<label>/seed_<seed>``, the label made a safe folder name: TensorBoard and other tools then
    group the seeds of a label."""
    safe = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", label).strip("_") or "run"
    return f"{safe}/seed_{seed}"
