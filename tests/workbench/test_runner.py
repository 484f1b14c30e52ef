"""The runner and the record contract: fairness, statuses, hooks, atomic saves and exact resume."""
from __future__ import annotations

import copy
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench import record
from workbench.algorithm import Algorithm, OptimizerAlgorithm, register_algorithm
from workbench.problem import DataSplit
from workbench.registry import ALGORITHMS, DATASETS
from workbench.errors import ConfigError
from workbench.runner import Experiment, Hooks

ROOT = Path(__file__).resolve().parents[2]
SEEN: dict[str, dict] = {}  # what the probe algorithm observed, per label


if "_test_probe" not in ALGORITHMS:
    @register_algorithm("_test_probe")
    class Probe(OptimizerAlgorithm):
        """Plain SGD that remembers its initial weights and every batch it was given."""

        defaults = {"lr": 0.05, "tag": ""}

        @classmethod
        def build_optimizer(cls, parameters, lr, tag):
            return torch.optim.SGD(parameters, lr=lr)

        def __init__(self, problem, model, seed: int | None = None, **params):
            super().__init__(problem, model, seed=seed, **params)
            self.tag = self.params["tag"]
            SEEN[self.tag] = {"init": copy.deepcopy(self.model.state_dict()), "batches": []}

        def step(self, x, y):
            SEEN[self.tag]["batches"].append(x.sum().item())
            return super().step(x, y)

    @register_algorithm("_test_crash")
    class Crash(Algorithm):
        """Raises at its third step."""

        defaults = {}

        def __init__(self, problem, model, seed: int | None = None, **params):
            super().__init__(problem, model, seed=seed, **params)
            self.count = 0

        def step(self, x, y):
            self.count += 1
            if self.count == 3:
                raise RuntimeError("boom at step 3")
            return {"train_loss": 1.0}

    @register_algorithm("_test_scripted")
    class Scripted(OptimizerAlgorithm):
        """SGD with scripted incidents: from step ``inf_from`` the reported loss is infinite (as an
        overflowing run's would be); at step ``event_at`` a rare event asks for a row of its own."""

        defaults = {"lr": 0.1, "inf_from": None, "event_at": None}

        @classmethod
        def build_optimizer(cls, parameters, lr, inf_from, event_at):
            return torch.optim.SGD(parameters, lr=lr)

        def __init__(self, problem, model, seed: int | None = None, **params):
            super().__init__(problem, model, seed=seed, **params)
            self.count = 0

        def step(self, x, y):
            self.count += 1
            metrics = super().step(x, y)
            if self.params["inf_from"] is not None and self.count >= self.params["inf_from"]:
                metrics["train_loss"] = metrics["train_loss"] * math.inf
            event = self.count == self.params["event_at"]
            metrics["event"] = float(self.count) if event else math.nan
            self.wants_row = event
            return metrics

    @DATASETS.register("_test_quadratic")
    def quadratic(data_dir):
        """One example x = 1, y = 0: with a bias-free linear model F(w) = w^2, curvature 2."""
        one = torch.ones(1, 1)
        return DataSplit(one, torch.zeros(1), one, torch.zeros(1), task="regression", n_outputs=1)


def run(config, hooks=None):
    experiment = Experiment.create(config, hooks=hooks)
    code = experiment.run()
    return experiment, code


def unpickle_isolated(path: Path) -> dict:
    """Load history.pkl in a fresh interpreter that cannot import the workbench."""
    script = "import pickle, sys; h = pickle.load(open(sys.argv[1], 'rb')); print(sorted(h))"
    out = subprocess.run([sys.executable, "-I", "-c", script, str(path)], cwd=path.parent,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout)


def test_record_contract_round_trip(tiny_config):
    experiment, code = run(tiny_config)
    assert code == 0
    path = experiment.run_dir / "history.pkl"
    assert unpickle_isolated(path) == sorted(["name", "config", "created", "finished", "environment", "runs"])
    history = record.load_history(experiment.run_dir)
    assert history["name"] == "tiny" and history["finished"] is not None
    assert history["config"]["batch_size"] == 16 and history["config"]["log_every"] == 2
    assert {"python", "torch", "device", "command"} <= set(history["environment"])
    assert len(history["runs"]) == 2
    for run_record in history["runs"]:
        assert set(run_record) >= {"label", "algorithm", "params", "seed", "status", "error", "metrics", "snapshots"}
        assert run_record["status"] == "finished" and run_record["error"] is None
        metrics = run_record["metrics"]
        lengths = {len(v) for v in metrics.values()}
        assert len(lengths) == 1, "metric columns must have equal lengths"
        assert all(isinstance(v, float) for column in metrics.values() for v in column)
        steps = metrics["step"]
        assert steps[0] == 0 and steps[-1] == 12  # 2 epochs of ceil(96 / 16) = 6 steps
        assert np.isfinite(metrics["test_acc"][-1])
        assert metrics["epoch"][-1] == 2.0
    sgd = history["runs"][0]
    assert sgd["params"]["momentum"] == 0.9 and sgd["label"] == "sgd lr=0.1 momentum=0.9"
    assert sgd["summary_facts"]["eff. step"] == pytest.approx(1.0)
    assert not (experiment.run_dir / "checkpoints" / "run_000.pt").exists()  # finished runs drop theirs


