"""Generic torch.optim contracts, driven by a small registry like torch's ``OptimizerInfo``."""
from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass

import pytest
import torch

from algorithms.optimizers import AdEMA, PersistentSGD


@dataclass
class OptimizerInfo:
    cls: type
    configs: list[dict]                 # valid kwargs; each must make progress on a least-squares toy
    group_hypers: dict                  # per-group values that differ from configs[0]
    errors: list[tuple[dict, str]]      # invalid kwargs -> regex the ValueError message must match
    state_keys: tuple[str, ...]


NAN, INF = float("nan"), float("inf")
OPTIM_DB = [
    OptimizerInfo(
        PersistentSGD,
        configs=[dict(lr=0.05, decay=0.9), dict(lr=0.1, decay=0.0), dict(lr=0.02, decay=0.99)],
        group_hypers=dict(lr=0.01, decay=0.5),
        errors=[
            (dict(lr=-0.1), r"learning rate: -0\.1"),
            (dict(lr=NAN), r"learning rate: nan"),
            (dict(lr=INF), r"learning rate: inf"),
            (dict(lr="0.1"), r"learning rate: '0\.1'"),
            (dict(decay=1.0), r"decay value: 1\.0"),
            (dict(decay=-0.01), r"decay value: -0\.01"),
            (dict(decay=1.5), r"decay value: 1\.5"),
            (dict(decay=NAN), r"decay: nan"),
        ],
        state_keys=("persistent_grad",),
    ),
    OptimizerInfo(
        AdEMA,
        configs=[dict(lr=0.5, beta=0.9, decay=0.5), dict(lr=1.0, beta=0.0, decay=0.0), dict(lr=2.0, beta=0.99, decay=0.9)],
        group_hypers=dict(lr=0.1, beta=0.5, decay=0.2),
        errors=[
            (dict(lr=-1e-3), r"learning rate: -0\.001"),
            (dict(lr=INF), r"learning rate: inf"),
            (dict(beta=1.0), r"beta value: 1\.0"),
            (dict(beta=-0.5), r"beta value: -0\.5"),
            (dict(decay=1.0), r"decay value: 1\.0"),
            (dict(decay=-1e-9), r"decay value: -1e-09"),
            (dict(decay=INF), r"decay: inf"),
        ],
        state_keys=("exp_avg",),
    ),
]
CASES = [pytest.param(info, cfg, id=f"{info.cls.__name__}-{i}")
         for info in OPTIM_DB for i, cfg in enumerate(info.configs)]
INFOS = [pytest.param(info, id=info.cls.__name__) for info in OPTIM_DB]


