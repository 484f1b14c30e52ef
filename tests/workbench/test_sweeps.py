"""Grids in runs entries: expansion, labels, the command-line forms, --dry-run, and a grid run's
numbers equal to the same run written by hand."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from workbench.config import Config, load_config
from workbench.errors import ConfigError
from workbench.plan import plan_runs, run_count
from workbench.runner import Experiment
from workbench.search import grid, loguniform

ROOT = Path(__file__).resolve().parents[2]


def _plan(tiny_config, **changes):
    return plan_runs(Config.of({**tiny_config, **changes}))


def test_grids_expand_into_their_product_with_labels_that_name_the_values(tiny_config):
    plan = _plan(tiny_config, seeds=[0, 1], runs=[
        dict(algorithm="sgd", lr=grid([0.1, 0.3]), momentum=grid([0.0, 0.9])),
        dict(algorithm="adamw", label="AdamW", lr=grid([1e-3, 1e-2])),
        dict(algorithm="sgd", lr=0.05)])
    labels = [s["label"] for s in plan if s["seed"] == 0]
    assert labels == ["sgd lr=0.1 momentum=0.0", "sgd lr=0.1 momentum=0.9", "sgd lr=0.3 momentum=0.0",
                      "sgd lr=0.3 momentum=0.9", "AdamW lr=0.001", "AdamW lr=0.01", "sgd lr=0.05"]
    assert [s["seed"] for s in plan] == [0] * 7 + [1] * 7  # seeds outermost
    assert [s["index"] for s in plan] == list(range(14))
    assert [s["entry"] for s in plan[:7]] == [0, 0, 0, 0, 1, 1, 2]
    assert {s["phase"] for s in plan} == {"final"}
    assert [(s["params"]["lr"], s["params"]["momentum"]) for s in plan[:4]] == [(0.1, 0.0), (0.1, 0.9), (0.3, 0.0),
                                                                               (0.3, 0.9)]
    assert run_count(Config.of({**tiny_config, "seeds": [0, 1], "runs": tiny_config["runs"]})) == 4


def test_every_value_of_a_space_is_checked_before_anything_runs(tiny_config):
    with pytest.raises(ConfigError, match=r"runs\[0\] \(persistent_sgd\): decay=grid\(\[0.9, 1.5\]\): the value 1.5"):
        _plan(tiny_config, runs=[dict(algorithm="persistent_sgd", decay=grid([0.9, 1.5]))])
    with pytest.raises(ConfigError, match="is a tuning space: set tune=dict"):
        _plan(tiny_config, runs=[dict(algorithm="sgd", lr=loguniform(1e-3, 1.0))])
    with pytest.raises(ConfigError, match="whole value"):
        _plan(tiny_config, runs=[dict(algorithm="adamw", betas=(grid([0.8, 0.9]), 0.999))])
    with pytest.raises(ConfigError, match="search spaces are values of algorithm parameters"):
        Config.of({**tiny_config, "batch_size": grid([8, 16])})


def test_a_config_file_uses_grid_without_an_import_and_the_command_line_sets_parameters(tmp_path):
    path = tmp_path / "sweep.py"
    path.write_text(textwrap.dedent("""
        dataset = "synthetic_classification"
        runs = [dict(algorithm="adamw", lr=grid([1e-3, 1e-2])), dict(algorithm="sgd", lr=0.1),
                dict(algorithm="adamw", label="second", lr=1e-4)]
    """), encoding="utf-8")
    config = load_config(path)
    assert config.runs[0]["lr"] == grid([1e-3, 1e-2])
    config = load_config(path, ["adamw.lr=3e-3", "sgd.momentum=0.9", "tune.budget=4", "tune.sampler=random",
                                "val_split=0.1"])
    assert [r.get("lr") for r in config.runs] == [3e-3, 0.1, 3e-3]
    assert config.runs[1]["momentum"] == 0.9 and config.tune == {"budget": 4, "sampler": "random"}
    config = load_config(path, ["adamw.lr=grid([1e-4, 1e-3, 1e-2])"])
    labels = [s["label"] for s in plan_runs(config)]
    assert labels == ["adamw lr=0.0001", "adamw lr=0.001", "adamw lr=0.01", "sgd lr=0.1", "second lr=0.0001",
                      "second lr=0.001", "second lr=0.01"]
    with pytest.raises(ConfigError, match="no runs entry has algorithm 'adamww'.*Did you mean 'adamw'"):
        load_config(path, ["adamww.lr=1"])
    with pytest.raises(ConfigError, match=r"is a parameter of an algorithm.*ALGORITHM.lr=VALUE"):
        load_config(path, ["lr=0.1"])


def test_a_grid_run_equals_the_same_run_written_by_hand_bitwise(tiny_config):
    swept = copy.deepcopy(tiny_config)
    swept["runs"] = [dict(algorithm="sgd", lr=grid([0.05, 0.2]), momentum=0.9)]
    by_hand = copy.deepcopy(tiny_config)
    by_hand["runs"] = [dict(algorithm="sgd", lr=0.05, momentum=0.9), dict(algorithm="sgd", lr=0.2, momentum=0.9)]
    a, b = Experiment.create(swept), Experiment.create(by_hand)
    assert a.run() == 0 and b.run() == 0
    for got, expected in zip(a.history["runs"], b.history["runs"]):
        assert got["label"] == expected["label"] and got["params"] == expected["params"]
        for key in expected["metrics"]:
            assert np.array_equal(got["metrics"][key], expected["metrics"][key], equal_nan=True) or key == "time", key


def test_dry_run_prints_the_plan_and_creates_nothing(tmp_path):
    results = tmp_path / "results"
    path = tmp_path / "tuned.py"
    path.write_text(textwrap.dedent(f"""
        dataset = "synthetic_classification"
        dataset_args = dict(n=200, n_test=50)
        batch_size = 10
        seeds = [0, 1, 2]
        val_split = 0.25
        out_dir = {str(results)!r}
        tune = dict(budget=3, sampler="grid")
        runs = [dict(algorithm="sgd", lr=loguniform(1e-2, 1.0)), dict(algorithm="adamw", lr=1e-3)]
    """), encoding="utf-8")
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), str(path), "--dry-run"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUTF8": "1"})
    assert out.returncode == 0, out.stderr
    assert not results.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["tuned.py"]
    lines = out.stdout.splitlines()
    assert "sgd [trial 1/3] lr=0.01" in out.stdout and "lr=chosen by tuning" in out.stdout
    phases = [line.split()[1] for line in lines if line[:1].isdigit()]
    assert phases == ["tune"] * 3 + ["final"] * 6
    # 150 training examples after the split, batch 10: 15 steps per run, 9 runs
    assert "9 runs (3 tuning trials" in out.stdout and "135 planned steps" in out.stdout
    assert "50 examples held out" in out.stdout
