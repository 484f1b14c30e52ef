"""Many runs at once: worker processes and Ray give the numbers of one process, one record written
by the driver alone, resume across executors, Ctrl-C, lost workers and bad execution settings.

The Ray tests use one local Ray instance for the module (num_cpus=2, no dashboard). They are
skipped only where Ray is not installed, and never in CI (CI=true), where a missing Ray fails.
"""
from __future__ import annotations

import copy
import os
import pickle
import shutil
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
from workbench.errors import ConfigError
from workbench.runner import Experiment

ROOT = Path(__file__).resolve().parents[2]
RUNS = [dict(algorithm="sgd", lr=0.1, momentum=0.9), dict(algorithm="adamw", lr=1e-2),
        dict(algorithm="persistent_sgd", lr=0.05, decay=0.9)]

try:
    import ray
except ImportError:
    ray = None
    if os.environ.get("CI"):
        raise RuntimeError("Ray is not installed, but CI must run the Ray tests: ./setup.sh --with-ray")

needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed (./setup.sh --with-ray)")


@pytest.fixture(scope="module")
def local_ray():
    if ray is None:
        pytest.skip("Ray is not installed")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield ray
    ray.shutdown()


def _config(tiny_config, **changes):
    config = copy.deepcopy(tiny_config)
    config.update(runs=copy.deepcopy(RUNS), seeds=[0, 1], threads=1, log_every=1, snapshot_every=0)
    config.update(changes)
    return config


def _run(config, **kwargs):
    experiment = Experiment.create(config, **kwargs)
    return experiment, experiment.run()


def _assert_same_numbers(got: dict, expected: dict):
    assert [r["label"] for r in got["runs"]] == [r["label"] for r in expected["runs"]]
    for a, b in zip(got["runs"], expected["runs"], strict=True):
        assert a["status"] == b["status"] == "finished"
        assert set(a["metrics"]) == set(b["metrics"])
        for key in a["metrics"]:
            if key != "time":  # wall time is the only column allowed to differ
                assert np.array_equal(a["metrics"][key], b["metrics"][key], equal_nan=True), (a["label"], key)
        assert a["seed"] == b["seed"] and a["params"] == b["params"]


@pytest.mark.parametrize("dtype, method", [("float64", "fork"), ("float32", "fork"), ("float64", "spawn")])
def test_worker_processes_give_the_numbers_of_one_process(tiny_config, dtype, method, monkeypatch):
    """fork is what Linux uses for CPU runs with one thread each; spawn is Windows' and macOS's
    (and Linux's with CUDA or several threads per run): both must give the same numbers."""
    from workbench import executors
    from workbench.problem import cpu_can_flush

    assert executors.start_method(_config(tiny_config, workers=2), torch.device("cpu")) == (
        "fork" if sys.platform.startswith("linux") else "spawn")
    monkeypatch.setattr(executors, "start_method", lambda config, device: method)
    one, code = _run(_config(tiny_config, dtype=dtype))
    assert code == 0
    two, code = _run(_config(tiny_config, dtype=dtype, workers=2))
    assert code == 0
    _assert_same_numbers(record.load_history(two.run_dir), record.load_history(one.run_dir))
    runs = record.load_history(two.run_dir)["runs"]
    assert {r["where"]["executor"] for r in runs} == {"worker process"}
    assert len({r["where"]["pid"] for r in runs}) == 2 and os.getpid() not in {r["where"]["pid"] for r in runs}
    assert {r["where"]["device"] for r in runs} == {"cpu"}
    assert record.load_history(one.run_dir)["runs"][0]["where"]["pid"] == os.getpid()
    env = record.load_history(two.run_dir)["environment"]["execution"]
    assert env == {"executor": "worker processes", "workers": 2, "threads_per_run": 1,
                   "flush_denormal": cpu_can_flush()}


@needs_ray
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ray_tasks_give_the_numbers_of_one_process(tiny_config, local_ray, dtype):
    one, _ = _run(_config(tiny_config, dtype=dtype))
    rayed, code = _run(_config(tiny_config, dtype=dtype, executor="ray"))
    assert code == 0
    history = record.load_history(rayed.run_dir)
    _assert_same_numbers(history, record.load_history(one.run_dir))
    assert {r["where"]["executor"] for r in history["runs"]} == {"ray task"}
    assert os.getpid() not in {r["where"]["pid"] for r in history["runs"]}


