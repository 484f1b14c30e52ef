"""The record under faults: a checkpoint is never ahead of the rows on disk, a failed write loses
no row and leaves no temporary file, and a kill in the middle of a save (a rewrite's temporary
file exists, or an append is on disk but not committed) is recovered by --resume with every row
of the uninterrupted run."""
from __future__ import annotations

import copy
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from workbench import record
from workbench.history_file import HistoryFile
from workbench.runner import Experiment, Hooks

ROOT = Path(__file__).resolve().parents[2]


def _same_rows(got: dict, want: dict) -> None:
    for a, b in zip(got["runs"], want["runs"], strict=True):
        assert a["status"] == b["status"] == "finished"
        assert set(a["metrics"]) == set(b["metrics"])
        for key in a["metrics"]:
            if key != "time":
                assert np.array_equal(a["metrics"][key], b["metrics"][key], equal_nan=True), key


def _config(tiny_config):
    config = copy.deepcopy(tiny_config)
    config.update(epochs=4, log_every=1, seeds=[0], runs=[dict(algorithm="sgd", lr=0.1, momentum=0.9)])
    return config


def test_a_failing_history_write_loses_no_row_and_writes_no_checkpoint_ahead(tiny_config, monkeypatch):
    reference = Experiment.create(_config(tiny_config))
    assert reference.run() == 0
    real_save, calls = HistoryFile.save, {"n": 0}
    written = []

    def flaky_save(self, history, tables):
        calls["n"] += 1
        if calls["n"] in (3, 4):  # two checkpoints in a row hit a full disk, mid-append
            real_fsync = os.fsync

            def full_disk(fd):
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(os, "fsync", full_disk)
            try:
                return real_save(self, history, tables)
            finally:
                monkeypatch.setattr(os, "fsync", real_fsync)
        return real_save(self, history, tables)
    real_checkpoint = record.atomic_write_bytes

    def watched(path, data):
        if path.suffix == ".pt":
            written.append(len(record.load_history(path.parent.parent)["runs"][0]["metrics"]["step"]))
        real_checkpoint(path, data)
    monkeypatch.setattr(HistoryFile, "save", flaky_save)
    monkeypatch.setattr(record, "atomic_write_bytes", watched)
    experiment = Experiment.create(_config(tiny_config), hooks=Hooks(should_save=lambda s: s.step % 4 == 0))
    assert experiment.run() == 0
    assert calls["n"] > 4 and written, "checkpoints were taken after the failures"
    _same_rows(record.load_history(experiment.run_dir), record.load_history(reference.run_dir))


def test_a_failed_write_removes_its_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "history.pkl"
    record.atomic_write_bytes(target, b"old")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(record.os, "fsync", full_disk)
    with pytest.raises(OSError):
        record.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f".history.pkl.{dead.pid}.tmp", tmp_path / "checkpoints" / f".run_000.pt.{dead.pid}.tmp"]
    live = tmp_path / f".history.pkl.{os.getppid()}.tmp"  # a process that is still running
    for path in (*stale, live):
        path.write_bytes(b"half")
    assert sorted(record.remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert live.exists() and not any(p.exists() for p in stale)


_SLOW_SAVES = textwrap.dedent("""
    # main.py whose 4th and later saves of history.pkl pause at the most fragile moment, after
    # leaving a marker file, so that a test can kill the process there:
    #   rewrite: every save rewrites the file, pausing while its temporary file exists;
    #   append: every save appends, pausing after the appended bytes, before the commit byte
    import os, runpy, sys, time
    from pathlib import Path
    import workbench.record as record
    from workbench.history_file import HistoryFile
    mode, count = sys.argv.pop(1), [0]
    def pause(path):
        count[0] += 1
        if count[0] >= 4:
            (Path(path).parent / "PAUSED").write_text(mode)
            time.sleep(2.0)
    if mode == "rewrite":
        HistoryFile.MIN_REWRITE_BYTES, HistoryFile.MAX_CHUNKS = -1, 0
        real_replace = os.replace
        def slow_replace(src, dst):
            if str(dst).endswith("history.pkl"):
                pause(dst)
            real_replace(src, dst)
        record.os.replace = slow_replace
    else:
        real_commit = HistoryFile._commit
        def slow_commit(self, f):
            pause(self.path)
            real_commit(self, f)
        HistoryFile._commit = slow_commit
    sys.argv = [sys.argv[1]] + sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("mode", ["rewrite", "append"])
def test_kill_in_the_middle_of_a_save_then_resume_has_every_row(tmp_path, mode):
    config = tmp_path / "crash.py"
    config.write_text(textwrap.dedent("""
        dataset = "synthetic_classification"
        dataset_args = dict(n=256, d=6, classes=3, seed=2)
        model_args = dict(hidden=[8])
        batch_size = 16
        epochs = None
        max_steps = 400
        log_every = 1
        save_every = 0.01
        dtype = "float64"
        threads = 1
        runs = [dict(algorithm="sgd", lr=0.05)]
    """), encoding="utf-8")
    wrapper = tmp_path / "slow_main.py"
    wrapper.write_text(_SLOW_SAVES, encoding="utf-8")
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, str(wrapper), mode, str(ROOT / "main.py"), str(config),
                                f"out_dir={results}", "progress=False"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, marker = time.time() + 120, None
    while time.time() < deadline and marker is None and process.poll() is None:
        marker = next(iter(results.glob("*/PAUSED")), None)
        time.sleep(0.1)
    assert marker is not None, process.stderr.read() if process.poll() is not None else "no paused save"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    run_dir = marker.parent
    marker.unlink()
    tmp = list(run_dir.glob(".history.pkl.*.tmp"))
    assert bool(tmp) == (mode == "rewrite"), "the kill left the temporary file behind"
    killed = record.load_history(run_dir)  # the previous save, whole
    assert killed["runs"][0]["status"] == "running" and len(killed["runs"][0]["metrics"]["step"]) > 1
    resumed = Experiment.resume(run_dir)
    assert not list(run_dir.glob(".history.pkl.*.tmp")), "resume removes the stale temporary file"
    assert resumed.run() == 0
    reference = subprocess.run([sys.executable, str(ROOT / "main.py"), str(config),
                                f"out_dir={tmp_path / 'reference'}", "progress=False", "--no-plot"],
                               cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr
    ref_dir = next((tmp_path / "reference").glob("*/history.pkl")).parent
    _same_rows(record.load_history(run_dir), record.load_history(ref_dir))
    assert not list(run_dir.glob(".*.tmp"))
