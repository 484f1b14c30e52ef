"""The tidy tables: one row per measured (run, step, metric), one row per run, and the summary
table regenerated from them exactly."""
from __future__ import annotations

import copy
import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench import record
from workbench.export import long_rows, long_table, main, runs_from_tables, runs_rows
from workbench.runner import Experiment
from workbench.search import grid
from workbench.summary import summary_rows

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def recorded(tiny_config):
    config = copy.deepcopy(tiny_config)
    config.update(seeds=[0, 1], val_split=0.25, runs=[dict(algorithm="sgd", lr=grid([0.05, 0.2]), momentum=0.9),
                                                      dict(algorithm="adamw", label="AdamW", lr=1e-2)])
    experiment = Experiment.create(config)
    assert experiment.run() == 0
    return experiment.run_dir


def test_one_long_row_per_measured_value_with_the_run_and_its_parameters(recorded):
    history = record.load_history(recorded)
    rows = long_rows(recorded)
    measured = sum(int(np.isfinite(v).sum()) for r in history["runs"] for k, v in r["metrics"].items()
                   if k not in ("step", "epoch", "time"))
    assert len(rows) == measured
    row = next(r for r in rows if r["label"] == "AdamW" and r["metric"] == "val_acc" and r["seed"] == 1)
    assert row["record"] == "tiny" and row["algorithm"] == "adamw" and row["phase"] == "final"
    assert row["status"] == "finished" and row["lr"] == 1e-2 and row["betas"] == "[0.9, 0.999]"
    run = history["runs"][row["run"]]
    i = list(run["metrics"]["step"]).index(row["step"])
    assert row["value"] == run["metrics"]["val_acc"][i] and row["epoch"] == run["metrics"]["epoch"][i]
    table = long_table(recorded)  # a DataFrame with pandas installed, else the same rows
    try:
        import pandas  # noqa: F401
    except ImportError:
        assert table == rows
    else:
        assert len(table) == len(rows) and list(table.columns) == list(rows[0])


def test_the_exported_tables_regenerate_the_summary_table_exactly(recorded):
    history = record.load_history(recorded)
    rebuilt = runs_from_tables(long_rows(recorded), runs_rows(recorded))
    assert summary_rows(rebuilt) == summary_rows(history["runs"])
    runs = runs_rows(recorded)
    assert [r["final_test_acc"] for r in runs] == [r["metrics"]["test_acc"][-1] for r in history["runs"]]
    assert runs[0]["fact: eff. step"] == pytest.approx(0.05 / (1 - 0.9))


def test_the_command_writes_csv_that_reads_back(recorded, tmp_path):
    assert main([str(recorded)]) == 0
    with open(recorded / "metrics.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    expected = long_rows(recorded)
    assert len(rows) == len(expected)
    assert all(math.isclose(float(a["value"]), b["value"], rel_tol=1e-15) for a, b in zip(rows, expected))
    out = tmp_path / "runs.csv"
    assert main([str(recorded), "--runs", "--out", str(out)]) == 0
    assert len(list(csv.DictReader(open(out, encoding="utf-8")))) == 6
    process = subprocess.run([sys.executable, "-m", "workbench.export", str(tmp_path / "nowhere")], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2 and "does not exist" in process.stderr and "Traceback" not in process.stderr
