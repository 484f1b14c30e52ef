"""Stacked training (``stack = True``): each member of a stack is its own run, with the numbers of its
separate run to rounding (float64: relative 1e-9 on every recorded value over 500 steps), its own
divergence and failure, checkpoints that resume stacked or not, and the same stacked numbers with
every executor."""
from __future__ import annotations

import copy
import io
import textwrap

import numpy as np
import pytest
import torch

from workbench import record
from workbench.config import Config
from workbench.member_steps import DIRECT_STEPS
from workbench.plan import plan_runs
from workbench.progress import Lines
from workbench.runner import Experiment, Hooks
from workbench.stacked_training import StackedModel
from workbench.stacking import stack_units, why_not_stackable
from workbench.search import grid

TOLERANCE = 1e-9  # the bound; float64 rounding of a batched matmul is about 1e-16 per step


def _config(tiny_config, runs, **changes):
    config = copy.deepcopy(tiny_config)
    config.update(runs=runs, seeds=[0, 1], log_every=10, dataset_args=dict(n=320, n_test=64, d=6, classes=3, seed=1))
    config.update(changes)
    return config


def _trained(config, **kwargs) -> tuple[Experiment, int]:
    experiment = Experiment.create(config, **kwargs)
    return experiment, experiment.run()


def _assert_close_runs(got: dict, expected: dict, tolerance: float = TOLERANCE) -> None:
    """Every recorded value of every run (but the clock) within ``tolerance`` relative."""
    assert len(got["runs"]) == len(expected["runs"])
    for a, b in zip(got["runs"], expected["runs"]):
        assert (a["label"], a["seed"], a["status"]) == (b["label"], b["seed"], b["status"]), (a["error"], b["error"])
        assert set(a["metrics"]) == set(b["metrics"])
        for key in a["metrics"]:
            if key == "time":
                continue
            x, y = np.asarray(a["metrics"][key], float), np.asarray(b["metrics"][key], float)
            assert x.shape == y.shape, (a["label"], key)
            finite = np.isfinite(y)
            assert np.array_equal(np.isfinite(x), finite), (a["label"], key)
            scale = np.maximum(np.abs(x[finite]), np.abs(y[finite]))
            assert np.all(np.abs(x[finite] - y[finite]) <= tolerance * scale + 1e-300), (a["label"], a["seed"], key)


EVERY_OPTIMIZER = [
    dict(algorithm="sgd", lr=grid([0.05, 0.2]), momentum=0.9, weight_decay=1e-3),
    dict(algorithm="sgd", lr=grid([0.05, 0.2]), momentum=0.9, nesterov=True),
    dict(algorithm="adamw", lr=grid([1e-3, 1e-2])),
    dict(algorithm="adamw", lr=grid([1e-3, 1e-2]), amsgrad=True, schedule="cosine"),
    dict(algorithm="persistent_sgd", lr=grid([0.01, 0.03]), decay=0.9),
    dict(algorithm="adema", lr=grid([0.3, 1.0]), beta=0.9, decay=0.5),
    dict(algorithm="torch.optim.Adam", lr=grid([1e-3, 1e-2])),  # foreach: the member's own step()
]


def test_every_member_has_the_numbers_of_its_separate_run(tiny_config):
    """500 steps of each stackable optimizer (lr x seed products, a schedule, Nesterov, AMSGrad), float64."""
    config = _config(tiny_config, EVERY_OPTIMIZER, epochs=25)  # 320 / 16 = 20 steps per epoch
    separate, code = _trained(config)
    assert code == 0
    stacked, code = _trained({**config, "stack": True})
    assert code == 0
    history = record.load_history(stacked.run_dir)
    assert StackedModel([stacked.problem().build_model()]).layers is not None  # the mlp's batched matmuls
    assert history["runs"][0]["metrics"]["step"][-1] == 500
    _assert_close_runs(history, record.load_history(separate.run_dir))
    stacks = {tuple(run["where"]["stack"]["runs"]) for run in history["runs"]}
    # one stack per algorithm: its entries and seeds together (the two sgd entries, the two adamw ones)
    assert sorted(len(s) for s in stacks) == [4, 4, 4, 8, 8]
    for run in history["runs"]:
        assert set(run) == set(record.load_history(separate.run_dir)["runs"][0])  # the record's format is unchanged
    scheduled = [r for r in history["runs"] if r["params"]["schedule"] == "cosine"]
    assert all(r["metrics"]["lr"][-1] < r["params"]["lr"] for r in scheduled)