@needs_ray
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ray_tasks_give_the_stacked_numbers_of_one_process(tiny_config, local_ray, dtype):
    """A stack is one Ray task (its resources the sum of its members', capped at a node's); its
    members' numbers are those of the same stack in this process, bit for bit."""
    one, _ = _run(_config(tiny_config, dtype=dtype, stack=True))
    rayed, code = _run(_config(tiny_config, dtype=dtype, stack=True, executor="ray"))
    assert code == 0
    history = record.load_history(rayed.run_dir)
    _assert_same_numbers(history, record.load_history(one.run_dir))
    assert [r["where"]["stack"]["runs"] for r in history["runs"]] == [[0, 3], [1, 4], [2, 5]] * 2
    assert {r["where"]["executor"] for r in history["runs"]} == {"ray task"}


def test_stack_resources_sum_the_members_up_to_the_largest_node():
    from workbench.ray_executor import stack_resources

    assert stack_resources({"num_cpus": 1, "num_gpus": 0.25}, 8, {"CPU": 4.0, "GPU": 1.0}) == {"num_cpus": 4.0,
                                                                                              "num_gpus": 1.0}
    assert stack_resources({"num_cpus": 1}, 3, {"CPU": 16.0}) == {"num_cpus": 3}


def test_snapshots_travel_back_with_the_rows(tiny_config):
    config = _config(tiny_config, snapshot_every=3, model="growing_mlp", model_args=dict(hidden_size=2),
                     seeds=[0], runs=[dict(algorithm="growth", method="random", grow_every=4,
                                           statistics_samples=32, target_width=10,
                                           optimizer_args=dict(lr=0.05))])
    one, _ = _run(config)
    two, _ = _run({**config, "seeds": [0, 1], "workers": 2})
    a, b = record.load_history(one.run_dir)["runs"][0], record.load_history(two.run_dir)["runs"][0]
    assert a["snapshots"]["step"] == b["snapshots"]["step"] and len(a["snapshots"]["step"]) > 2
    assert a["snapshots"]["widths"] == b["snapshots"]["widths"]
    assert a["snapshots"]["widths"][-1] != a["snapshots"]["widths"][0]  # it grew


def _long_config(tmp_path, max_steps=1500, runs=2) -> Path:
    config = tmp_path / "long.py"
    config.write_text(textwrap.dedent(f"""
        dataset = "synthetic_classification"
        dataset_args = dict(n=512, d=6, classes=3, seed=2)
        model_args = dict(hidden=[16])
        batch_size = 16
        epochs = None
        max_steps = {max_steps}
        log_every = 10
        save_every = 0.2
        dtype = "float64"
        threads = 1
        seeds = [0]
        runs = {[dict(algorithm="sgd", lr=0.01 * (k + 1)) for k in range(runs)]!r}
    """), encoding="utf-8")
    return config


