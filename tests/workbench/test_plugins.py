"""Bring your own: any torch.optim optimizer, a user's optimizer or model class in a file
(loaded the same way in worker processes and on --resume, kept with its hash in the run folder),
torchvision models."""
from __future__ import annotations

import copy
import hashlib
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench import record
from workbench.config import Config, load_config
from workbench.errors import ConfigError
from workbench.plan import plan_runs
from workbench.registry import ALGORITHMS, MODELS
from workbench.runner import Experiment, Hooks

ROOT = Path(__file__).resolve().parents[2]
LION = (ROOT / "experiments" / "plugins" / "lion.py").read_text(encoding="utf-8")  # the README's worked example
NET = textwrap.dedent('''
    import torch


    class TwoLayer(torch.nn.Module):
        def __init__(self, input_shape, n_outputs, width=16):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(input_shape[0], width), torch.nn.Tanh(),
                                           torch.nn.Linear(width, n_outputs))

        def forward(self, x):
            return self.net(x)
''')


def test_any_torch_optimizer_with_its_arguments_checked(tiny_config):
    plan = plan_runs(Config.of({**tiny_config, "runs": [dict(algorithm="torch.optim.RMSprop", lr=1e-3, alpha=0.9)]}))
    assert plan[0]["label"] == "torch.optim.RMSprop lr=0.001 alpha=0.9" and plan[0]["params"]["alpha"] == 0.9
    with pytest.raises(ConfigError, match="has no parameter 'alhpa'.*Did you mean 'alpha'.*Its parameters: alpha"):
        plan_runs(Config.of({**tiny_config, "runs": [dict(algorithm="torch.optim.RMSprop", alhpa=0.9)]}))
    with pytest.raises(ConfigError, match="torch.optim has no optimizer 'RMSpro'.*torch.optim.RMSprop"):
        plan_runs(Config.of({**tiny_config, "runs": [dict(algorithm="torch.optim.RMSpro")]}))
    with pytest.raises(ConfigError, match="lr"):
        plan_runs(Config.of({**tiny_config, "runs": [dict(algorithm="torch.optim.Adam", lr=-1.0)]}))
    tiny_config["runs"] = [dict(algorithm="torch.optim.SGD", lr=0.1, momentum=0.9), dict(algorithm="sgd", lr=0.1,
                                                                                            momentum=0.9)]
    experiment = Experiment.create(tiny_config)
    assert experiment.run() == 0
    mine, registered = experiment.history["runs"]
    for key in ("train_loss", "test_loss"):  # the registered sgd is torch's SGD: the same numbers
        assert np.array_equal(mine["metrics"][key], registered["metrics"][key], equal_nan=True)


def _files(tmp_path: Path) -> Path:
    (tmp_path / "lion.py").write_text(LION, encoding="utf-8")
    (tmp_path / "nets.py").write_text(NET, encoding="utf-8")
    config = tmp_path / "mine.py"
    config.write_text(textwrap.dedent(f"""
        dataset = "synthetic_classification"
        dataset_args = dict(n=96, n_test=64, d=6, classes=3, seed=1)
        model = "nets.py:TwoLayer"
        model_args = dict(width=8)
        batch_size = 16
        epochs = 2
        dtype = "float64"
        seeds = [0, 1]
        progress = False
        workers = 1
        out_dir = {str(tmp_path / "results")!r}
        runs = [dict(algorithm="lion.py:Lion", lr=3e-3), dict(algorithm="adamw", lr=1e-2)]
    """), encoding="utf-8")
    return config


def test_a_users_optimizer_and_model_in_files_are_kept_with_the_record(tmp_path, monkeypatch):
    path = _files(tmp_path)
    monkeypatch.chdir(tmp_path.parent)  # the files are found next to the config, not in the working directory
    config = load_config(path)
    assert config.runs[0]["algorithm"] == f"{tmp_path / 'lion.py'}:Lion" and config.model.endswith("nets.py:TwoLayer")
    experiment = Experiment.create(config, config_path=path)
    assert experiment.run() == 0
    history = record.load_history(experiment.run_dir)
    assert [r["label"] for r in history["runs"][:2]] == ["Lion lr=0.003", "adamw lr=0.01"]
    kept = {entry["spec"]: entry for entry in history["plugins"]}
    lion = kept[f"{tmp_path / 'lion.py'}:Lion"]
    copy_path = experiment.run_dir / lion["copy"]
    assert copy_path.read_text(encoding="utf-8") == LION
    assert lion["sha256"] == hashlib.sha256(LION.encode()).hexdigest()
    assert history["config"]["runs"][0]["algorithm"] == f"{copy_path.resolve()}:Lion"  # the record runs its copy
    run = history["runs"][0]
    assert run["status"] == "finished" and run["metrics"]["test_acc"][-1] > 33.4  # it learns
    # the same numbers from worker processes, and from a resume after the originals are gone
    two = Experiment.create(load_config(path, ["workers=2"]), config_path=path)
    assert two.run() == 0
    count = {"n": 0}

    def stop(state):
        count["n"] += 1
        return count["n"] == 5

    stopped = Experiment.create(load_config(path), config_path=path, hooks=Hooks(should_stop=stop))
    assert stopped.run() == 130
    (tmp_path / "lion.py").unlink()
    (tmp_path / "nets.py").unlink()
    assert Experiment.resume(stopped.run_dir).run() == 0
    for other in (two, stopped):
        for a, b in zip(history["runs"], record.load_history(other.run_dir)["runs"]):
            for key in ("train_loss", "test_loss", "test_acc"):
                assert np.array_equal(a["metrics"][key], b["metrics"][key], equal_nan=True), (a["label"], key)


def test_plugin_mistakes_are_config_errors(tmp_path, tiny_config):
    (tmp_path / "bad.py").write_text("import torch\nclass NotAnOptimizer:\n    pass\nraise_here = 1\n", encoding="utf-8")
    cases = [(f"{tmp_path / 'missing.py'}:Lion", "does not exist"),
             (f"{tmp_path / 'bad.py'}:Lion", "has no class 'Lion'; its classes: NotAnOptimizer"),
             (f"{tmp_path / 'bad.py'}:NotAnOptimizer", "is not a torch.optim.Optimizer subclass")]
    for name, message in cases:
        with pytest.raises(ConfigError, match=message):
            plan_runs(Config.of({**tiny_config, "runs": [dict(algorithm=name)]}))
    (tmp_path / "broken.py").write_text("1/0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="importing .*broken.py failed: ZeroDivisionError"):
        plan_runs(Config.of({**tiny_config, "runs": [dict(algorithm=f"{tmp_path / 'broken.py'}:X")]}))


def test_torchvision_models_get_the_datasets_classes():
    build = MODELS["torchvision.resnet18"]
    model = build((3, 32, 32), 7)
    assert model.fc.out_features == 7 and model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(ConfigError, match="torchvision has no model 'resnet19'"):
        MODELS["torchvision.resnet19"]