@pytest.mark.parametrize("model, model_args, augment", [
    ("resnet20", dict(depth=8, width=4), dict(crop=2, flip=True)),  # batch norm's buffers under vmap; augment
    ("cnn", dict(channels=(3, 4), hidden=8), None),
])
def test_a_model_under_vmap_has_the_numbers_of_its_separate_runs(tiny_config, tmp_path, model, model_args, augment):
    """CIFAR-format files (uint8, normalised per channel on the device) with vmapped models."""
    from tests.workbench.test_data_files import write_cifar10

    write_cifar10(tmp_path, per_file=10)
    config = _config(tiny_config, [dict(algorithm="sgd", lr=grid([0.01, 0.05]), momentum=0.9)], dataset="cifar10",
                     dataset_args=dict(verify_counts=False), data_dir=str(tmp_path), model=model,
                     model_args=model_args, augment=augment, epochs=2, log_every=1)
    separate, _ = _trained(config)
    stacked, code = _trained({**config, "stack": True})
    assert code == 0
    assert StackedModel([stacked.problem().build_model()]).layers is None  # the vmap path, not the MLP's
    history = record.load_history(stacked.run_dir)
    assert all(len(r["where"]["stack"]["runs"]) == 4 for r in history["runs"])
    _assert_close_runs(history, record.load_history(separate.run_dir))


def test_a_diverging_member_stops_alone_and_the_others_keep_their_numbers(tiny_config):
    config = _config(tiny_config, [dict(algorithm="sgd", lr=grid([0.05, 1e4]), momentum=0.9)], epochs=5)
    separate, _ = _trained(config)
    stacked, code = _trained({**config, "stack": True})
    assert code == 1
    history = record.load_history(stacked.run_dir)
    assert sorted(r["status"] for r in history["runs"]) == ["diverged", "diverged", "finished", "finished"]
    assert all(len(r["where"]["stack"]["runs"]) == 4 for r in history["runs"])
    _assert_close_runs(history, record.load_history(separate.run_dir))


def test_stacks_and_single_runs_share_a_plan(tiny_config):
    """A growth or shallow run trains alone while the optimizer runs stack; a later run of the plan
    can start before an earlier one (its place is held as stopped) and the record ends complete."""
    runs = [dict(algorithm="sgd", lr=0.1), dict(algorithm="newton_summary", hg_batch_size=16),
            dict(algorithm="sgd", lr=0.05)]
    config = _config(tiny_config, runs, epochs=2, stack=True)
    plan = plan_runs(Config.of(config))
    assert why_not_stackable(plan[1]) is not None and why_not_stackable(plan[0]) is None
    assert stack_units(plan, list(range(6)), None) == [(0, 2, 3, 5), (1,), (4,)]
    assert stack_units(plan, list(range(6)), 3) == [(0, 2, 3), (1,), (4,), (5,)]
    assert stack_units(plan, list(range(6)), None, step_of=lambda i: 7 if i == 3 else 0) == [(0, 2, 5), (1,), (3,), (4,)]
    experiment, code = _trained(config)
    assert code == 0
    history = record.load_history(experiment.run_dir)
    assert [r["status"] for r in history["runs"]] == ["finished"] * 6
    assert ["stack" in r["where"] for r in history["runs"]] == [True, False, True, True, False, True]


def _stop_at(step: int) -> Hooks:
    return Hooks(should_stop=lambda state: state.step >= step)


@pytest.mark.parametrize("first, then", [(True, False), (False, True)])
def test_a_record_resumes_stacked_or_not_with_the_numbers_of_an_uninterrupted_run(tiny_config, first, then):
    config = _config(tiny_config, [dict(algorithm="adamw", lr=grid([1e-3, 1e-2])),
                                   dict(algorithm="persistent_sgd", lr=0.02, decay=0.9)], epochs=4)
    whole, _ = _trained(config)
    interrupted, code = _trained({**config, "stack": first}, hooks=_stop_at(33))
    assert code == 130
    before = record.load_history(interrupted.run_dir)["runs"]
    assert {r["status"] for r in before} == {"stopped"}
    if first:  # the adamw stack (runs 0, 1, 3, 4) stops at step 33; run 2 waits in its held place, run 5 unplanned
        assert [r["where"] and r["where"]["stack"]["runs"] for r in before] == [[0, 1, 3, 4]] * 2 + [None] + [[0, 1, 3, 4]] * 2
    else:  # one after another: the first run stops at step 33
        assert len(before) == 1
    resumed = Experiment.resume(interrupted.run_dir, execution=dict(stack=then))
    assert resumed.run() == 0
    history = record.load_history(interrupted.run_dir)
    _assert_close_runs(history, record.load_history(whole.run_dir))
    # resumed stacked, the runs that continue from one step share a stack (run 0 is alone at step 33)
    assert [("stack" in r["where"]) for r in history["runs"]] == ([False] + [True] * 5 if then else [False] * 6)


