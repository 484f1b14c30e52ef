"""NewtonSummary optimizer semantics: the README example, period, mom_lrs, remove_negative,
damping, the update formula, noregul call counts, fallback, ordering seam with wb, layer-wise
reparametrisation invariance, state_dict round trip, fullbatch_gradient."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from algorithms.optimizers import NewtonSummary, compute_Hg, fullbatch_gradient, nesterov_lrs, partition
from algorithms.optimizers.newton_summary.workbench_algorithm import scaled_mlp
from tests.algorithms.optimizers._newton_summary_helpers import DT, F_of_t, batch, brute_summaries, ce_loss, tanh_mlp


def _data(n=48, d=5, classes=4, seed=1):
    return batch(n, d, classes, seed)


def _opt(model, groups=None, hg=None, **kw):
    x, y = _data()
    groups = groups if groups is not None else partition.canonical(model)[0]
    hg = hg if hg is not None else [(x[:24], y[:24])]
    return NewtonSummary(groups, ce_loss(model), hg, **kw), x, y


def _train(opt, model, x, y, steps, bs=8):
    for k in range(steps):
        i = (k * bs) % x.shape[0]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + bs]), y[i:i + bs]).backward()
        opt.step()


def test_readme_minimal_example_runs_as_written():
    import algorithms.optimizers as grnewt  # the only changed line: import grnewt
    torch.manual_seed(0)
    X, Y = torch.randn(96, 6), torch.randint(0, 3, (96,))
    ds = torch.utils.data.TensorDataset(X, Y)
    data_loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    loss_fn = lambda output, target: nn.functional.cross_entropy(output, target)
    hg_loader = torch.utils.data.DataLoader(ds, batch_size=48, shuffle=True)
    damping = .1
    damping_int = 10.
    full_loss = lambda x, target: loss_fn(model(x), target)
    param_groups, name_groups = grnewt.partition.canonical(model)
    optimizer = grnewt.NewtonSummary(param_groups, full_loss, hg_loader,
                                     damping=damping, dct_nesterov={'use': True, 'damping_int': damping_int},
                                     period_hg=10, mom_lrs=.5, remove_negative=True,
                                     momentum=.9, momentum_damp=.9)
    for epoch in range(4):
        for x, target in data_loader:
            optimizer.zero_grad()
            output = model(x)
            loss = loss_fn(output, target)
            loss.backward()
            optimizer.step()
    st = optimizer.summary_state
    assert st["step"] == 12 and st["refreshes"] == 2
    assert all(lr >= 0 for lr in optimizer.lrs) and any(lr > 0 for lr in optimizer.lrs)


def test_update_formula_period_and_momentum_direction():
    model = tanh_mlp()
    opt, x, y = _opt(model, damping=0.3, dct_nesterov={"use": True, "damping_int": 1.0}, period_hg=3,
                     momentum=0.5, momentum_damp=0.2)
    buf, refreshes = None, []
    for k in range(7):
        before = [p.detach().clone() for p in model.parameters()]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[k * 6:k * 6 + 6]), y[k * 6:k * 6 + 6]).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        buf = grads if buf is None else [0.5 * b + 0.8 * g for b, g in zip(buf, grads)]
        lrs_before = opt.lrs
        opt.step()
        refreshes.append(opt.summary_state["refreshes"])
        if k % 3 != 0:
            assert opt.lrs == lrs_before  # frozen between refreshes
        for p0, p, u, lr in zip(before, model.parameters(), buf, opt.lrs):
            torch.testing.assert_close(p.detach(), p0 - lr * u, rtol=1e-12, atol=1e-14)
    assert refreshes == [1, 1, 1, 2, 2, 2, 3]
    # the lrs are damping * eta of the cubic model at the refresh
    st = opt.summary_state
    np.testing.assert_allclose(opt.lrs, 0.3 * st["lrs"].numpy(), rtol=1e-15)


def test_refresh_uses_hg_batch_and_cubic_step():
    model = tanh_mlp()
    xh, yh = _data(seed=9)
    opt, x, y = _opt(model, hg=[(xh, yh)], dct_nesterov={"use": True, "damping_int": 2.0})
    opt.zero_grad()
    nn.functional.cross_entropy(model(x[:8]), y[:8]).backward()
    u = [p.grad.clone() for p in model.parameters()]
    pg = partition.canonical(model)[0]
    H, g, o3 = compute_Hg(pg, ce_loss(model), xh, yh, u, model=model, backend="reverse")
    eta, _ = nesterov_lrs(H, g, o3, 2.0)
    opt.step()
    np.testing.assert_allclose(opt.lrs, eta.numpy(), rtol=1e-9)


def test_mom_lrs_first_refresh_and_remove_negative():
    model = tanh_mlp(seed=4)
    opt, x, y = _opt(model, dct_nesterov={"use": True, "damping_int": 1.0}, mom_lrs=0.7,
                     remove_negative=True, hg=[_data(seed=s) for s in (2, 3, 4)])
    seen_negative = False
    prev = None
    for k in range(3):
        _train(opt, model, x[k * 8:], y[k * 8:], 1)
        st = opt.summary_state
        raw = st["eta"].clamp(min=0)
        seen_negative |= bool((st["eta"] < 0).any())
        expected = raw if prev is None else 0.7 * prev + 0.3 * raw
        torch.testing.assert_close(st["lrs"], expected, rtol=1e-12, atol=1e-15)
        assert (st["lrs"] >= 0).all()
        prev = st["lrs"].clone()
    assert seen_negative  # this seed exercises the clamp


def test_noregul_uses_first_and_second_order_only(monkeypatch):
    """noregul asks the summaries for no third derivatives, and solves (H-bar + ridge I) eta = g-bar
    with H-bar, g-bar the brute-force derivatives of t -> L(theta + sum_s t_s u_s) on the hg batch."""
    from algorithms.optimizers.newton_summary import optimizer as module

    model = tanh_mlp()
    opt, x, y = _opt(model, noregul=True, ridge=0.1, backend="reverse")
    asked = []
    real = module.compute_Hg
    monkeypatch.setattr(module, "compute_Hg", lambda *a, **kw: (asked.append(kw["order3"]), real(*a, **kw))[1])
    opt.zero_grad()
    nn.functional.cross_entropy(model(x[:8]), y[:8]).backward()
    groups = opt.param_groups
    u = [p.grad.detach().clone() for g in groups for p in g["params"]]  # the first direction is the gradient
    g_ref, H_ref, _ = brute_summaries(F_of_t(model, ce_loss(model), groups, u, x[:24], y[:24]), len(groups))
    opt.step()
    assert asked == [False]
    st = opt.summary_state
    torch.testing.assert_close(st["H"], H_ref, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(st["g"], g_ref, rtol=1e-8, atol=1e-12)
    S = len(groups)
    np.testing.assert_allclose(st["eta"].numpy(), np.linalg.solve(H_ref.numpy() + 0.1 * np.eye(S), g_ref.numpy()),
                               rtol=1e-8)
    assert st["status"] == "newton" and torch.count_nonzero(st["order3"]) == 0


class _Quadratic(nn.Module):
    def __init__(self, A, b):
        super().__init__()
        self.A, self.b = A, b
        self.p = nn.Parameter(torch.ones(1, dtype=DT))
        self.q = nn.Parameter(torch.ones(1, dtype=DT))

    def loss(self, x=None, y=None):
        th = torch.cat([self.p, self.q])
        return 0.5 * th @ self.A @ th - self.b @ th


def test_fallback_is_explicit_and_recorded():
    m = _Quadratic(torch.diag(torch.tensor([1.0, -2.0], dtype=DT)), torch.tensor([0.3, 0.5], dtype=DT))
    pg, _ = partition.canonical(m)
    opt = NewtonSummary(pg, m.loss, [(None, None)], dct_nesterov={"use": True, "damping_int": 1.0})
    opt.zero_grad()
    m.loss().backward()
    with pytest.warns(RuntimeWarning, match="keeping the previous"):
        opt.step()
    st = opt.summary_state
    assert st["status"] == "unbounded" and st["status_counts"]["fallback"] == 1
    assert opt.lrs == [0.0, 0.0]
    torch.testing.assert_close(torch.cat([m.p, m.q]).detach(), torch.ones(2, dtype=DT))
    # a positive definite quadratic: the step is Newton's (D = 0) and lands on the minimiser
    m2 = _Quadratic(torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=DT), torch.tensor([0.3, 0.5], dtype=DT))
    opt2 = NewtonSummary(partition.canonical(m2)[0], m2.loss, [(None, None)],
                         dct_nesterov={"use": True, "damping_int": 1.0})
    opt2.zero_grad()
    m2.loss().backward()
    opt2.step()
    assert opt2.summary_state["status"] == "newton"
    torch.testing.assert_close(torch.cat([m2.p, m2.q]).detach(), torch.linalg.solve(m2.A, m2.b))


def test_wb_partition_ordering_seam_constant_width():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4)).to(DT)
    x, y = torch.randn(16, 4, dtype=DT), torch.randint(0, 4, (16,))
    pg, names = partition.wb(model)
    assert names == [["0.weight", "2.weight"], ["0.bias", "2.bias"]]
    opt = NewtonSummary(pg, ce_loss(model), [(x, y)], dct_nesterov={"use": True, "damping_int": 1.0})
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    u = [grads[n] for grp in names for n in grp]  # partition order
    H, g, o3 = compute_Hg(pg, ce_loss(model), x, y, u, model=model, backend="reverse")
    eta, _ = nesterov_lrs(H, g, o3, 1.0)
    opt.step()
    for s, grp in enumerate(names):
        for n in grp:
            torch.testing.assert_close(dict(model.named_parameters())[n].detach(),
                                       before[n] - eta[s].item() * grads[n], rtol=1e-10, atol=1e-13)


def _scaled_run(weight_scales, bias_scales, make=partition.canonical, steps=4):
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(DT)  # W / a stored in float64, so a * (W / a) = W to rounding
    try:
        model = scaled_mlp((5,), 3, hidden=[6], activation="tanh", weight_scales=weight_scales,
                           bias_scales=bias_scales)
    finally:
        torch.set_default_dtype(default)
    x, y = batch(32, 5, 3, seed=3)
    opt = NewtonSummary(make(model)[0], ce_loss(model), [(x[:16], y[:16]), (x[16:], y[16:])],
                        dct_nesterov={"use": True, "damping_int": 1.0}, period_hg=2, mom_lrs=0.5,
                        momentum=0.9, momentum_damp=0.9, damping=0.5)
    losses = []
    for k in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[k * 8:k * 8 + 8]), y[k * 8:k * 8 + 8])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    effective = [m.weight_scale * m.weight.detach() for m in model if hasattr(m, "weight_scale")]
    return np.array(losses), effective


def test_layerwise_reparametrisation_invariance_end_to_end():
    ref_loss, ref_w = _scaled_run([1.0, 1.0], [1.0, 1.0])
    loss, w = _scaled_run([3.0, 0.2], [0.5, 7.0])
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-9)
    for a, b in zip(w, ref_w):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    # one subset holding a weight and a bias scaled differently breaks the invariance
    ref_loss, ref_w = _scaled_run([1.0, 1.0], [1.0, 1.0], make=partition.trivial)
    _, w = _scaled_run([3.0, 0.2], [0.5, 7.0], make=partition.trivial)
    assert not torch.allclose(w[0], ref_w[0], rtol=1e-4)


def test_state_dict_round_trip_continues_exactly():
    model = tanh_mlp()
    opt, x, y = _opt(model, dct_nesterov={"use": True, "damping_int": 1.0}, period_hg=3, mom_lrs=0.5,
                     momentum=0.9, momentum_damp=0.5)
    _train(opt, model, x, y, 4)
    model2 = copy.deepcopy(model)
    sd = copy.deepcopy(opt.state_dict())
    opt2 = NewtonSummary(partition.canonical(model2)[0], ce_loss(model2), [(x[:24], y[:24])],
                         dct_nesterov={"use": True, "damping_int": 1.0}, period_hg=3, mom_lrs=0.5,
                         momentum=0.9, momentum_damp=0.5)
    opt2.load_state_dict(sd)
    assert opt2.summary_state["step"] == 4 and opt2.lrs == opt.lrs
    _train(opt, model, x[8:], y[8:], 5)
    _train(opt2, model2, x[8:], y[8:], 5)
    for p, q in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert opt2.summary_state["status_counts"] == opt.summary_state["status_counts"]
    assert sd["state"]["newton_summary"]["step"] == 4  # the saved dict was not mutated


def test_hyperparameter_validation():
    model = tanh_mlp()
    pg = partition.canonical(model)[0]
    for kw in (dict(damping=-1.0), dict(period_hg=0), dict(mom_lrs=1.0), dict(momentum=-0.1),
               dict(momentum_damp=1.5), dict(dct_nesterov={"use": True, "damping_int": -1.0}),
               dict(dct_nesterov={"use": True, "dampnig_int": 1.0}), dict(backend="x")):
        with pytest.raises(ValueError):
            NewtonSummary(pg, ce_loss(model), [], **kw)


def test_fullbatch_gradient():
    model = tanh_mlp()
    x, y = _data()
    loss_fn = nn.functional.cross_entropy
    full = torch.autograd.grad(loss_fn(model(x), y), list(model.parameters()))
    chunked = fullbatch_gradient(model, loss_fn, (x, y), batch_size=10)
    loader = fullbatch_gradient(model, loss_fn, [(x[:20], y[:20]), (x[20:], y[20:])])
    for a, b, c, p in zip(full, chunked, loader, model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(c, a, rtol=1e-12, atol=1e-14)
        assert p.grad is None
    pg, _ = partition.wb(model)
    ordered = fullbatch_gradient(model, loss_fn, (x, y), params=[p for g in pg for p in g["params"]])
    torch.testing.assert_close(ordered[1], full[2])  # W2 comes second in wb order
