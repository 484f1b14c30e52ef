"""Learning-rate schedules: the rate of every update against the closed forms, the recorded lr
column, and an exact resume."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from workbench import lr_schedule
from workbench.config import Config
from workbench.errors import ConfigError
from workbench.plan import plan_runs
from workbench.runner import Experiment, Hooks


def _rates(schedule, total=40, per_epoch=10, lr=0.1):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = lr_schedule.build(optimizer, schedule, total, per_epoch)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.array(rates)


def test_the_rate_of_every_update_is_the_closed_form():
    t = np.arange(40)
    np.testing.assert_allclose(_rates("cosine"), 0.1 * (1 + np.cos(np.pi * t / 40)) / 2, rtol=1e-12, atol=1e-15)
    warm = _rates(dict(kind="cosine", final=0.1, warmup=8))
    np.testing.assert_allclose(warm[:8], 0.1 * (t[:8] + 1) / 9, rtol=1e-12)
    u = t[8:] - 8
    np.testing.assert_allclose(warm[8:], 0.1 * (0.1 + 0.9 * (1 + np.cos(np.pi * u / 32)) / 2), rtol=1e-12)
    step = _rates(dict(kind="step", epochs=[1, 3], factor=0.5))
    np.testing.assert_allclose(step, np.where(t < 10, 0.1, np.where(t < 30, 0.05, 0.025)), rtol=1e-12)
    linear = _rates(dict(kind="linear_warmup", warmup=4))
    np.testing.assert_allclose(linear, np.where(t < 4, 0.1 * (t + 1) / 5, 0.1), rtol=1e-12)


@pytest.mark.parametrize("schedule, message", [
    ("cosin", "schedule must be one of"), (dict(kind="cosine", final=2.0), "final must be a fraction"),
    (dict(kind="step"), "needs epochs="), (dict(kind="cosine", epochs=[3]), "has no key 'epochs'"),
])
def test_a_bad_schedule_is_refused_before_training(tiny_config, schedule, message):
    with pytest.raises(ConfigError, match=message):
        plan_runs(Config.of({**tiny_config, "runs": [dict(algorithm="adamw", schedule=schedule)]}))


def test_the_lr_column_is_recorded_and_a_resume_is_exact(tiny_config):
    tiny_config.update(epochs=3, log_every=1, runs=[dict(algorithm="sgd", lr=0.2, momentum=0.9,
                                                         schedule=dict(kind="cosine", warmup=3))])
    reference = Experiment.create(copy.deepcopy(tiny_config))
    assert reference.run() == 0
    metrics = reference.history["runs"][0]["metrics"]
    total, warmup = 18, 3  # 96 examples / 16 = 6 steps per epoch, 3 epochs
    t = metrics["step"][1:] - 1
    expected = np.where(t < warmup, 0.2 * (t + 1) / (warmup + 1),
                        0.2 * (1 + np.cos(np.pi * (t - warmup) / (total - warmup))) / 2)
    np.testing.assert_allclose(metrics["lr"][1:], expected, rtol=1e-12, atol=1e-15)
    count = {"n": 0}

    def stop(state):
        count["n"] += 1
        return count["n"] == 7

    stopped = Experiment.create(copy.deepcopy(tiny_config), hooks=Hooks(should_stop=stop))
    assert stopped.run() == 130
    resumed = Experiment.resume(stopped.run_dir)
    assert resumed.run() == 0
    for key in ("lr", "train_loss", "test_loss"):
        assert np.array_equal(resumed.history["runs"][0]["metrics"][key], metrics[key], equal_nan=True), key


def test_cosine_needs_a_run_of_known_length(tiny_config):
    tiny_config.update(epochs=None, max_steps=None, max_time=1.0, runs=[dict(algorithm="sgd", schedule="cosine")])
    experiment = Experiment.create(tiny_config)
    experiment.run()
    assert "needs a run of known length" in experiment.history["runs"][0]["error"]