@pytest.mark.parametrize("optimizer, options", [
    (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    (torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (torch.optim.SGD, dict(lr=0.1)),
    (torch.optim.AdamW, dict(lr=1e-2, fused=True)),
    (torch.optim.AdamW, dict(lr=1e-2, fused=True, amsgrad=True, weight_decay=0.1)),
    (torch.optim.Adam, dict(lr=1e-2, fused=True, weight_decay=0.1)),
    ("persistent_sgd", dict(lr=0.1, decay=0.9)),
    ("adema", dict(lr=0.1, beta=0.9, decay=0.5)),
])
def test_a_direct_step_is_bitwise_the_optimizers_own_step(optimizer, options):
    if isinstance(optimizer, str):
        from workbench.registry import ALGORITHMS, load_all

        load_all()
        optimizer = type(ALGORITHMS[optimizer].build_optimizer([torch.zeros(1, requires_grad=True)], **options))
    direct = DIRECT_STEPS[optimizer]
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 3, generator=g, dtype=torch.float32), torch.randn(3, generator=g, dtype=torch.float32)]
    own = [t.clone().requires_grad_() for t in start]
    mine = [t.clone().requires_grad_() for t in start]
    own_opt, mine_opt = optimizer(own, **options), optimizer(mine, **options)
    used = []
    for step in range(4):
        grads = [torch.randn(t.shape, generator=g) for t in start]
        for p, grad in zip(own, grads):
            p.grad = grad.clone()
        own_opt.step()
        with torch.no_grad():
            went = direct(mine_opt, mine, [grad.clone() for grad in grads])
        if not went:  # the first step creates the state through step()
            for p, grad in zip(mine, grads):
                p.grad = grad.clone()
            mine_opt.step()
        used.append(went)
        assert all(torch.equal(a, b) for a, b in zip(own, mine)), step
    assert used[1:] == [True, True, True]
    own_state, mine_state = own_opt.state_dict(), mine_opt.state_dict()
    assert own_state["param_groups"] == mine_state["param_groups"]
    assert own_state["state"].keys() == mine_state["state"].keys()
    for key, state in own_state["state"].items():
        assert state.keys() == mine_state["state"][key].keys()
        for name, value in state.items():  # the step counts too (Adam's are tensors)
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(mine_state["state"][key][name])), name


PLUGINS = textwrap.dedent('''
    import torch


    class Broken(torch.optim.SGD):
        """Raises at its fifth step."""

        def step(self, closure=None):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 5:
                raise RuntimeError("broken at step 5")
            return super().step(closure)


    class Rebinding(torch.optim.Optimizer):
        """Replaces each parameter's tensor instead of updating it in place."""

        def __init__(self, params, lr=0.1):
            super().__init__(params, dict(lr=lr))

        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    p.data = p.data - group["lr"] * p.grad


    class Dropping(torch.nn.Module):
        def __init__(self, input_shape, n_outputs):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(input_shape[0], 8), torch.nn.Dropout(0.5),
                                           torch.nn.Linear(8, n_outputs))

        def forward(self, x):
            return self.net(x)
''')


def test_an_exception_fails_its_stacks_members_with_the_traceback_and_the_others_go_on(tiny_config, tmp_path):
    (tmp_path / "mine.py").write_text(PLUGINS, encoding="utf-8")
    runs = [dict(algorithm=f"{tmp_path / 'mine.py'}:Broken", lr=grid([0.05, 0.1])),
            dict(algorithm=f"{tmp_path / 'mine.py'}:Rebinding", lr=grid([0.05, 0.1])),
            dict(algorithm="sgd", lr=0.05)]
    experiment, code = _trained(_config(tiny_config, runs, stack=True, epochs=2))
    assert code == 1
    history = record.load_history(experiment.run_dir)
    by_label = {}
    for run in history["runs"]:
        by_label.setdefault(run["algorithm"].rsplit(":", 1)[-1], []).append(run)
    assert [r["status"] for r in by_label["Broken"]] == ["failed"] * 4
    assert all("broken at step 5" in r["error"] and "stack of runs" in r["error"] for r in by_label["Broken"])
    assert [r["status"] for r in by_label["Rebinding"]] == ["failed"] * 4
    assert all("instead of updating it in place" in r["error"] and "stack=False" in r["error"]
               for r in by_label["Rebinding"])
    assert [r["status"] for r in by_label["sgd"]] == ["finished"] * 2


