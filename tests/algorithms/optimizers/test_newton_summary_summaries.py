"""NewtonSummary partitions and summaries (H-bar, g-bar, order3) against brute-force autograd."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from algorithms.optimizers import compute_Hg, partition
from algorithms.optimizers.newton_summary.summaries import compute_Hg_reverse
from tests.algorithms.optimizers._newton_summary_helpers import DT, Poly, batch, brute_summaries, ce_loss, F_of_t, tanh_mlp

BACKENDS = ("func", "batched", "reverse")


def test_partitions_of_a_two_layer_mlp():
    model = tanh_mlp()
    W1, b1, W2, b2 = model.parameters()
    pg, names = partition.canonical(model)
    assert [g["params"] for g in pg] == [[W1], [b1], [W2], [b2]]
    assert names == [["0.weight"], ["0.bias"], ["2.weight"], ["2.bias"]]
    pg, names = partition.trivial(model)
    assert len(pg) == 1 and pg[0]["params"] == [W1, b1, W2, b2]
    pg, names = partition.wb(model)
    assert [g["params"] for g in pg] == [[W1, W2], [b1, b2]]
    model.scale = nn.Parameter(torch.ones((), dtype=DT))
    pg, names = partition.wb(model)
    assert len(pg) == 3 and names[2] == ["scale"]
    for fn in (partition.canonical, partition.trivial, partition.wb):
        pg, _ = fn(model)
        flat = [id(p) for g in pg for p in g["params"]]
        assert sorted(flat) == sorted(id(p) for p in model.parameters()) and len(set(flat)) == len(flat)


def test_partition_rejects_duplicates_and_missing():
    model = tanh_mlp()
    with pytest.raises(ValueError, match="two subsets"):
        partition.from_names(model, [["0.weight"], ["0.weight", "0.bias", "2.weight", "2.bias"]])
    with pytest.raises(ValueError, match="missing"):
        partition.from_names(model, [["0.weight"]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make", [partition.canonical, partition.wb, partition.trivial])
def test_summaries_match_brute_force_derivatives_of_F(backend, make):
    model = tanh_mlp()
    x, y = batch()
    pg, _ = make(model)
    torch.manual_seed(3)
    u = [torch.randn_like(p) for g in pg for p in g["params"]]
    H, g, o3 = compute_Hg(pg, ce_loss(model), x, y, u, model=model, backend=backend)
    g_ref, H_ref, o3_ref = brute_summaries(F_of_t(model, ce_loss(model), pg, u, x, y), len(pg))
    torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(H, H_ref, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(o3, o3_ref, rtol=1e-7, atol=1e-11)
    torch.testing.assert_close(H, H.T, rtol=0, atol=0)


def test_H_bar_is_the_projected_full_hessian():
    model = tanh_mlp()
    x, y = batch()
    pg, _ = partition.canonical(model)
    params = [p for g in pg for p in g["params"]]
    u = [torch.randn_like(p) for p in params]
    shapes = [p.shape for p in params]

    def L(flat):
        chunks = torch.split(flat, [p.numel() for p in params])
        sub = {n: c.reshape(s) for (n, _), c, s in zip(model.named_parameters(), chunks, shapes)}
        return nn.functional.cross_entropy(torch.func.functional_call(model, sub, (x,)), y)
    theta = torch.cat([p.detach().reshape(-1) for p in params])
    Hfull = torch.autograd.functional.hessian(L, theta)
    gfull = torch.autograd.functional.jacobian(L, theta)
    V = torch.zeros(theta.numel(), len(pg), dtype=DT)
    start = 0
    for s, (p, ui) in enumerate(zip(params, u)):
        V[start:start + p.numel(), s] = ui.reshape(-1)
        start += p.numel()
    H, g, _ = compute_Hg(pg, ce_loss(model), x, y, u, model=model)
    torch.testing.assert_close(H, V.T @ Hfull @ V, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g, V.T @ gfull, rtol=1e-9, atol=1e-12)


def _poly_problem():
    model = Poly(D=3)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(9, 3, generator=g, dtype=DT)
    y = torch.randn(9, generator=g, dtype=DT)
    loss = lambda xb, yb: ((model(xb) - yb) ** 2).mean()
    c = torch.stack([p.detach() for p in model.c])

    def L(cv):
        return ((sum(x[:, d] * cv[d] ** (d + 2) for d in range(3)) - y) ** 2).mean()
    grad = torch.autograd.functional.jacobian(L, c)
    hess = torch.autograd.functional.hessian(L, c)
    third = torch.autograd.functional.jacobian(lambda cv: torch.autograd.functional.hessian(L, cv, create_graph=True), c)
    return model, x, y, loss, grad, hess, third


@pytest.mark.parametrize("backend", BACKENDS)
def test_u_ones_polynomial_canonical_and_trivial(backend):
    model, x, y, loss, grad, hess, third = _poly_problem()
    ones = [torch.ones_like(p) for p in model.parameters()]
    pg, _ = partition.canonical(model)
    H, g, o3 = compute_Hg(pg, loss, x, y, ones, model=model, backend=backend)
    torch.testing.assert_close(H, hess, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g, grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(o3, torch.stack([third[i, i, i] for i in range(3)]), rtol=1e-9, atol=1e-12)
    pg, _ = partition.trivial(model)
    H, g, o3 = compute_Hg(pg, loss, x, y, ones, model=model, backend=backend)
    torch.testing.assert_close(H, hess.sum().reshape(1, 1), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g, grad.sum().reshape(1), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(o3, third.sum().reshape(1), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_quadratic_loss_has_zero_order3(backend):
    torch.manual_seed(0)
    model = nn.Linear(4, 3).to(DT)
    x = torch.randn(8, 4, dtype=DT)
    y = torch.randn(8, 3, dtype=DT)
    loss = lambda xb, yb: ((model(xb) - yb) ** 2).sum(1).mean()
    pg, _ = partition.canonical(model)
    u = [torch.randn_like(p) for p in model.parameters()]
    H, g, o3 = compute_Hg(pg, loss, x, y, u, model=model, backend=backend)
    assert o3.abs().max() <= 1e-12
    # exact quadratic: L(theta + V t) = L + g.t + t.H.t/2
    t = torch.tensor([0.3, -0.7], dtype=DT)
    with torch.no_grad():
        before = loss(x, y)
        for p, ui, ts in zip(model.parameters(), u, t):
            p.add_(ts * ui)
        after = loss(x, y)
    torch.testing.assert_close(after - before, g @ t + 0.5 * t @ H @ t, rtol=1e-10, atol=1e-12)


def test_direction_in_the_wrong_order_is_rejected():
    """Ordering seam: wb partition order is [W1, W2], [b1, b2], not model.parameters()."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4)).to(DT)
    x, y = torch.randn(6, 4, dtype=DT), torch.randint(0, 4, (6,))
    pg, _ = partition.wb(model)
    u_model_order = [torch.randn_like(p) for p in model.parameters()]
    with pytest.raises(ValueError, match="partition order"):
        compute_Hg(pg, ce_loss(model), x, y, u_model_order, model=model)
    u = [u_model_order[i] for i in (0, 2, 1, 3)]
    H, g, o3 = compute_Hg(pg, ce_loss(model), x, y, u, model=model)
    g_ref, H_ref, o3_ref = brute_summaries(F_of_t(model, ce_loss(model), pg, u, x, y), 2)
    torch.testing.assert_close(H, H_ref, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(o3, o3_ref, rtol=1e-7, atol=1e-11)


def test_closure_without_model_and_order3_off():
    model = tanh_mlp()
    x, y = batch()
    pg, _ = partition.canonical(model)
    u = [torch.randn_like(p) for p in model.parameters()]
    H, g, o3 = compute_Hg(pg, ce_loss(model), x, y, u)  # no model: batched autograd backend
    Hr, gr, o3r = compute_Hg_reverse(pg, ce_loss(model), x, y, u)
    torch.testing.assert_close((H, g, o3), (Hr, gr, o3r), rtol=1e-9, atol=1e-12)
    H2, g2, z = compute_Hg(pg, ce_loss(model), x, y, u, model=model, order3=False)
    torch.testing.assert_close((H2, g2), (Hr, gr), rtol=1e-9, atol=1e-12)
    assert torch.count_nonzero(z) == 0
    with pytest.raises(ValueError, match="backend"):
        compute_Hg(pg, ce_loss(model), x, y, u, backend="nope")
    with pytest.raises(ValueError, match="needs the model"):
        compute_Hg(pg, ce_loss(model), x, y, u, backend="func")
