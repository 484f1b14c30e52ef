"""What is due after a step (rows, evaluations, snapshots, the end), and the per-batch transform a
problem may carry (applied to every training batch on the device, drawn from the run's generator)."""
from __future__ import annotations

import copy

import torch

from workbench import messages as m
from workbench.config import Config
from workbench.plan import plan_runs
from workbench.problem import build_problem
from workbench.schedule import Schedule
from workbench.training import train_run


def _schedule(tiny_config, total, **changes):
    return Schedule(Config.of({**copy.deepcopy(tiny_config), **changes}), total)


def test_rows_evaluations_snapshots_and_the_end(tiny_config):
    s = _schedule(tiny_config, total=12, log_every=4, eval_every=6, snapshot_every=5)
    due = {step: s.after_step(step, 0.0, epoch_done=False, converged=False, wants_row=False) for step in range(1, 13)}
    assert [k for k, d in due.items() if d.row] == [4, 6, 8, 12]          # log_every, eval_every, the end
    assert [k for k, d in due.items() if d.evaluate] == [6, 12]
    assert [k for k, d in due.items() if d.snapshot] == [5, 10]
    assert [k for k, d in due.items() if d.finishing] == [12]
    assert s.after_step(3, 0.0, epoch_done=True, converged=False, wants_row=False).row  # an epoch's end
    assert s.after_step(3, 0.0, epoch_done=False, converged=False, wants_row=True).row  # a rare event
    assert s.after_step(3, 0.0, epoch_done=False, converged=True, wants_row=False).finishing
    no_eval_every = _schedule(tiny_config, total=None, eval_every=None, max_time=10.0, epochs=None)
    assert no_eval_every.after_step(7, 0.0, True, False, False).evaluate  # at each epoch's end
    assert no_eval_every.after_step(7, 10.5, False, False, False).finishing  # max_time
    assert no_eval_every.used_up(10 ** 9, 9.9) is False and no_eval_every.used_up(0, 10.0)


class _Collect:
    flush_every = 0.0

    def __init__(self):
        self.messages = []

    def send(self, messages):
        self.messages.extend(messages)

    def stop_requested(self):
        return False


def test_a_batch_transform_sees_every_training_batch_with_the_runs_generator(tiny_config):
    config = Config.of({**copy.deepcopy(tiny_config), "runs": [dict(algorithm="sgd", lr=0.1)]})
    spec = plan_runs(config)[0]
    plain, transformed = build_problem(config), build_problem(config)
    seen = []

    def flip(x, y, generator):
        seen.append((x.shape[0], x.device, isinstance(generator, torch.Generator)))
        return -x, y
    transformed.batch_transform = flip
    runs = {}
    for name, problem in (("plain", plain), ("flipped", transformed)):
        channel = _Collect()
        assert train_run(problem, config, spec, channel) == "finished"
        runs[name] = [row for msg in channel.messages if isinstance(msg, m.Rows) for row in msg.rows]
    steps = runs["plain"][-1]["step"]
    assert len(seen) == steps and all(s == (16, torch.device("cpu"), True) for s in seen)
    assert runs["plain"][0] == runs["flipped"][0]  # the same initial evaluation
    assert runs["plain"][-1]["train_loss"] != runs["flipped"][-1]["train_loss"]  # trained on other inputs


def test_a_run_of_few_epochs_is_evaluated_at_least_ten_times_by_default(tiny_config):
    from workbench.schedule import Schedule

    config = {**tiny_config, "eval_every": None}
    few = Schedule(config, total=90, per_epoch=45)     # two epochs: every 9 steps, and at the epoch ends
    odd = Schedule(config, total=95, per_epoch=50)     # every 10 steps and at step 50
    assert [s for s in range(1, 96) if odd.after_step(s, 0.0, s == 50, False, False).evaluate] == [
        10, 20, 30, 40, 50, 60, 70, 80, 90, 95]         # 95: the last step always is
    evaluated = [s for s in range(1, 91) if few.after_step(s, 0.0, s % 45 == 0, False, False).evaluate]
    assert evaluated == list(range(9, 91, 9))  # the epoch end, step 45, is one of them
    many = Schedule(config, total=120, per_epoch=10)   # twelve epochs: at the epoch ends only
    assert [s for s in range(1, 121) if many.after_step(s, 0.0, s % 10 == 0, False, False).evaluate] == list(
        range(10, 121, 10))
    fixed = Schedule({**config, "eval_every": 30}, total=90, per_epoch=45)
    assert [s for s in range(1, 91) if fixed.after_step(s, 0.0, s % 45 == 0, False, False).evaluate] == [30, 60, 90]
