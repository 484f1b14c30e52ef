"""Opening a record or checkpoint from elsewhere runs none of its code: plotting, resuming and
loading a malicious history.pkl or checkpoint exit 2 with a message, and the marker file their
payload would create never appears."""
from __future__ import annotations

import copy
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench import record
from workbench.runner import Experiment, Hooks
from workbench.safe_pickle import UntrustedFile, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


class _Payload:
    """Unpickled, it would create ``marker``: what a hostile pickle does with any function it names."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _stopped_record(tiny_config) -> Path:
    experiment = Experiment.create(copy.deepcopy(tiny_config), hooks=Hooks(should_stop=lambda s: s.step >= 4))
    assert experiment.run() == 130
    return experiment.run_dir


def _main(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUTF8": "1"})


def test_the_records_and_checkpoints_the_app_writes_load(tiny_config):
    run_dir = _stopped_record(tiny_config)
    assert record.load_history(run_dir)["runs"][0]["status"] == "stopped"
    data = (run_dir / "checkpoints" / "run_000.pt").read_bytes()
    assert load_checkpoint(data)["step"] == 4  # numpy's random state included


def test_a_malicious_history_runs_nothing_when_plotted_resumed_or_loaded(tiny_config, tmp_path):
    run_dir = _stopped_record(tiny_config)
    marker = tmp_path / "pwned"
    history = record.load_history(run_dir)
    history["environment"]["note"] = _Payload(marker)
    (run_dir / record.HISTORY).write_bytes(pickle.dumps(history, protocol=4))
    with pytest.raises(UntrustedFile, match="posix.system|os.system|nt.system"):
        record.load_history(run_dir)
    for args in (["main.py", "--resume", str(run_dir)], ["plot.py", str(run_dir)]):
        out = _main(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert "could run code" in out.stderr and "Traceback" not in out.stderr
    assert not marker.exists()
    assert not (run_dir / record.LOCK).exists()


def test_a_malicious_checkpoint_runs_nothing_when_resumed(tiny_config, tmp_path):
    run_dir = _stopped_record(tiny_config)
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"step": 4, "rows": 1, "snapshots": 0, "algorithm": _Payload(marker)}, buffer)
    (run_dir / "checkpoints" / "run_000.pt").write_bytes(buffer.getvalue())
    with pytest.raises(UntrustedFile, match="could run code"):
        load_checkpoint(buffer.getvalue())
    out = _main("main.py", "--resume", str(run_dir))
    assert out.returncode == 2 and "run_000.pt" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not marker.exists()
    assert not (run_dir / record.LOCK).exists()
    assert record.load_history(run_dir)["runs"][0]["status"] == "stopped"  # the record is untouched