def problem(seed: int = 0):
    """Parameters of several shapes (and one float32 tensor, to exercise dtype grouping) and a
    least-squares loss on them."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(30, 5, generator=gen, dtype=torch.float64)
    B = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(30, generator=gen, dtype=torch.float64)
    init = [torch.randn(5, generator=gen, dtype=torch.float64) * 0.3,
            torch.randn(3, 1, generator=gen, dtype=torch.float64) * 0.3,
            torch.randn((), generator=gen, dtype=torch.float64),
            torch.randn(3, generator=gen, dtype=torch.float64).float()]

    def params():
        return [t.clone().requires_grad_() for t in init]

    def loss(ps):
        w, v, c, u = ps
        return 0.5 * ((A @ w + (B @ v).squeeze(1) + c + 0.1 * (B @ u.double()) - y) ** 2).mean()

    return params, loss


def train(opt, ps, loss_fn, n: int):
    for _ in range(n):
        opt.zero_grad()
        loss_fn(ps).backward()
        opt.step()


@pytest.mark.parametrize("info,cfg", CASES)
def test_decreases_loss_and_stays_finite(info, cfg):
    params_fn, loss_fn = problem()
    ps = params_fn()
    start = loss_fn(ps).item()
    train(info.cls(ps, **cfg), ps, loss_fn, 100)
    assert all(torch.isfinite(p).all() for p in ps)
    assert loss_fn(ps).item() < 0.5 * start


@pytest.mark.parametrize("info,cfg", CASES)
def test_foreach_matches_forloop(info, cfg):
    params_fn, loss_fn = problem()
    ps_loop, ps_multi = params_fn(), params_fn()
    train(info.cls(ps_loop, **cfg, foreach=False), ps_loop, loss_fn, 50)
    train(info.cls(ps_multi, **cfg, foreach=True), ps_multi, loss_fn, 50)
    for a, b in zip(ps_loop, ps_multi):
        torch.testing.assert_close(a, b, atol=1e-15, rtol=0.0)


@pytest.mark.parametrize("info,cfg", CASES)
def test_closure_value_is_returned(info, cfg):
    params_fn, loss_fn = problem()
    ps = params_fn()
    opt = info.cls(ps, **cfg)
    calls = []

    def closure():
        opt.zero_grad()
        loss = loss_fn(ps)
        loss.backward()  # the optimizer runs the closure with grad enabled
        calls.append(loss.item())
        return loss

    before = [p.detach().clone() for p in ps]
    with torch.no_grad():  # step must enable grad for the closure itself
        returned = opt.step(closure)
    assert len(calls) == 1 and returned.item() == calls[0]
    assert any(not torch.equal(a, p) for a, p in zip(before, ps))
    loss_fn(ps).backward()
    assert opt.step() is None


@pytest.mark.parametrize("info", INFOS)
def test_params_without_grad_are_skipped_and_get_no_state(info):
    params_fn, loss_fn = problem()
    ps = params_fn()
    frozen = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = info.cls(ps + [frozen], **info.configs[0])
    train(opt, ps, loss_fn, 3)
    assert frozen.grad is None and frozen not in opt.state  # (indexing the defaultdict would add it)
    torch.testing.assert_close(frozen, torch.zeros(4, dtype=torch.float64), atol=0.0, rtol=0.0)
    for p in ps:
        assert set(opt.state[p]) == set(info.state_keys)


@pytest.mark.parametrize("info", INFOS)
def test_state_is_created_lazily(info):
    """No state before a step; a step creates zero buffers for the parameters with a gradient only,
    so the first update equals the one a zero buffer gives."""
    params_fn, loss_fn = problem()
    ps = params_fn()
    opt = info.cls(ps, **info.configs[0])
    assert len(opt.state) == 0
    opt.zero_grad()
    loss_fn(ps).backward()
    ps[-1].grad = None  # no gradient: no state, not moved
    before = [p.detach().clone() for p in ps]
    opt.step()
    assert ps[-1] not in opt.state and torch.equal(ps[-1], before[-1])
    for p in ps[:-1]:
        assert set(opt.state[p]) == set(info.state_keys)
    assert not torch.equal(ps[0], before[0])


@pytest.mark.parametrize("info", INFOS)
def test_per_group_hyperparameters_are_honoured(info):
    """Two groups with different hyperparameters = two separate optimizers, one per group."""
    params_fn, loss_fn = problem()
    ps = params_fn()
    qs = params_fn()
    grouped = info.cls([{"params": ps[:2]}, {"params": ps[2:], **info.group_hypers}], **info.configs[0])
    first = info.cls(qs[:2], **info.configs[0])
    second = info.cls(qs[2:], **{**info.configs[0], **info.group_hypers})
    for _ in range(30):
        for opts, xs in (((grouped,), ps), ((first, second), qs)):
            for o in opts:
                o.zero_grad()
            loss_fn(xs).backward()
            for o in opts:
                o.step()
    for a, b in zip(ps, qs):
        torch.testing.assert_close(a, b, atol=0.0, rtol=0.0)
    # and the groups really differ: the same run with one group lands elsewhere
    rs = params_fn()
    train(info.cls(rs, **info.configs[0]), rs, loss_fn, 30)
    assert not torch.equal(rs[2], ps[2])


@pytest.mark.parametrize("info", INFOS)
def test_invalid_hyperparameters_raise_value_error_naming_the_value(info):
    params_fn, _ = problem()
    for kwargs, pattern in info.errors:
        with pytest.raises(ValueError, match=pattern):
            info.cls(params_fn(), **{**info.configs[0], **kwargs})
        # the same check applies to a param group added later with its own values
        opt = info.cls(params_fn()[:1], **info.configs[0])
        with pytest.raises(ValueError, match=pattern):
            opt.add_param_group({"params": params_fn()[1:2], **kwargs})


@pytest.mark.parametrize("info", INFOS)
def test_sparse_gradients_are_rejected(info):
    emb = torch.nn.Embedding(5, 3, sparse=True).double()
    opt = info.cls(emb.parameters(), **info.configs[0])
    emb(torch.tensor([0, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


@pytest.mark.parametrize("info,cfg", CASES)
def test_state_dict_round_trip_continues_exactly(info, cfg):
    """state_dict -> fresh optimizer -> load_state_dict -> continuing == never stopping."""
    params_fn, loss_fn = problem()
    ps = params_fn()
    opt = info.cls(ps, **cfg)
    train(opt, ps, loss_fn, 20)
    saved_params = [p.detach().clone() for p in ps]
    saved_state = copy.deepcopy(opt.state_dict())
    train(opt, ps, loss_fn, 20)

    qs = [t.clone().requires_grad_() for t in saved_params]
    fresh = info.cls(qs, **{k: 0.0 for k in cfg})  # different hyperparameters: they come from the state
    fresh.load_state_dict(pickle.loads(pickle.dumps(saved_state)))
    assert fresh.param_groups[0]["lr"] == cfg["lr"]
    train(fresh, qs, loss_fn, 20)
    for a, b in zip(ps, qs):
        torch.testing.assert_close(a, b, atol=0.0, rtol=0.0)


@pytest.mark.parametrize("info", INFOS)
def test_setstate_fills_flags_missing_from_old_pickles(info):
    params_fn, loss_fn = problem()
    opt = info.cls(params_fn(), **info.configs[0])
    state = opt.__getstate__()
    for group in state["param_groups"]:
        del group["foreach"]
    old = info.cls.__new__(info.cls)
    old.__setstate__(state)
    assert all(group["foreach"] is None for group in old.param_groups)


@pytest.mark.parametrize("info", INFOS)
def test_zero_lr_leaves_parameters_unchanged_but_builds_state(info):
    params_fn, loss_fn = problem()
    ps = params_fn()
    before = [p.detach().clone() for p in ps]
    opt = info.cls(ps, **{**info.configs[0], "lr": 0.0})
    train(opt, ps, loss_fn, 3)
    for a, p in zip(before, ps):
        torch.testing.assert_close(p.detach(), a, atol=0.0, rtol=0.0)
    assert all(torch.count_nonzero(opt.state[p][info.state_keys[0]]) > 0 for p in ps)
