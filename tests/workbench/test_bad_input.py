"""Bad input and bad disks: a clear message on stderr that names the problem and the fix, exit
code 2, no traceback, no run folder, nothing already recorded lost."""
from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import main  # noqa: E402
import plot  # noqa: E402
from workbench import mnist_files, record  # noqa: E402
from workbench.config import APP_FOLDER, app_path, load_config  # noqa: E402
from workbench.errors import ConfigError  # noqa: E402
from workbench.problem import load_data  # noqa: E402
from workbench.runner import Experiment, NothingToResume  # noqa: E402

QUICK = """
dataset = "synthetic_classification"
dataset_args = dict(n=64, n_test=32, d=4, classes=2, seed=0)
model_args = dict(hidden=[4])
batch_size = 16
epochs = 1
dtype = "float64"
progress = False
runs = [dict(algorithm="sgd", lr=0.1)]
"""


def _config(tmp_path, text: str = QUICK, name: str = "quick") -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _run_main(capsys, *args) -> tuple[int, str, str]:
    code = main.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _rejected(capsys, tmp_path, *args, expect: tuple[str, ...]) -> str:
    results = tmp_path / "results"
    code, out, err = _run_main(capsys, *args, f"out_dir={results}")
    assert code == 2, (out, err)
    assert "Traceback" not in err + out
    for text in expect:
        assert text in err, (text, err)
    assert not results.exists() or not any(results.iterdir()), "no run folder for a rejected config"
    return err


def test_a_misspelled_model_argument_names_the_closest_before_any_folder(tmp_path, capsys):
    config = _config(tmp_path, QUICK.replace("model_args = dict(hidden=[4])", "model_args = dict(hiden=[4])"))
    _rejected(capsys, tmp_path, config, expect=("'hiden'", "Did you mean 'hidden'", "model_args"))


def test_a_config_that_raises_names_its_line(tmp_path, capsys):
    config = _config(tmp_path, QUICK + "epochs = 1 / 0\n")
    _rejected(capsys, tmp_path, config, expect=(str(config), "line 10", "ZeroDivisionError"))
    broken = _config(tmp_path, QUICK + "runs = [dict(algorithm='sgd'\n", name="broken")
    _rejected(capsys, tmp_path, broken, expect=("line", "SyntaxError"))


@pytest.mark.parametrize("override, expect", [
    ("lr=0.1", ("parameter of an algorithm", "inside `runs`", 'runs=[dict(algorithm="sgd", lr=...)]')),
    ("seeds=3", ("seeds=[3]", "list(range(3))")),
    ("seeds=[0, 0]", ("repeat [0]", "distinct")),
    ("runs=[{'algorithm': 'sgd', 'lr': '0.1'}]", ("lr must be a number", "lr=0.1 without quotes")),
])
def test_poor_values_get_messages_that_say_the_fix(tmp_path, capsys, override, expect):
    _rejected(capsys, tmp_path, _config(tmp_path), override, expect=expect)


def test_a_truncated_idx_file_is_named_with_the_fix(tmp_path, capsys):
    data = tmp_path / "data" / "MNIST" / "raw"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem, n in (("train", 60000), ("t10k", 10000)):
        mnist_files.write_idx(data / f"{stem}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
        mnist_files.write_idx(data / f"{stem}-images-idx3-ubyte", np.zeros((8, 28, 28), np.uint8))
    images = data / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])  # a download cut short
    config = _config(tmp_path, QUICK.replace('"synthetic_classification"', '"mnist"')
                     .replace("dataset_args = dict(n=64, n_test=32, d=4, classes=2, seed=0)", ""))
    _rejected(capsys, tmp_path, config, f"data_dir={tmp_path / 'data'}",
              expect=("train-images-idx3-ubyte", "truncated", "fresh copy"))


def test_an_unwritable_out_dir_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, out, err = _run_main(capsys, _config(tmp_path), f"out_dir={blocker / 'results'}")
    assert code == 2 and "cannot write run folders in" in err and "writable out_dir" in err
    assert "Traceback" not in err