def test_same_initial_weights_and_batch_order_for_every_algorithm(tiny_config):
    SEEN.clear()
    tiny_config["runs"] = [dict(algorithm="_test_probe", tag="a", lr=0.1),
                           dict(algorithm="_test_probe", tag="b", lr=0.01)]
    tiny_config["seeds"] = [3]
    run(tiny_config)
    a, b = SEEN["a"], SEEN["b"]
    for key in a["init"]:
        torch.testing.assert_close(a["init"][key], b["init"][key], rtol=0, atol=0)
    assert a["batches"] == b["batches"] and len(a["batches"]) == 12
    assert len(set(a["batches"][:6])) == 6 and a["batches"][:6] != a["batches"][6:]  # reshuffled each epoch
    tiny_config["seeds"] = [4]
    run(tiny_config)
    assert SEEN["a"]["batches"] != a["batches"], "another seed gives another batch order"


def test_divergence_and_failure_are_recorded_and_the_other_runs_go_on(tiny_config):
    tiny_config["runs"] = [dict(algorithm="_test_crash"), dict(algorithm="_test_scripted", inf_from=4),
                           dict(algorithm="sgd", lr=0.1)]
    experiment, code = run(tiny_config)
    assert code == 1
    crash, diverged, fine = experiment.history["runs"]
    assert crash["status"] == "failed" and "boom at step 3" in crash["error"] and "Traceback" in crash["error"]
    assert diverged["status"] == "diverged" and "non-finite" in diverged["error"]
    assert not math.isfinite(diverged["metrics"]["train_loss"][-1])
    assert fine["status"] == "finished"


@pytest.mark.parametrize("lr, status", [(1.4, "finished"), (1.6, "diverged")])
def test_heavy_ball_stability_bound_is_what_the_runner_records(tiny_config, lr, status):
    """PersistentSGD = heavy ball: on F(w) = w^2 (curvature 2) with decay 0.5 it converges iff
    lr * 2 < 2 (1 + 0.5), i.e. lr < 1.5; just outside, the loss overflows float32 and the run is
    recorded as diverged instead of crashing."""
    tiny_config.update(dataset="_test_quadratic", dataset_args={}, model_args=dict(hidden=[], bias=False),
                       batch_size=None, epochs=None, max_steps=600, log_every=1, dtype="float32",
                       runs=[dict(algorithm="persistent_sgd", lr=lr, decay=0.5)])
    experiment, _ = run(tiny_config)
    result = experiment.history["runs"][0]
    assert result["status"] == status
    if status == "finished":
        assert result["metrics"]["train_loss"][-1] < 1e-20


def test_unknown_algorithm_lists_the_valid_ones_and_unknown_parameter_suggests(tiny_config):
    tiny_config["runs"] = [dict(algorithm="adamww")]
    with pytest.raises(ConfigError, match=r"unknown algorithm 'adamww'. Did you mean 'adamw'\?.*sgd"):
        run(tiny_config)
    tiny_config["runs"] = [dict(algorithm="persistent_sgd", decya=0.9)]
    with pytest.raises(ConfigError, match=r"no parameter 'decya'. Did you mean 'decay'"):
        run(tiny_config)
    assert not Path(tiny_config["out_dir"]).exists() or not any(Path(tiny_config["out_dir"]).iterdir())


def test_target_and_max_time_stop_runs_as_finished(tiny_config):
    tiny_config.update(epochs=50, target=0.0, target_metric="test_loss", eval_every=1,
                       runs=[dict(algorithm="sgd", lr=0.1)])
    tiny_config["target"] = 10.0  # reached at the first evaluation
    experiment, code = run(tiny_config)
    assert code == 0 and experiment.history["runs"][0]["metrics"]["step"][-1] == 1
    tiny_config.update(target=None, max_time=0.3, epochs=None)
    experiment, code = run(tiny_config)
    assert code == 0 and experiment.history["runs"][0]["metrics"]["time"][-1] >= 0.3


