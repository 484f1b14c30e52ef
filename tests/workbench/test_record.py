"""The Record applies a run's messages, decides what is on disk, and keeps a checkpoint from ever
being ahead of the rows."""
from __future__ import annotations

import numpy as np
import pytest

from workbench import messages as m
from workbench import record
from workbench.record import Record

SPEC = {"index": 0, "label": "sgd lr=0.1", "algorithm": "sgd", "params": {"lr": 0.1}, "seed": 0}


def _counts(data: bytes):
    step, rows, snapshots = data.decode().split(",")
    return int(step), int(rows), int(snapshots)


@pytest.fixture
def rec(tmp_path):
    r = Record(tmp_path, record.new_history({"name": "t", "runs": []}, {"python": "3"}))
    r.report = lambda text: r.__dict__.setdefault("said", []).append(text)
    return r


def test_messages_build_the_run_and_done_removes_the_checkpoint(rec, tmp_path):
    assert rec.prepare(SPEC, _counts) is None  # a new run: no checkpoint
    rec.apply(m.Start(0, {"pid": 1}))
    rec.apply(m.Reset(0, {"width": 3}, {"eff. step": 0.1}))
    rec.apply(m.Rows(0, [{"step": 0, "train_loss": 2.0}, {"step": 5, "train_loss": 1.5, "test_acc": 50.0}]))
    rec.apply(m.Snapshot(0, {"step": 5, "w": np.ones(2)}))
    rec.apply(m.Checkpoint(0, b"5,2,1"))
    assert rec.checkpoint_path(0).read_bytes() == b"5,2,1"
    on_disk = record.load_history(tmp_path)  # the history was written before the checkpoint
    assert list(on_disk["runs"][0]["metrics"]["step"]) == [0.0, 5.0]
    rec.apply(m.Done(0, "finished"))
    assert not rec.checkpoint_path(0).exists() and rec.ended(0)
    rec.close(interrupted=False)
    run = record.load_history(tmp_path)["runs"][0]
    assert run["status"] == "finished" and run["where"] == {"pid": 1} and run["info"] == {"width": 3}
    assert np.isnan(run["metrics"]["test_acc"][0]) and run["metrics"]["test_acc"][1] == 50.0
    assert record.load_history(tmp_path)["finished"] is not None


def test_a_resume_drops_the_rows_after_the_checkpoint_and_refuses_one_ahead_of_them(rec):
    rec.prepare(SPEC, _counts)
    rec.apply(m.Rows(0, [{"step": s} for s in range(4)]))
    rec.apply(m.Snapshot(0, {"step": 0}))
    rec.apply(m.Checkpoint(0, b"2,2,1"))
    assert rec.prepare(SPEC, _counts) == b"2,2,1"
    assert len(rec.tables[0]) == 2 and rec.runs[0]["status"] == "running"
    rec.checkpoint_path(0).write_bytes(b"9,9,1")  # counts rows the record does not have
    assert rec.prepare(SPEC, _counts) is None
    assert "ahead of the rows" in rec.said[-1]


def test_a_run_lost_twice_is_failed_but_not_ended(rec):
    rec.prepare(SPEC, _counts)
    rec.fail_lost(0, "worker died")
    assert rec.runs[0]["status"] == "failed" and not rec.ended(0)
    rec.stop_running()
    assert rec.runs[0]["status"] == "failed"
