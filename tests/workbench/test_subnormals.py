"""Subnormal floats: every training process flushes them by default (x86 computes them ~100x
slower; AdamW's first moments of rarely active inputs decay into them), the record says whether a
run flushed, ``flush_denormal=False`` keeps them, and ``workers="auto"`` trains a one-run plan in
this process."""
from __future__ import annotations

import copy
import io
import os
import pickle

import pytest
import torch

from workbench import record
from workbench.problem import DataSplit
from workbench.registry import DATASETS
from workbench.runner import Experiment, Hooks

if not torch.set_flush_denormal(False):
    pytest.skip("this CPU cannot flush subnormal numbers", allow_module_level=True)

TINIEST_NORMAL = torch.finfo(torch.float32).tiny  # 1.2e-38


@DATASETS.register("test_rare_feature")
def rare_feature(data_dir=None, n=1024, d=4) -> DataSplit:
    """Feature 0 is 1 in one training example and 0 elsewhere: between that example's visits,
    AdamW's first moment of its weights decays by beta1 = 0.9 a step (below 1.2e-38 in ~850 steps)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    x[:, 0] = 0.0
    x[0, 0] = 1.0
    y = (x[:, 1] > 0).long()
    return DataSplit(x, y, x[:64].clone(), y[:64].clone(), task="classification", n_outputs=2)


def _subnormals(tensors) -> int:
    return sum(int(((t != 0) & (t.abs() < TINIEST_NORMAL)).sum()) for t in tensors
               if isinstance(t, torch.Tensor) and t.is_floating_point())


def _stopped_adamw(tiny_config, flush: bool, steps: int = 1500):
    """An AdamW run stopped after ``steps`` steps (batch 1: the rare example comes once an epoch):
    its checkpoint (model and optimizer state) and its record."""
    config = copy.deepcopy(tiny_config)
    config.update(dataset="test_rare_feature", dataset_args={}, dtype="float32", batch_size=1, epochs=None,
                  max_steps=10 * steps, log_every=500, flush_denormal=flush,
                  runs=[dict(algorithm="adamw", lr=1e-3, weight_decay=0.0)])
    experiment = Experiment.create(config, hooks=Hooks(should_stop=lambda state: state.step >= steps))
    try:
        assert experiment.run() == 130
    finally:
        torch.set_flush_denormal(False)
    ckpt = torch.load(io.BytesIO((experiment.run_dir / "checkpoints" / "run_000.pt").read_bytes()),
                      weights_only=False)
    return ckpt["algorithm"], record.load_history(experiment.run_dir)


def _state_tensors(algorithm_state: dict) -> list[torch.Tensor]:
    found = []

    def walk(value):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
    walk(algorithm_state)
    return found


def test_adamw_state_holds_no_subnormal_with_the_flag_and_the_record_says_so(tiny_config):
    unflushed, history_off = _stopped_adamw(tiny_config, flush=False)
    flushed, history_on = _stopped_adamw(tiny_config, flush=True)
    # the setting matters: without the flag the first moments of feature 0's weights are subnormal
    assert _subnormals(_state_tensors(unflushed)) > 0
    assert _subnormals(_state_tensors(flushed)) == 0
    assert history_on["runs"][0]["where"]["subnormals_flushed"] is True
    assert history_off["runs"][0]["where"]["subnormals_flushed"] is False
    assert history_on["environment"]["execution"]["flush_denormal"] is True
    assert history_off["environment"]["execution"]["flush_denormal"] is False
    assert history_on["config"]["flush_denormal"] is True


def test_activations_of_a_flushing_process_hold_no_subnormal():
    """The mode covers every op of the process's threads: a forward pass whose pre-activations
    underflow gives zeros, not subnormals, once configure_torch has run."""
    from workbench.problem import configure_torch

    layer = torch.nn.Linear(8, 8)
    x = torch.full((4, 8), 1e-20)
    with torch.no_grad():
        layer.weight.fill_(1e-20)
        layer.bias.zero_()
        assert _subnormals([layer(x)]) > 0  # 8e-40: subnormal in float32
        configure_torch({"threads": None, "flush_denormal": True})
        try:
            assert _subnormals([layer(x)]) == 0
        finally:
            torch.set_flush_denormal(False)


def test_runs_that_meet_no_subnormal_are_bit_identical_either_way(tiny_config):
    from tests.workbench.test_parallel import _assert_same_numbers

    histories = []
    for flush in (False, True):
        experiment = Experiment.create({**copy.deepcopy(tiny_config), "flush_denormal": flush})
        try:
            experiment.run()
        finally:
            torch.set_flush_denormal(False)
        histories.append(record.load_history(experiment.run_dir))
    _assert_same_numbers(*histories)


def test_a_record_from_before_the_name_resumes_without_flushing(tiny_config):
    """Records written before flush_denormal existed were trained without it: so they resume."""
    config = copy.deepcopy(tiny_config)
    experiment = Experiment.create(config, hooks=Hooks(should_stop=lambda state: state.step >= 4))
    experiment.run()
    history = record.load_history(experiment.run_dir)
    del history["config"]["flush_denormal"]
    record.atomic_write_bytes(experiment.run_dir / record.HISTORY, pickle.dumps(history))
    resumed = Experiment.resume(experiment.run_dir)
    assert resumed.config["flush_denormal"] is False


def test_workers_auto_is_one_process_per_run_up_to_the_cores(tiny_config, monkeypatch):
    from workbench.execution import resolved_workers
    from workbench.executors import InProcess, LocalWorkers, make_executor

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    auto = {**tiny_config, "workers": "auto", "threads": 1}
    assert resolved_workers(auto, runs=3) == 3
    assert resolved_workers(auto, runs=20) == 8
    assert resolved_workers({**auto, "threads": 2}, runs=20) == 4
    assert isinstance(make_executor(auto, runs=1), InProcess)
    assert isinstance(make_executor(auto, runs=2), LocalWorkers)
    one_run = {**copy.deepcopy(tiny_config), "workers": "auto", "runs": tiny_config["runs"][:1]}
    experiment = Experiment.create(one_run)
    experiment.run()
    torch.set_flush_denormal(False)
    history = record.load_history(experiment.run_dir)
    assert history["environment"]["execution"]["executor"] == "this process"
    assert history["runs"][0]["where"]["pid"] == os.getpid()