def _finished_record(tmp_path, capsys) -> Path:
    code, out, _ = _run_main(capsys, _config(tmp_path), f"out_dir={tmp_path / 'results'}", "--no-plot")
    assert code == 0
    return record.latest_run_dir(tmp_path / "results")


def test_resume_of_a_read_only_record_fails_before_training(tmp_path, capsys, monkeypatch):
    run_dir = _finished_record(tmp_path, capsys)
    history = record.load_history(run_dir)
    history["runs"][0]["status"], history["finished"] = "stopped", None
    record.save_history(run_dir, history)
    real_open = os.open

    def read_only(path, flags, *args):
        if flags & os.O_CREAT:
            raise OSError(30, "Read-only file system", str(path))
        return real_open(path, flags, *args)
    monkeypatch.setattr(os, "open", read_only)
    code, out, err = _run_main(capsys, "--resume", run_dir)
    assert code == 2 and "cannot write in" in err and "Read-only file system" in err and "copy it" in err
    monkeypatch.undo()
    assert record.load_history(run_dir)["runs"][0]["status"] == "stopped"


def test_resume_of_a_finished_record_changes_nothing(tmp_path, capsys):
    run_dir = _finished_record(tmp_path, capsys)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    code, out, err = _run_main(capsys, "--resume", run_dir)
    assert code == 0 and "nothing to resume" in out and "1 finished" in out, err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("content", [b"", b"garbage that is no pickle", None])
def test_resume_of_an_unreadable_record_or_a_config_file(tmp_path, capsys, content):
    if content is None:
        code, out, err = _run_main(capsys, "--resume", _config(tmp_path))
        assert code == 2 and "takes a run folder" in err and "python main.py" in err
        return
    run_dir = tmp_path / "results" / "20260101-000000_x"
    run_dir.mkdir(parents=True)
    (run_dir / "history.pkl").write_bytes(content)
    code, out, err = _run_main(capsys, "--resume", run_dir)
    assert code == 2 and str(run_dir / "history.pkl") in err and "truncated" in err and "Traceback" not in err


def test_two_resumes_of_one_record_the_second_names_the_first(tmp_path, capsys):
    run_dir = _finished_record(tmp_path, capsys)
    history = record.load_history(run_dir)
    history["runs"][0]["status"] = "stopped"
    record.save_history(run_dir, history)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(APP_FOLDER)!r})
        from workbench import record
        record.acquire_lock({str(run_dir)!r})
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, out, err = _run_main(capsys, "--resume", run_dir)
        assert code == 2 and f"in use by process {holder.pid}" in err and "Wait for it" in err
    finally:
        holder.kill()
        holder.wait()
    resumed = Experiment.resume(run_dir)  # a dead holder's lock is taken over
    assert resumed.run() == 0 and not (run_dir / record.LOCK).exists()


def test_a_subset_larger_than_the_dataset_is_reported(tmp_path, capsys):
    config = load_config(_config(tmp_path), ["subset=1000"])
    data = load_data(config)
    err = capsys.readouterr().err
    assert len(data.x_train) == 64 and "subset=1000" in err and "64 training examples" in err


def test_a_target_on_a_metric_nobody_reports_fails_at_the_first_evaluation(tmp_path, capsys):
    code, out, err = _run_main(capsys, _config(tmp_path), f"out_dir={tmp_path / 'results'}", "target=0.5",
                               "target_metric=test_accuracy", "--no-plot")
    run = record.load_history(record.latest_run_dir(tmp_path / "results"))["runs"][0]
    assert code == 1 and run["status"] == "failed" and len(run["metrics"].get("step", [])) == 0
    assert "target_metric='test_accuracy'" in run["error"] and "test_acc" in run["error"]
    assert "Traceback" not in run["error"]


def test_paths_are_relative_to_the_app_folder_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert app_path("results") == APP_FOLDER / "results" and app_path(tmp_path) == tmp_path
    config = load_config(APP_FOLDER / "experiments" / "quick_synthetic.py", ["data_dir=data"])
    assert app_path(config["data_dir"]) == APP_FOLDER / "data"


