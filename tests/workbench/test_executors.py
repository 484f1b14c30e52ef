"""Executors against the Driver protocol alone: what they ask of a driver, in which order."""
from __future__ import annotations

import copy
import os

import torch

from workbench import messages as m
from workbench.config import Config
from workbench.execution import resolved_workers, threads_per_run, worker_config
from workbench.executors import InProcess, LocalWorkers, make_executor
from workbench.plan import plan_runs
from workbench.problem import build_problem


class FakeDriver:
    """The members of workbench.execution.Driver, recording what the executor does."""

    def __init__(self, config):
        self.config = Config.of(config)
        self.device = torch.device("cpu")
        self.experiment_id = "fake"
        self.should_stop = self.should_save = None
        self.plan = plan_runs(self.config)
        self.calls, self.messages = [], []

    def problem(self):
        self.calls.append("problem")
        return build_problem(self.config, self.device)

    def data(self):
        raise AssertionError("InProcess builds nothing elsewhere")

    def prepare(self, index):
        self.calls.append(("prepare", index))
        return self.plan[index], None

    def apply(self, messages):
        self.messages.extend(messages)
        return [msg.index for msg in messages if isinstance(msg, m.Done)]

    def stop_requested(self):
        return False

    def lost(self, index, reason):
        raise AssertionError("nothing dies in this process")


def test_in_process_trains_the_runs_in_order_and_every_run_reports_start_to_done(tiny_config):
    driver = FakeDriver(copy.deepcopy(tiny_config))
    InProcess().run(driver, [(1,), (0,)])
    assert driver.calls == ["problem", ("prepare", 1), ("prepare", 0)]
    kinds = [(type(msg).__name__, msg.index) for msg in driver.messages if not isinstance(msg, m.Progress)]
    assert kinds[0] == ("Start", 1) and kinds[1] == ("Reset", 1) and ("Done", 1) in kinds
    assert kinds.index(("Done", 1)) < kinds.index(("Start", 0)) and kinds[-1] == ("Done", 0)
    assert all(msg.status == "finished" for msg in driver.messages if isinstance(msg, m.Done))
    rows = [row for msg in driver.messages if isinstance(msg, m.Rows) and msg.index == 0 for row in msg.rows]
    assert [row["step"] for row in rows][:2] == [0, 2]  # log_every=2


def test_how_many_workers_and_threads(tiny_config, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    config = Config.of({**tiny_config, "workers": "auto", "threads": None})
    assert resolved_workers(config, runs=2) == 2 and threads_per_run(config, runs=2) == 1
    assert resolved_workers(config, runs=1) == 1 and threads_per_run(config, runs=1) is None
    assert worker_config(config).threads == 1 and worker_config(config.replace(threads=3)).threads == 3
    assert isinstance(make_executor(config, runs=1), InProcess)
    executor = make_executor(config, runs=3)
    assert isinstance(executor, LocalWorkers) and executor.workers == 3 and not executor.in_process
