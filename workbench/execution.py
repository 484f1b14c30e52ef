"""What every executor relies on: the :class:`Driver` it trains for, and how many runs share the machine.

An executor (:mod:`workbench.executors`: this process or worker processes; :mod:`workbench.ray_executor`:
Ray tasks) is given the driver and the units of work to train: tuples of plan indices, one run or
the runs of a stack (``stack = True``, :mod:`workbench.stacking`). It trains each unit with
:func:`workbench.stacked_training.train_unit` and hands every message back through ``driver.apply``; a unit
whose worker is lost goes back to the driver run by run (``driver.lost``), and the runs it trains
again are grouped into units anew (``driver.units``). It
imports nothing from the driver's module: :class:`Driver` lists exactly the members it uses, and
:class:`workbench.runner.Experiment` provides them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Protocol

import torch

ROOT = Path(__file__).resolve().parent.parent


class DriverGone(BaseException):
    """A worker lost its driver (killed, or its pipe closed): it stops at once and quietly; there is
    no one left to report to. A BaseException, so that no run records it as its own failure."""


class Driver(Protocol):
    """The driver as executors see it."""

    config: object                 # the experiment's workbench.config.Config
    device: torch.device           # where runs train (the config's device, resolved)
    experiment_id: str             # one id per experiment (Ray keeps one problem per worker and id)
    should_stop: Callable | None   # the stop hook, called by a run in this process
    should_save: Callable | None   # the checkpoint hook, likewise

    def problem(self):
        """The problem on ``device`` (built once; a forked worker shares it)."""

    def data(self):
        """The CPU dataset (loaded once), for executors that build the problem elsewhere."""

    def prepare(self, index: int) -> tuple[dict, bytes | None]:
        """The planned run ``index`` and the checkpoint it continues from (None: from the start)."""

    def apply(self, messages: list) -> list[int]:
        """Fold a run's messages into the record; the indices of runs that reported Done."""

    def stop_requested(self) -> bool:
        """Ctrl-C, SIGTERM or a stop hook asked every run to stop."""

    def lost(self, index: int, reason: str) -> bool:
        """Run ``index``'s worker died: True to train it again from its last checkpoint."""

    def ended(self, index: int) -> bool:
        """Run ``index`` has a final status in the record."""

    def units(self, indices: list[int]) -> list[tuple[int, ...]]:
        """The runs ``indices`` as units of work (stacks where ``stack = True``)."""


def resolved_workers(config, runs: int | None = None) -> int:
    """``workers`` as a number: "auto" is the CPU count divided by the threads per run (>= 1),
    and no more than the ``runs`` left to train (one run: this process)."""
    workers = config["workers"]
    if workers == "auto":
        workers = max(1, (os.cpu_count() or 1) // (config["threads"] or 1))
        if runs is not None:
            workers = max(1, min(workers, runs))
    return workers


def threads_per_run(config, runs: int | None = None) -> int | None:
    """``threads``, or 1 when several runs share the machine and ``threads`` is unset."""
    if config["threads"]:
        return config["threads"]
    return 1 if resolved_workers(config, runs) > 1 or config["executor"] == "ray" else None


def worker_config(config):
    """The config a worker process or Ray task trains with: several runs share the machine, so
    each has one thread unless ``threads`` says otherwise."""
    return config.replace(threads=config["threads"] or 1)