def test_unexpected_errors_show_no_traceback_unless_debug(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke")
    monkeypatch.setattr(Experiment, "create", broken)
    code, out, err = _run_main(capsys, _config(tmp_path))
    assert code == 2 and "RuntimeError: something inside broke" in err and "--debug" in err
    assert "Traceback" not in err
    with pytest.raises(RuntimeError):
        main.main([str(_config(tmp_path)), "--debug"])


def test_ctrl_c_during_start_up_is_a_message_not_a_traceback(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("workbench.config.load_config", interrupted)
    code, out, err = _run_main(capsys, _config(tmp_path))
    assert code == 130 and "interrupted before training started" in err and "Traceback" not in err


def test_options_and_overrides_in_any_order(tmp_path, capsys):
    code, out, err = _run_main(capsys, _config(tmp_path), "--no-plot", f"out_dir={tmp_path / 'results'}",
                               "max_steps=2")
    assert code == 0, err
    assert record.load_history(record.latest_run_dir(tmp_path / "results"))["config"]["max_steps"] == 2


# -- plot.py ------------------------------------------------------------------------------------

def test_plot_of_an_unreadable_latest_run_names_the_previous_readable_one(tmp_path, capsys):
    good = _finished_record(tmp_path, capsys)
    time.sleep(1.1)  # the next folder gets a later timestamp
    bad = record.new_run_dir(tmp_path / "results", "quick")
    (bad / "history.pkl").write_bytes(b"\x80\x04\x95")
    code = plot.main(["--results", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2 and str(bad / "history.pkl") in err and f"previous readable run is {good}" in err
    assert "Traceback" not in err
    (bad / "history.pkl").write_bytes(b"")
    assert plot.main([str(bad)]) == 2 and "empty, truncated" in capsys.readouterr().err


def test_plot_of_two_records_with_one_name_keeps_them_apart_unless_pooled(tmp_path, capsys):
    from workbench.plots import load_runs

    first = _finished_record(tmp_path, capsys)
    time.sleep(1.1)
    second = _finished_record(tmp_path, capsys)
    _, runs = load_runs([first, second])
    assert [r["label"] for r in runs] == [f"{first.name}: sgd lr=0.1", f"{second.name}: sgd lr=0.1"]
    _, pooled = load_runs([first, second], pool=True)
    assert {r["label"] for r in pooled} == {"sgd lr=0.1"}


def test_a_diverged_run_shows_its_last_finite_value_and_a_cross():
    from workbench.plots.common import plot_metric
    from workbench.summary import summary_rows

    run = {"label": "big lr", "status": "diverged", "seed": 0, "info": {},
           "metrics": {"step": np.array([0.0, 10, 20, 30]), "time": np.array([0.0, 1, 2, 3]),
                       "epoch": np.array([0.0, 0.1, 0.2, 0.3]),
                       "train_loss": np.array([1.0, 3.0, 1e30, np.inf]),
                       "test_loss": np.array([1.0, np.nan, 7.0, np.nan])}}
    (row,) = summary_rows([run])
    assert row["final"].startswith("7 ") and "diverged at step 30" in row["final"]
    fig, ax = plt.subplots()
    assert plot_metric([run], "train_loss", "step", "training loss", True, ax)
    curve, cross = ax.get_lines()
    assert cross.get_marker() == "x" and cross.get_xdata().tolist() == [20.0] and cross.get_ydata().tolist() == [1e30]
    assert "diverged" in [t.get_text() for t in ax.get_legend().get_texts()][-1]
    plt.close(fig)


def test_resume_of_a_folder_that_does_not_exist_names_that_folder(capsys, tmp_path):
    missing = tmp_path / "results" / "does_not_exist"
    code, out, err = _run_main(capsys, "--resume", str(missing))
    assert code == 2 and f"{missing} does not exist" in err