def test_a_model_vmap_refuses_trains_its_runs_separately(tiny_config, tmp_path, capsys):
    (tmp_path / "mine.py").write_text(PLUGINS, encoding="utf-8")
    config = _config(tiny_config, [dict(algorithm="sgd", lr=grid([0.05, 0.1]))], model=f"{tmp_path / 'mine.py'}:Dropping",
                     model_args={}, stack=True)
    experiment, code = _trained(config)
    assert code == 0
    assert "cannot train stacked" in capsys.readouterr().err
    assert all("stack" not in r["where"] for r in record.load_history(experiment.run_dir)["runs"])


def test_worker_processes_give_the_stacked_numbers_of_one_process_bitwise(tiny_config):
    config = _config(tiny_config, [dict(algorithm="adamw", lr=grid([1e-3, 1e-2])),
                                   dict(algorithm="persistent_sgd", lr=grid([0.01, 0.02]))],
                     stack=True, stack_size=2, threads=1)
    one, _ = _trained(config)
    many, code = _trained({**config, "workers": 2})
    assert code == 0
    a, b = record.load_history(one.run_dir), record.load_history(many.run_dir)
    assert {r["where"]["executor"] for r in b["runs"]} == {"worker process"}
    for x, y in zip(a["runs"], b["runs"]):
        assert x["where"]["stack"] == y["where"]["stack"]
        for key in x["metrics"]:
            if key != "time":
                assert np.array_equal(x["metrics"][key], y["metrics"][key], equal_nan=True), key


def test_a_stack_has_one_progress_line():
    plan = [{"label": f"sgd lr={lr}", "seed": seed} for seed in (0, 1) for lr in (0.1, 0.2)]
    stream = io.StringIO()
    lines = Lines(plan, 0, stream, seconds=0.0)
    stack = {"runs": [0, 1, 2, 3], "size": 4}
    for index in range(4):
        lines.start(index, stack)
    lines.progress(0, {"step": 5, "total": 10, "members": 4, "diverged": 1, "loss": 0.5})
    for index in range(4):
        lines.finish(index, status="finished")
    said = stream.getvalue().splitlines()
    assert sum("start" in line for line in said) == 1 and "stack of 4 runs" in said[0]
    assert "stack: 4 runs training, 1 diverged" in said[1] and "mean loss 0.5" in said[1]
    assert sum("finished" in line for line in said) == 4 and said[-1].endswith("(4/4 runs done)")


def test_dry_run_shows_each_runs_stack_and_why_the_others_train_alone(tiny_config):
    from workbench.dry_run import describe_plan

    config = _config(tiny_config, [dict(algorithm="sgd", lr=grid([0.05, 0.1])),
                                   dict(algorithm="newton_summary", hg_batch_size=16)], stack=True, stack_size=3)
    text = describe_plan(Config.of(config))
    header, *rows = [line for line in text.splitlines()[:8] if line.strip() and not line.startswith("-")]
    assert header.split()[-1] == "stack"
    assert [row.split()[-1] for row in rows] == ["1", "1", "-", "1", "-", "-"]
    assert "stack=True: 3 runs in 1 stack (3 runs), 3 runs alone (2 newton_summary: " in text
    assert "1 sgd: no other run of its algorithm to stack with (stack_size=3)" in text


def test_inputs_of_a_stack_are_each_members_inputs(tiny_config):
    """uint8 images normalised per channel (CIFAR, image folders): a stack's [M, B, C, H, W] batch
    is normalised along its channel axis, as each member's [B, C, H, W] batch is."""
    from workbench.problem import DataSplit, build_problem

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 4, 4), generator=g, dtype=torch.uint8)
    data = DataSplit(images[:16], torch.arange(16) % 3, images[16:], torch.arange(4) % 3, task="classification",
                     n_outputs=3, normalise=((0.2, 0.5, 0.8), (0.1, 0.2, 0.3)))
    problem = build_problem(Config.of({**tiny_config, "dataset_args": {}}), torch.device("cpu"), data=data)
    idx = torch.randperm(16, generator=g).view(2, 8)
    stacked = problem.inputs(data.x_train[idx])
    for k in range(2):
        assert torch.equal(stacked[k], problem.inputs(data.x_train[idx[k]]))
    channel = problem.inputs(data.x_train[:1])[0, 2]
    assert torch.equal(channel, (data.x_train[0, 2].double() - 0.8) / 0.3)  # the third channel's own mean and std
