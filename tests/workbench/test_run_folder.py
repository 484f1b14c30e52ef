"""A run folder describes itself (the resolved config, the summary files), records can be listed
and found by name, and plotting several records never writes into one of them."""
from __future__ import annotations

import copy
import csv
import io
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from workbench import record
from workbench.config import load_config
from workbench.run_folder import RESOLVED_CONFIG, latest_named, records_table
from workbench.runner import Experiment

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import plot  # noqa: E402


def _config_file(tmp_path: Path, name: str = "tiny_file") -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(f"""
        dataset = "synthetic_classification"
        dataset_args = dict(n=96, n_test=64, d=6, classes=3, seed=1)
        model_args = dict(hidden=[8])
        batch_size = 16
        epochs = 2
        seeds = [0, 1, 2]
        dtype = "float64"
        workers = 1
        progress = False
        out_dir = {str(tmp_path / "results")!r}
        note = "three seeds of two optimizers"
        runs = [dict(algorithm="sgd", lr=0.1, momentum=0.9), dict(algorithm="adamw", label="AdamW", lr=1e-2)]
    """), encoding="utf-8")
    return path


def _experiment(path: Path, overrides=()) -> Experiment:
    experiment = Experiment.create(load_config(path, list(overrides)), config_path=path, overrides=list(overrides))
    assert experiment.run() == 0
    return experiment


def test_the_resolved_config_holds_the_overrides_and_runs_again(tmp_path):
    path = _config_file(tmp_path)
    experiment = _experiment(path, ["model_args={'hidden': [4]}", "adamw.lr=3e-3"])
    copied = (experiment.run_dir / "config.py").read_text(encoding="utf-8")
    assert "hidden=[8]" in copied  # the file as written
    resolved = experiment.run_dir / RESOLVED_CONFIG
    text = resolved.read_text(encoding="utf-8")
    assert "model_args={'hidden': [4]}" in text and "adamw.lr=3e-3" in text  # the overrides, named
    again = load_config(resolved)
    assert dict(again) == experiment.history["config"]
    assert again.model_args == {"hidden": [4]} and again.runs[1]["lr"] == 3e-3


def test_summary_files_hold_the_table_and_numeric_columns(tmp_path):
    experiment = _experiment(_config_file(tmp_path))
    text = (experiment.run_dir / "summary.txt").read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("label") and "AdamW" in text
    rows = list(csv.DictReader(io.StringIO((experiment.run_dir / "summary.csv").read_text(encoding="utf-8"))))
    assert [r["label"] for r in rows] == ["sgd lr=0.1 momentum=0.9", "AdamW"]
    for row in rows:
        finals = [r["metrics"]["test_acc"][-1] for r in experiment.history["runs"] if r["label"] == row["label"]]
        assert float(row["final"]) == pytest.approx(np.mean(finals), abs=0.005)  # printed with 2 decimals
        assert float(row["final std"]) == pytest.approx(np.std(finals, ddof=1), abs=0.005)
        assert row["metric"] == "test_acc" and row["status"] == "finished 3" and row["seeds"] == "3"


def test_records_are_listed_oldest_first_and_found_by_name(tmp_path):
    path = _config_file(tmp_path)
    first = _experiment(path)
    second = _experiment(path, ["epochs=1"])
    other = _experiment(_config_file(tmp_path, "other"))
    results = tmp_path / "results"
    (results / "20000101-000000_broken").mkdir()
    (results / "20000101-000000_broken" / "history.pkl").write_bytes(b"not a pickle")
    table = records_table(results)
    lines = table.splitlines()
    folders = [line.split()[0] for line in lines[3:]]
    # oldest first; within one second, "_x" before "-1_x" (records of other names: by name)
    assert folders[0] == "20000101-000000_broken" and sorted(folders[1:]) == sorted(
        d.name for d in (first.run_dir, second.run_dir, other.run_dir))
    assert folders.index(first.run_dir.name) < folders.index(second.run_dir.name)
    assert "unreadable" in lines[3]
    line = lines[3 + folders.index(first.run_dir.name)]
    assert "three seeds of two optimizers" in line and "6 finished" in line and "test_acc: sgd lr=0.1 momentum=0.9" in line
    assert latest_named(results, "tiny_file") == second.run_dir
    assert latest_named(results, "nothing") is None
    assert plot.resolve("tiny_file", str(results)) == second.run_dir
    with pytest.raises(FileNotFoundError, match="python plot.py --list"):
        plot.resolve("nothing", str(results))