def test_resume_equals_the_uninterrupted_run(tiny_config):
    tiny_config.update(epochs=3, seeds=[0, 1], runs=[dict(algorithm="sgd", lr=0.1, momentum=0.9),
                                                     dict(algorithm="adamw", lr=1e-2)])
    reference, code = run(copy.deepcopy(tiny_config))
    assert code == 0
    stop_at = {"count": 0}

    def stop_once(state):  # an interruption in the middle of an epoch of the second run
        stop_at["count"] += 1
        return stop_at["count"] == 18 + 7

    interrupted, code = run(copy.deepcopy(tiny_config), hooks=Hooks(should_stop=stop_once))
    assert code == 130
    statuses = [r["status"] for r in record.load_history(interrupted.run_dir)["runs"]]
    assert statuses == ["finished", "stopped"]
    assert (interrupted.run_dir / "checkpoints" / "run_001.pt").is_file()
    resumed = Experiment.resume(interrupted.run_dir)
    assert resumed.run() == 0
    final = record.load_history(interrupted.run_dir)
    assert len(final["runs"]) == 4 and final["finished"] is not None
    for expected, got in zip(reference.history["runs"], final["runs"]):
        assert got["status"] == "finished"
        for key in ("step", "epoch", "train_loss", "test_loss", "test_acc"):
            np.testing.assert_allclose(got["metrics"][key], expected["metrics"][key], rtol=0, atol=1e-12,
                                       equal_nan=True, err_msg=key)


def _main(args, **kwargs):
    env = {**os.environ, "PYTHONUTF8": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _long_config(tmp_path) -> list[str]:
    config = tmp_path / "long.py"
    config.write_text(textwrap.dedent("""
        dataset = "synthetic_classification"
        dataset_args = dict(n=256, d=6, classes=3)
        model_args = dict(hidden=[8])
        batch_size = 16
        epochs = None
        max_time = 60.0
        log_every = 1
        save_every = 0.05
        dtype = "float64"
        runs = [dict(algorithm="sgd", lr=0.05)]
    """), encoding="utf-8")
    return [str(config), f"out_dir={tmp_path / 'results'}", "progress=False"]


def _wait_for_rows(results: Path, rows: int, timeout: float = 60.0) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in results.glob("*/history.pkl"):
            try:
                runs = pickle.loads(path.read_bytes())["runs"]
            except Exception:  # noqa: BLE001  a torn read would fail the test below, not here
                raise
            if runs and len(runs[0]["metrics"].get("step", [])) >= rows:
                return path.parent
        time.sleep(0.05)
    raise AssertionError("the run did not write rows in time")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_kill_mid_run_leaves_a_readable_history_and_resume_continues(tmp_path):
    args = _long_config(tmp_path)
    process = _main(args)
    try:
        run_dir = _wait_for_rows(tmp_path / "results", rows=20)
        time.sleep(0.3)
    finally:
        process.kill()
        process.communicate(timeout=30)
    history = record.load_history(run_dir)  # os.replace: never half-written
    assert history["runs"][0]["status"] == "running" and history["finished"] is None
    rows_before = len(history["runs"][0]["metrics"]["step"])
    assert rows_before >= 20
    # resume from the last checkpoint, with a short budget so the test ends: stop after a few steps
    resumed = Experiment.resume(run_dir, hooks=Hooks(should_stop=lambda s: s.step >= 40 + rows_before))
    resumed.config = resumed.config.replace(max_time=3600.0)
    assert resumed.run() == 130
    steps = record.load_history(run_dir)["runs"][0]["metrics"]["step"]
    assert np.all(np.diff(steps) > 0), "rows after the checkpoint are redone, not duplicated"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_with_status_stopped_and_exit_code_130(tmp_path, signum):
    process = _main(_long_config(tmp_path))
    run_dir = _wait_for_rows(tmp_path / "results", rows=5)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "--resume" in out
    history = record.load_history(run_dir)
    assert history["runs"][0]["status"] == "stopped"
    assert (run_dir / "checkpoints" / "run_000.pt").is_file()


def test_main_cli_errors_and_list(tmp_path):
    listing = _main(["--list"]).communicate(timeout=120)[0]
    for name in ("sgd", "adamw", "persistent_sgd", "adema", "mnist", "fashion_mnist", "mlp", "cnn",
                 "experiments/default.py", "workers = 'auto':", "flush_denormal = True:", "executor = 'local':", "run_resources = {}:"):
        assert name in listing
    process = _main(["experiments/quick_synthetic.py", "epochz=1"])
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2 and "Did you mean 'epochs'" in err


def test_plot_writes_the_comparison_pngs_and_the_summary(tiny_config):
    tiny_config["seeds"] = [0, 1]
    experiment, _ = run(tiny_config)
    out = subprocess.run([sys.executable, str(ROOT / "plot.py"), "--results", tiny_config["out_dir"]],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for name in ("train_loss_steps.png", "train_loss_epochs.png", "test_loss.png", "test_accuracy.png"):
        png = experiment.run_dir / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sgd lr=0.1 momentum=0.9" in out.stdout and "finished 2" in out.stdout
    assert "±" in out.stdout  # mean ± std over the two seeds


def test_bad_hyperparameter_values_fail_before_any_training(tiny_config):
    tiny_config["runs"] = [dict(algorithm="sgd", lr=0.1), dict(algorithm="adema", decay=1.0)]
    with pytest.raises(ConfigError, match=r"runs\[1\] \(adema\): .*decay"):
        run(tiny_config)


def test_a_step_can_ask_for_a_row_of_its_own(tiny_config):
    tiny_config.update(log_every=4, eval_every=6, runs=[dict(algorithm="_test_scripted", event_at=5)])
    experiment, _ = run(tiny_config)
    metrics = experiment.history["runs"][0]["metrics"]
    assert 5.0 in metrics["step"] and "wants_row" not in metrics
    assert metrics["event"][list(metrics["step"]).index(5.0)] == 5.0
    assert metrics["step"][:4].tolist() == [0.0, 4.0, 5.0, 6.0]  # 6: epoch end (96 / 16)


def test_missing_dataset_files_fail_before_a_run_folder_exists(tiny_config, tmp_path):
    tiny_config.update(dataset="mnist", dataset_args={}, data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="MNIST_DIR"):
        run(tiny_config)
    assert not Path(tiny_config["out_dir"]).exists() or not any(Path(tiny_config["out_dir"]).iterdir())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the plots are drawn before the exit without os.fork")
def test_main_prints_the_summary_exits_and_a_child_draws_the_plots(tmp_path):
    """The exit status does not wait for the figures: main.py says where a child draws them; the
    child keeps the output streams, so reading them to the end also waits for its plot lines."""
    results = tmp_path / "results"
    log = tmp_path / "out.txt"
    with open(log, "w", encoding="utf-8") as out:  # a file, not a pipe: communicate waits for main.py alone
        process = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "quick_synthetic", "epochs=1",
                                    "seeds=[0]", f"out_dir={results}", "progress=False"],
                                   cwd=ROOT, stdout=out, stderr=subprocess.PIPE, text=True)
        _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    (run_dir,) = results.iterdir()
    names = ("train_loss_steps.png", "train_loss_epochs.png", "test_loss.png", "test_accuracy.png")
    deadline = time.time() + 120
    while not all((run_dir / n).is_file() for n in names) or "test_accuracy.png" not in log.read_text("utf-8"):
        assert time.time() < deadline, log.read_text("utf-8")
        time.sleep(0.1)
    text = log.read_text("utf-8")
    assert text.index("finished") < text.index("plots: drawn in the background") < text.index("plot: ")
    piped = _main(["quick_synthetic", "epochs=1", "seeds=[0]", f"out_dir={tmp_path / 'piped'}", "progress=False"])
    out, err = piped.communicate(timeout=300)
    assert piped.returncode == 0, err
    assert all(f"{n}" in out for n in names)


