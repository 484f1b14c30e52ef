"""Every shipped experiment config loads, names registered algorithms with valid parameters, and
runs end to end on a tiny budget (CleanRL-style smoke runs)."""
from __future__ import annotations

from pathlib import Path

import pytest

import warnings

from workbench import cifar_files, mnist_files
from workbench.config import load_config
from workbench.plan import plan_runs
from workbench.runner import Experiment

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "experiments").glob("*.py"))
NEEDS_MNIST = ("mnist", "fashion_mnist", "mnist_pair")


def test_default_experiment_is_the_reference_comparison():
    config = load_config(ROOT / "experiments" / "default.py")
    assert config["dataset"] == "mnist" and config["batch_size"] == 64 and config["epochs"] == 10
    assert config["model_args"]["hidden"] == [256] and len(config["seeds"]) == 3
    assert [r["algorithm"] for r in config["runs"]] == ["persistent_sgd", "adema", "adamw"]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_experiment_runs_on_a_tiny_budget(path, tmp_path):
    config = load_config(path, [f"out_dir={tmp_path}", "max_steps=2", "progress=False", "save_every=3600"])
    plan_runs(config)
    config = config.replace(seeds=config["seeds"][:1])
    if config["dataset"] in NEEDS_MNIST:
        data_dir = Path(config["data_dir"])
        data_dir = data_dir if data_dir.is_absolute() else ROOT / data_dir
        try:
            mnist_files.locate(data_dir, "fashion_mnist" if config["dataset"] == "fashion_mnist" else "mnist")
        except FileNotFoundError:
            pytest.skip(f"{config['dataset']} files are not in {data_dir} (setup fetches them)")
        # a validation split of a number of examples would not fit in the subset: a quarter of it
        config = config.replace(data_dir=str(data_dir), subset=256,
                                val_split=0.25 if config["val_split"] is not None else None)
    if config["dataset"] in ("cifar10", "cifar100"):
        data_dir = ROOT / config["data_dir"]
        folder = cifar_files.SETS[config["dataset"]]["folder"]
        if not (data_dir / folder).is_dir():
            # the experiment on CIFAR's format with a few generated images: the loader, resnet20,
            # augmentation and schedules run end to end
            from tests.workbench.test_data_files import write_cifar10

            data_dir = write_cifar10(tmp_path / "cifar", per_file=20)
        config = config.replace(data_dir=str(data_dir), dataset_args={"verify_counts": False}, batch_size=16,
                                subset=64)
    # a warmup longer than the shortened run would be refused: one step of it
    config = config.replace(runs=[{**e, "schedule": {**e["schedule"], "warmup": 1}}
                                  if isinstance(e.get("schedule"), dict) and e["schedule"].get("warmup") else e
                                  for e in config["runs"]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # generated CIFAR files differ from the published ones
        experiment = Experiment.create(config)
        experiment.run()
    statuses = {run["label"]: (run["status"], run["error"]) for run in experiment.history["runs"]}
    assert all(status == "finished" for status, _ in statuses.values()), statuses