def _main(args):
    env = {**os.environ, "PYTHONUTF8": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _history_when(results: Path, predicate, timeout=120.0) -> tuple[Path, dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in results.glob("*/history.pkl"):
            history = pickle.loads(path.read_bytes())  # never torn: written atomically
            if predicate(history):
                return path.parent, history
        time.sleep(0.05)
    raise AssertionError("the record never reached the expected state")


def _rows(history, index):
    runs = history["runs"]
    return len(runs[index]["metrics"].get("step", [])) if index < len(runs) else 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_every_worker_and_resume_with_one_worker_gives_the_same_numbers(tmp_path):
    config = _long_config(tmp_path)
    results = tmp_path / "results"
    process = _main([str(config), f"out_dir={results}", "progress=False", "workers=2"])
    # rows of both runs reach the record while they train (live curves for plot.py)
    run_dir, live = _history_when(results, lambda h: _rows(h, 0) > 20 and _rows(h, 1) > 20)
    # the workers are paused while the driver takes the Ctrl-C and sends them "stop": a run cannot
    # finish before the signal, however fast this machine is (a run checks for a stop before it
    # ends, also at its last step)
    workers = [run["where"]["pid"] for run in live["runs"]]
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    paused = pickle.loads((run_dir / "history.pkl").read_bytes())
    assert all(r["status"] == "running" for r in paused["runs"])
    process.send_signal(signal.SIGINT)
    time.sleep(1.0)  # the driver's loop sends "stop" within 0.25 s
    for pid in workers:
        os.kill(pid, signal.SIGCONT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    history = record.load_history(run_dir)
    assert [r["status"] for r in history["runs"]] == ["stopped", "stopped"]
    assert all((run_dir / "checkpoints" / f"run_{i:03d}.pt").is_file() for i in range(2))
    resumed = _main(["--resume", str(run_dir), "workers=1", "progress=False"])
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    reference = _main([str(config), f"out_dir={tmp_path / 'reference'}", "progress=False"])
    assert reference.communicate(timeout=300)[0] and reference.returncode == 0
    ref_dir = next((tmp_path / "reference").glob("*/history.pkl")).parent
    _assert_same_numbers(record.load_history(run_dir), record.load_history(ref_dir))
    assert not list((run_dir / "checkpoints").glob("*.pt"))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_killed_worker_is_trained_again_from_its_checkpoint_and_the_others_go_on(tmp_path):
    config = _long_config(tmp_path, max_steps=2500)
    results = tmp_path / "results"
    process = _main([str(config), f"out_dir={results}", "progress=False", "workers=2"])
    checkpoint = {}

    def checkpointed(h):  # rows on record and a checkpoint to retrain from
        found = list(results.glob("*/checkpoints/run_001.pt"))
        return _rows(h, 1) > 30 and bool(found) and checkpoint.setdefault("path", found[0]) is not None
    run_dir, history = _history_when(results, checkpointed)
    victim = history["runs"][1]["where"]["pid"]
    os.kill(victim, signal.SIGSTOP)  # frozen mid-run: it cannot finish before the kill, however fast
    frozen = pickle.loads((run_dir / "history.pkl").read_bytes())
    assert frozen["runs"][1]["status"] == "running" and _rows(frozen, 1) < 250, "the run ended before the kill"
    os.kill(victim, signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert f"worker process {victim} was killed by signal SIGKILL" in err and "training it again" in err
    final = record.load_history(run_dir)
    assert [r["status"] for r in final["runs"]] == ["finished", "finished"]
    assert final["runs"][1]["where"]["pid"] != victim
    reference = _main([str(config), f"out_dir={tmp_path / 'reference'}", "progress=False"])
    reference.communicate(timeout=300)
    ref_dir = next((tmp_path / "reference").glob("*/history.pkl")).parent
    _assert_same_numbers(final, record.load_history(ref_dir))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_killed_worker_trains_its_stack_again_from_the_checkpoints_and_the_other_stack_goes_on(tmp_path):
    config = _long_config(tmp_path, max_steps=2500, runs=4)
    results = tmp_path / "results"
    process = _main([str(config), f"out_dir={results}", "progress=False", "workers=2", "stack=True", "stack_size=2"])

    def checkpointed(h):  # both members of the second stack checkpointed, with rows on record
        return _rows(h, 3) > 30 and len(list(results.glob("*/checkpoints/run_00[23].pt"))) == 2
    run_dir, history = _history_when(results, checkpointed)
    assert history["runs"][2]["where"]["stack"]["runs"] == [2, 3]
    victim = history["runs"][2]["where"]["pid"]
    os.kill(victim, signal.SIGSTOP)
    frozen = pickle.loads((run_dir / "history.pkl").read_bytes())
    assert frozen["runs"][3]["status"] == "running" and _rows(frozen, 3) < 250, "the stack ended before the kill"
    os.kill(victim, signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert err.count(f"worker process {victim} was killed by signal SIGKILL") == 2 and "training it again" in err
    final = record.load_history(run_dir)
    assert [r["status"] for r in final["runs"]] == ["finished"] * 4
    assert final["runs"][2]["where"]["pid"] != victim and final["runs"][2]["where"]["stack"]["runs"] == [2, 3]
    reference = _main([str(config), f"out_dir={tmp_path / 'reference'}", "progress=False", "stack=True",
                       "stack_size=2", "workers=1"])
    reference.communicate(timeout=300)
    ref_dir = next((tmp_path / "reference").glob("*/history.pkl")).parent
    _assert_same_numbers(final, record.load_history(ref_dir))


def test_a_run_lost_twice_is_failed_with_how_to_resume_and_resume_trains_it(tiny_config, capsys):
    experiment = Experiment.create(_config(tiny_config, seeds=[0], runs=RUNS[:1]))  # progress=False
    experiment.prepare(0)
    assert experiment.lost(0, "worker process 123 was killed by signal SIGKILL (exit code -9)") is True
    assert experiment.lost(0, "worker process 124 was killed by signal SIGKILL (exit code -9)") is False
    assert "failed: worker process 124 was killed" in capsys.readouterr().err  # not only in the record
    run = record.load_history(experiment.run_dir)["runs"][0]
    assert run["status"] == "failed" and "SIGKILL" in run["error"]
    assert f"--resume {experiment.run_dir}" in run["error"] and "the other runs went on" in run["error"]
    resumed = Experiment.resume(experiment.run_dir)
    assert resumed.run() == 0
    assert record.load_history(experiment.run_dir)["runs"][0]["status"] == "finished"


@needs_ray
def test_a_record_of_worker_processes_resumes_under_ray(tiny_config, local_ray):
    short = dict(epochs=400, seeds=[0], runs=RUNS[:2])  # 2400 steps a run: the stop lands mid-run
    config = _config(tiny_config, workers=2, **short)
    reference, _ = _run(_config(tiny_config, **short))
    stops = {"n": 0}

    def stop_after_some_rows(view):
        stops["n"] += 1
        return stops["n"] == 40

    from workbench.runner import Hooks

    interrupted, code = _run(config, hooks=Hooks(should_stop=stop_after_some_rows))
    assert code == 130
    statuses = [r["status"] for r in record.load_history(interrupted.run_dir)["runs"]]
    assert statuses == ["stopped", "stopped"]
    resumed = Experiment.resume(interrupted.run_dir, execution=dict(executor="ray", workers=1))
    assert resumed.run() == 0
    _assert_same_numbers(record.load_history(interrupted.run_dir), record.load_history(reference.run_dir))


@pytest.mark.parametrize("changes, message", [
    (dict(workers=0), "workers must be a positive integer"),
    (dict(workers=-2), "workers must be a positive integer"),
    (dict(workers="many"), "workers must be a positive integer"),
    (dict(executor="slurm"), "executor must be one of 'local', 'ray'"),
    (dict(run_resources=dict(num_gpus=-1)), "run_resources must map"),
])
def test_bad_execution_settings_are_config_errors(tiny_config, changes, message):
    from workbench.config import Config

    with pytest.raises(ConfigError, match=message):
        Config.of({**_config(tiny_config), **changes})


def test_execution_overrides_are_type_checked(tmp_path):
    from workbench.config import load_config

    config = load_config(ROOT / "experiments" / "quick_synthetic.py", ["workers=2", "executor=ray"])
    assert config["workers"] == 2 and config["executor"] == "ray"
    assert load_config(ROOT / "experiments" / "quick_synthetic.py", ["workers=auto"])["workers"] == "auto"
    with pytest.raises(ConfigError, match="workers must be"):
        load_config(ROOT / "experiments" / "quick_synthetic.py", ["workers=1.5"])


def test_workers_auto_is_cores_over_threads(tiny_config, monkeypatch):
    from workbench.execution import resolved_workers, threads_per_run

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert resolved_workers({**tiny_config, "workers": "auto", "threads": 2}) == 4
    assert resolved_workers({**tiny_config, "workers": "auto", "threads": None}) == 8
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert resolved_workers({**tiny_config, "workers": "auto", "threads": 4}) == 1
    assert threads_per_run({**tiny_config, "workers": 3, "threads": None, "executor": "local"}) == 1
    assert threads_per_run({**tiny_config, "workers": 1, "threads": None, "executor": "local"}) is None


def test_ray_missing_fails_before_a_run_folder_with_the_install_command(tiny_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    config = _config(tiny_config, executor="ray")
    with pytest.raises(ConfigError, match=r"setup.sh --with-ray"):
        Experiment.create(config)
    assert not Path(config["out_dir"]).exists()


@needs_ray
def test_unreachable_ray_address_fails_within_seconds(tiny_config):
    config = _config(tiny_config, executor="ray", ray_address="ray://127.0.0.1:9")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"cannot reach 127.0.0.1:9"):
        Experiment.create(config)
    assert time.perf_counter() - start < 10
    assert not Path(config["out_dir"]).exists()


def test_resume_accepts_only_execution_overrides(tmp_path):
    process = _main(["--resume", str(tmp_path), "epochs=3"])
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2 and "only workers, executor" in err


def test_a_lost_run_restarts_from_its_checkpoint_when_its_rows_are_on_record(tiny_config):
    from workbench.runner import Hooks

    config = _config(tiny_config, seeds=[0], runs=RUNS[:1], epochs=20)
    experiment = Experiment.create(config, hooks=Hooks(should_save=lambda s: s.step % 8 == 0,
                                                       should_stop=lambda s: s.step >= 20))
    assert experiment.run() == 130
    rows = len(experiment.record.tables[0])
    experiment.history["runs"][0]["metrics"] = {}  # mid-run, the rows live in the tables only
    spec, checkpoint = experiment.prepare(0)
    assert checkpoint is not None, "the retrained run continues from its checkpoint"
    assert 0 < len(experiment.record.tables[0]) <= rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_exit_quietly_within_seconds_when_the_driver_is_killed(tmp_path, method):
    """kill -9 of main.py: every worker process ends on its own (its pipe to the driver closes, or
    it finds itself re-parented), without a traceback, whatever the start method."""
    config = _long_config(tmp_path, max_steps=10 ** 7)  # they would train for hours
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONUTF8": "1"}
    code = (f"import sys; sys.argv = ['main.py', {str(config)!r}, 'out_dir={results}', 'progress=False', "
            f"'workers=2']; sys.path.insert(0, {str(ROOT)!r})\n"
            "from workbench import executors\n"
            f"executors.start_method = lambda config, device: {method!r}\n"
            "import main; sys.exit(main.main())")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    _, live = _history_when(results, lambda h: _rows(h, 0) > 5 and _rows(h, 1) > 5)
    workers = [run["where"]["pid"] for run in live["runs"]]
    assert process.pid not in workers and all(_alive(pid) for pid in workers)
    process.kill()
    deadline = time.time() + 20
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert survivors == [], "workers outlived their driver"
    _, err = process.communicate(timeout=30)
    assert "Traceback" not in err, err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("workers", [1, 2])
def test_two_ctrl_c_in_quick_succession_end_with_130_and_a_resumable_record(tmp_path, workers):
    """The second Ctrl-C lands while the runs stop, while the record is written or while the
    interpreter exits: always exit code 130, no traceback, every run stopped and resumable."""
    config = _long_config(tmp_path, max_steps=10 ** 7)
    for k, delay in enumerate((0.05, 0.3, 1.0)):
        results = tmp_path / f"results{k}"
        process = _main([str(config), f"out_dir={results}", "progress=False", f"workers={workers}", "--no-plot"])
        run_dir, _ = _history_when(results, lambda h: all(_rows(h, i) > 5 for i in range(workers)))
        process.send_signal(signal.SIGINT)
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 130 and "Traceback" not in err, (delay, process.returncode, err)
        assert {r["status"] for r in record.load_history(run_dir)["runs"]} == {"stopped"}, delay
        assert len(list((run_dir / "checkpoints").glob("run_*.pt"))) == workers  # resumable from there


@needs_ray
def test_a_failed_ray_connection_on_resume_leaves_no_lock_and_one_line(tiny_config, capsys):
    from workbench.runner import Hooks

    experiment = Experiment.create(_config(tiny_config, seeds=[0], runs=RUNS[:1]),
                                   hooks=Hooks(should_stop=lambda state: state.step >= 4))
    assert experiment.run() == 130
    with pytest.raises(ConfigError) as failure:
        Experiment.resume(experiment.run_dir, execution=dict(executor="ray", ray_address="127.0.0.1:9"))
    assert "\n" not in str(failure.value) and "127.0.0.1:9" in str(failure.value)
    assert not (experiment.run_dir / record.LOCK).exists()
    assert Experiment.resume(experiment.run_dir).run() == 0  # nothing stale blocks the next resume


@needs_ray
def test_a_ray_that_cannot_start_is_one_line_without_colours_and_no_folder(tiny_config, monkeypatch):
    from workbench import ray_executor

    def broken_init(**options):
        assert options["address"] == "local"  # never whatever cluster runs on this machine
        raise RuntimeError("\x1b[31mFailed to start the GCS\x1b[0m\n  a long story\n  on many lines")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", broken_init)
    config = _config(tiny_config, executor="ray")
    with pytest.raises(ConfigError) as failure:
        Experiment.create(config)
    message = str(failure.value)
    assert message == "could not start Ray (ray_address=None): RuntimeError: Failed to start the GCS"
    assert not Path(config["out_dir"]).exists()
    auth = ray_executor._ray_failure("10.0.0.1:6379", ConnectionError("timed out"))
    assert "RAY_AUTH_MODE" in auth and "\n" not in auth


@needs_ray
@pytest.mark.slow
def test_no_ray_address_starts_a_local_ray_even_beside_a_running_cluster(tmp_path):
    """A `ray start` cluster on this machine is what Ray joins when given no address; the
    workbench's ray_address=None starts its own instance instead (its code on PYTHONPATH)."""
    import socket as _socket

    import psutil

    import tempfile

    # its own Ray folder (ray_current_cluster there, not in /tmp/ray), short: Ray's socket paths
    # must stay within the 107 characters of a Unix socket name
    ray_tmp = Path(tempfile.mkdtemp(prefix="wbray", dir="/tmp"))
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "PYTHONUTF8": "1"}
    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_cli = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray_cli), "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                    "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)
    try:
        config = _long_config(tmp_path, max_steps=20)
        out = subprocess.run([sys.executable, str(ROOT / "main.py"), str(config), f"out_dir={tmp_path / 'r'}",
                              "progress=False", "executor=ray", "--no-plot"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        history = record.load_history(next((tmp_path / "r").iterdir()))
        execution = history["environment"]["execution"]
        assert execution["ray_started_here"] and not execution["ray_gcs_address"].endswith(f":{port}")
        assert all(run["where"]["ray_node"] for run in history["runs"])
    finally:
        for process in psutil.process_iter(["cmdline"]):
            if any(str(ray_tmp) in part for part in (process.info["cmdline"] or [])):
                process.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)


@needs_ray
def test_a_killed_ray_mailbox_retrains_the_runs_in_flight_and_the_experiment_goes_on(tiny_config, local_ray,
                                                                                      capfd):
    """kill -9 of the mailbox actor's process (the one that carries messages to the driver): the
    runs in flight train again from their last checkpoint on the record, a new mailbox takes over,
    and the record equals an uninterrupted run's."""
    from workbench.runner import Hooks

    # 9000 steps: a row of step 600 reaches the driver (every 0.5 s) while its run has thousands of
    # steps to go, however fast or loaded the machine (the kill must find the runs in flight)
    short = dict(epochs=1500, seeds=[0], runs=RUNS[:2], save_every=0.2, log_every=50)
    reference, _ = _run(_config(tiny_config, **short))
    killed = {}

    def kill_the_mailbox(view, row):
        if view.step >= 600 and not killed:
            killed["pid"] = ray.get(experiment.executor.mailbox.pid.remote())
            os.kill(killed["pid"], signal.SIGKILL)
    experiment = Experiment.create(_config(tiny_config, executor="ray", workers=2, **short),
                                   hooks=Hooks(on_log=kill_the_mailbox))
    assert experiment.run() == 0
    assert killed, "the mailbox was killed mid-run"
    assert "mailbox (an actor on the driver's node) was lost" in capfd.readouterr().err
    history = record.load_history(experiment.run_dir)
    _assert_same_numbers(history, record.load_history(reference.run_dir))


@needs_ray
@pytest.mark.slow
def test_a_two_node_ray_cluster_trains_runs_on_both_nodes_with_the_numbers_of_one_process(tmp_path, tiny_config):
    """`ray start --head` and a second `ray start --address` on this machine (one CPU each, their own
    temp folders), main.py joining with ray_address="auto": the code travels as Ray's working_dir,
    both nodes train runs, the record names each run's node, and equals a workers=1 record bitwise.
    About 20 s on this project's 2-core machine (3 Ray processes per node, about 1 GB in all)."""
    import socket as _socket
    import tempfile

    import psutil

    head_tmp = Path(tempfile.mkdtemp(prefix="wbhead", dir="/tmp"))
    node_tmp = Path(tempfile.mkdtemp(prefix="wbnode", dir="/tmp"))
    # Ray 2.59+ protects clusters with a token (~/.ray/auth_token): every node and main.py ask for it
    env = {**os.environ, "RAY_TMPDIR": str(head_tmp), "PYTHONUTF8": "1", "RAY_AUTH_MODE": "token"}
    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_cli = str(Path(sys.executable).with_name("ray"))
    common = ["--num-cpus=1", "--disable-usage-stats"]
    try:
        subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false", *common], env=env,
                       check=True, capture_output=True, timeout=120)
        address = (head_tmp / "ray" / "ray_current_cluster")
        address = address.read_text().strip() if address.is_file() else f"127.0.0.1:{port}"
        subprocess.run([ray_cli, "start", f"--address={address}", *common], env={**env, "RAY_TMPDIR": str(node_tmp)},
                       check=True, capture_output=True, timeout=120)
        config = _long_config(tmp_path, max_steps=1500, runs=4)
        out = subprocess.run([sys.executable, str(ROOT / "main.py"), str(config), f"out_dir={tmp_path / 'r'}",
                              "progress=False", "executor=ray", "ray_address=auto", "--no-plot"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        history = record.load_history(next((tmp_path / "r").iterdir()))
        nodes = {run["where"]["ray_node"] for run in history["runs"]}
        assert len(nodes) == 2, nodes  # both nodes trained runs
        assert not history["environment"]["execution"]["ray_started_here"]
    finally:
        for process in psutil.process_iter(["cmdline"]):
            if any(str(head_tmp) in part or str(node_tmp) in part for part in (process.info["cmdline"] or [])):
                process.kill()
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(node_tmp, ignore_errors=True)
    reference = _main([str(config), f"out_dir={tmp_path / 'ref'}", "progress=False", "workers=1", "--no-plot"])
    assert reference.communicate(timeout=300)[0] and reference.returncode == 0
    _assert_same_numbers(history, record.load_history(next((tmp_path / "ref").iterdir())))


@needs_ray
def test_tuning_with_ray_makes_the_choices_of_one_process(tiny_config, local_ray):
    from tests.workbench.test_tuning import assert_same_tuning, tuned_config

    one, _ = _run(tuned_config(tiny_config))
    rayed, code = _run({**tuned_config(tiny_config), "executor": "ray"})
    assert code == 0
    assert_same_tuning(record.load_history(one.run_dir), record.load_history(rayed.run_dir))


@needs_ray
def test_a_users_optimizer_file_trains_in_ray_tasks_with_the_numbers_of_one_process(tmp_path, local_ray):
    from tests.workbench.test_plugins import _files

    from workbench.config import load_config

    path = _files(tmp_path)
    one, _ = _run(load_config(path))
    rayed, code = _run(load_config(path, ["executor=ray"]))
    assert code == 0
    _assert_same_numbers(record.load_history(rayed.run_dir), record.load_history(one.run_dir))
    assert {r["where"]["executor"] for r in record.load_history(rayed.run_dir)["runs"]} == {"ray task"}