if "_test_counter" not in ALGORITHMS:
    @register_algorithm("_test_counter")
    class Counter(Algorithm):
        """Reports its step number as the training loss (and trains nothing)."""

        defaults = {}

        def __init__(self, problem, model, seed: int | None = None, **params):
            super().__init__(problem, model, seed=seed, **params)
            self.count = 0

        def step(self, x, y):
            self.count += 1
            return {"train_loss": float(self.count)}


def test_every_training_loss_point_averages_log_every_steps(tiny_config):
    """Losses 1, 2, 3, ...: a point at step s over the window (s-4, s] is s - 1.5; the epoch ends
    (steps 6 and 12 of 6-step epochs) and evaluations get rows without a training loss; the last
    row (step 14, max_steps) averages the two steps since step 12."""
    tiny_config.update(log_every=4, epochs=None, max_steps=14, eval_every=None, runs=[dict(algorithm="_test_counter")])
    experiment, _ = run(tiny_config)
    metrics = experiment.history["runs"][0]["metrics"]
    with_loss = ~np.isnan(metrics["train_loss"])
    assert metrics["step"][with_loss].tolist() == [4.0, 8.0, 12.0, 14.0]
    assert metrics["train_loss"][with_loss].tolist() == [2.5, 6.5, 10.5, 13.5]
    assert {6.0, 12.0} <= set(metrics["step"][~np.isnan(metrics["test_loss"])].tolist())
    assert 6.0 in metrics["step"] and np.isnan(metrics["train_loss"][metrics["step"].tolist().index(6.0)])
