"""Trackers: TensorBoard's event files hold exactly the record's rows (read back with TensorBoard's
own reader), with any executor and across a resume; a failing tracker costs nothing."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from workbench import record
from workbench.config import Config
from workbench.errors import ConfigError
from workbench.runner import Experiment, Hooks
from workbench.trackers import BaseTracker, available, run_name

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _events(folder) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of one run's event files, as TensorBoard reads them."""
    from tensorboard.util import tensor_util

    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    return {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"] if not tag.startswith("_hparams_")}


def _assert_events_are_the_rows(run_dir):
    history = record.load_history(run_dir)
    for run in history["runs"]:
        events = _events(run_dir / "tensorboard" / run_name(run["label"], run["seed"]))
        metrics = run["metrics"]
        expected_tags = {k for k in metrics if k != "step"}
        assert set(events) == expected_tags, run["label"]
        for key in expected_tags:
            keep = ~np.isnan(metrics[key])
            expected = list(zip(metrics["step"][keep].astype(int).tolist(), metrics[key][keep].tolist()))
            assert events[key] == expected, (run["label"], key)  # float64 scalars: exactly the record's


@pytest.fixture
def tracked(tiny_config):
    config = copy.deepcopy(tiny_config)
    config.update(tracker="tensorboard", seeds=[0, 1], val_split=0.25)
    return config


def test_event_files_hold_exactly_the_rows_of_the_record_with_hparams(tracked):
    experiment = Experiment.create(tracked)
    assert experiment.run() == 0
    _assert_events_are_the_rows(experiment.run_dir)
    folder = experiment.run_dir / "tensorboard" / run_name("sgd lr=0.1 momentum=0.9", 1)
    assert folder.is_dir() and folder.parent.name == "sgd_lr=0.1_momentum=0.9"
    acc = event_accumulator.EventAccumulator(str(folder))
    acc.Reload()
    assert "_hparams_/session_start_info" in acc.summary_metadata


def test_event_files_with_worker_processes_and_after_a_resume(tracked):
    tracked["workers"] = 2
    experiment = Experiment.create(tracked)
    assert experiment.run() == 0
    _assert_events_are_the_rows(experiment.run_dir)
    count = {"n": 0}

    def stop_once(state):
        count["n"] += 1
        return count["n"] == 7

    tracked["workers"] = 1
    interrupted = Experiment.create(tracked, hooks=Hooks(should_stop=stop_once))
    assert interrupted.run() == 130
    assert Experiment.resume(interrupted.run_dir).run() == 0
    _assert_events_are_the_rows(interrupted.run_dir)


def test_a_failing_tracker_is_switched_off_and_the_record_goes_on(tracked, capsys, monkeypatch):
    from workbench.trackers import tensorboard

    def broken(self, index, row):
        raise OSError("disk full")

    monkeypatch.setattr(tensorboard.Tracker, "log", broken)
    experiment = Experiment.create(tracked)
    assert experiment.run() == 0
    assert "tracker 'tensorboard' failed in log (OSError: disk full); it is switched off" in capsys.readouterr().err
    assert all(r["status"] == "finished" for r in experiment.history["runs"])


def test_tracker_names_are_checked_and_a_new_tracker_is_one_class(tracked):
    assert "tensorboard" in available()
    with pytest.raises(ConfigError, match="tracker must be one of 'tensorboard'.*Did you mean 'tensorboard'"):
        Config.of({**tracked, "tracker": "tensorbord"})



def test_a_tracker_class_gets_every_start_row_and_end_as_the_driver_sees_them(tracked, monkeypatch):
    calls = []

    class Recording(BaseTracker):
        def start_run(self, index, spec, resumed_at):
            calls.append(("start", index, spec["label"], resumed_at))

        def log(self, index, row):
            calls.append(("log", index, row["step"]))

        def end_run(self, index, status):
            calls.append(("end", index, status))

        def close(self):
            calls.append(("close",))

    from workbench import runner

    monkeypatch.setattr(runner, "tracker_class", lambda name: Recording)
    experiment = Experiment.create({**tracked, "workers": 2})
    assert experiment.run() == 0
    history = record.load_history(experiment.run_dir)
    for index, run in enumerate(history["runs"]):
        assert ("start", index, run["label"], None) in calls and ("end", index, "finished") in calls
        assert [c[2] for c in calls if c[:2] == ("log", index)] == run["metrics"]["step"].tolist()
    assert calls[-1] == ("close",) and calls.count(("close",)) == 1