def test_plotting_two_records_writes_a_new_folder_and_filters(tmp_path, capsys):
    path = _config_file(tmp_path)
    a = _experiment(path)
    b = _experiment(path, ["name=second"])
    before = {p.name: p.stat().st_mtime_ns for p in a.run_dir.iterdir()}
    results = tmp_path / "results"
    assert plot.main([str(a.run_dir), str(b.run_dir), "--results", str(results), "--labels", "AdamW",
                      "--metrics", "test_acc", "train_loss"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in a.run_dir.iterdir()} == before  # A's own files untouched
    (folder,) = (results / "comparisons").iterdir()
    assert folder.name.endswith("_tiny_file_vs_second")
    assert sorted(p.name for p in folder.iterdir()) == ["summary.png", "summary.txt", "test_accuracy.png",
                                                        "train_loss_epochs.png", "train_loss_steps.png"]
    summary = (folder / "summary.txt").read_text(encoding="utf-8")
    assert "tiny_file: AdamW" in summary and "second: AdamW" in summary and "sgd" not in summary
    out = tmp_path / "mine"
    assert plot.main([str(a.run_dir), str(b.run_dir), "--out", str(out), "--results", str(results)]) == 0
    assert (out / "test_accuracy.png").is_file() and len(list((results / "comparisons").iterdir())) == 1


def test_progress_goes_to_plain_lines_when_stderr_is_not_a_terminal():
    from workbench.progress import Bars, Lines, display

    class Log(io.StringIO):
        def isatty(self):
            return False

    plan = [{"label": "AdamW", "seed": 0}, {"label": "SGD", "seed": 1}]
    log = Log()
    lines = display(plan, 0, True, stream=log)
    assert isinstance(lines, Lines) and isinstance(display(plan, 0, False, stream=log), Bars)
    lines.gap = 0.0
    lines.start(0)
    lines.progress(0, {"step": 5, "total": 100})             # below a tenth: nothing
    lines.progress(0, {"step": 10, "total": 100, "loss": 0.5})
    lines.progress(0, {"step": 11, "total": 100})             # the same tenth: nothing
    lines.progress(0, {"step": 100, "total": 100, "loss": 0.25, "acc": 91.0})
    lines.finish(0, status="finished")
    said = [line.split(" ", 1)[1] for line in log.getvalue().splitlines()]
    assert said == ["start AdamW seed=0 (run 1 of 2)",
                    "AdamW seed=0: step 10/100 (10%), loss 0.5",
                    "AdamW seed=0: step 100/100 (100%), loss 0.25, acc 91.00",
                    "finished AdamW seed=0: step 100/100 (100%), loss 0.25, acc 91.00 (1/2 runs done)"]


def test_figures_of_an_unfinished_record_say_how_many_runs_have_finished(tmp_path):
    from workbench.plots import progress_note
    from workbench.runner import Hooks

    path = _config_file(tmp_path)
    count = {"n": 0}

    def stop(state):
        count["n"] += 1
        return count["n"] == 15  # during the third run (two epochs of 5 steps each)

    experiment = Experiment.create(load_config(path), hooks=Hooks(should_stop=stop))
    assert experiment.run() == 130
    history = record.load_history(experiment.run_dir)
    assert progress_note([history]) == "1/6 runs finished (record in progress or interrupted)"
    assert Experiment.resume(experiment.run_dir).run() == 0
    assert progress_note([record.load_history(experiment.run_dir)]) is None


def test_watch_redraws_until_the_record_has_ended(tmp_path, capsys):
    experiment = _experiment(_config_file(tmp_path))
    for name in ("test_accuracy.png", "summary.txt"):
        (experiment.run_dir / name).unlink(missing_ok=True)
    assert plot.main([str(experiment.run_dir), "--watch", "0.1"]) == 0
    assert "figures redrawn; the record has ended" in capsys.readouterr().out
    assert (experiment.run_dir / "test_accuracy.png").is_file() and (experiment.run_dir / "summary.txt").is_file()
