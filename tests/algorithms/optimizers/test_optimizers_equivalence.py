"""Oracle tests for PersistentSGD and AdEMA: torch's SGD, closed forms, the heavy-ball stability bound."""
from __future__ import annotations

import math

import pytest
import torch

from algorithms.optimizers import AdEMA, PersistentSGD


def least_squares(seed: int = 0):
    """A fixed over-determined least-squares toy: loss(w, c) = mean((A w + c - b)^2) / 2."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(40, generator=gen, dtype=torch.float64)
    w0 = torch.randn(6, generator=gen, dtype=torch.float64)
    c0 = torch.randn((), generator=gen, dtype=torch.float64)

    def params():
        return [w0.clone().requires_grad_(), c0.clone().requires_grad_()]

    def loss(ps):
        w, c = ps
        return 0.5 * ((A @ w + c - b) ** 2).mean()

    return params, loss


def run(make_opt, n_steps: int, seed: int = 0, before_backward=None):
    """Trajectory (list of parameter copies after each step) of ``make_opt(params)``."""
    params_fn, loss_fn = least_squares(seed)
    ps = params_fn()
    opt = make_opt(ps)
    traj = []
    for _ in range(n_steps):
        if before_backward is None:
            opt.zero_grad(set_to_none=True)
        else:
            before_backward(ps)
        loss_fn(ps).backward()
        opt.step()
        traj.append([p.detach().clone() for p in ps])
    return traj


def assert_same_trajectory(t1, t2, atol=1e-12):
    assert len(t1) == len(t2)
    for a, b in zip(t1, t2):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, atol=atol, rtol=0.0)


# --------------------------------------------------------------------------------- PersistentSGD
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("lr,decay", [(0.05, 0.9), (0.01, 0.99), (0.2, 0.5)])
def test_persistent_sgd_equals_torch_heavy_ball(lr, decay, foreach):
    ours = run(lambda ps: PersistentSGD(ps, lr=lr, decay=decay, foreach=foreach), 300)
    ref = run(lambda ps: torch.optim.SGD(ps, lr=lr, momentum=decay, dampening=0.0, foreach=False), 300)
    assert_same_trajectory(ours, ref)
    # the trajectory really moved (the comparison is not trivially between constants)
    assert (ours[-1][0] - ours[0][0]).abs().max() > 1e-3


def test_persistent_sgd_decay_zero_is_plain_sgd():
    ours = run(lambda ps: PersistentSGD(ps, lr=0.1, decay=0.0), 300)
    ref = run(lambda ps: torch.optim.SGD(ps, lr=0.1), 300)
    assert_same_trajectory(ours, ref)


def test_literal_grad_decay_reading_gives_the_same_trajectory():
    """Kalomaze's literal idea: never zero .grad, scale it by decay before backward (autograd adds
    the new gradient), then plain SGD on .grad. That is the same recursion as the buffer."""
    lr, decay = 0.05, 0.9

    def scale_grads(ps):
        for p in ps:
            if p.grad is not None:
                p.grad.mul_(decay)

    literal = run(lambda ps: torch.optim.SGD(ps, lr=lr), 300, before_backward=scale_grads)
    ours = run(lambda ps: PersistentSGD(ps, lr=lr, decay=decay), 300)
    assert_same_trajectory(ours, literal)


def test_persistent_sgd_constant_gradient_closed_form():
    """Linear loss c.p: b_t = (1 - decay^t)/(1 - decay) c, so each step is -lr b_t -> -lr/(1-decay) c."""
    lr, decay = 0.1, 0.8
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = PersistentSGD([p], lr=lr, decay=decay)
    prev = p.detach().clone()
    for t in range(1, 201):
        opt.zero_grad()
        (c @ p).backward()
        opt.step()
        step = p.detach() - prev
        torch.testing.assert_close(step, -lr * (1 - decay**t) / (1 - decay) * c, atol=1e-13, rtol=1e-12)
        prev = p.detach().clone()
    torch.testing.assert_close(step, -lr / (1 - decay) * c, atol=1e-13, rtol=1e-12)


# ----------------------------------------------------------------------------------------- AdEMA
def test_adema_first_step_closed_form():
    lr, beta, decay = 0.3, 0.9, 0.7
    params_fn, loss_fn = least_squares()
    ps = params_fn()
    loss_fn(ps).backward()
    g = [p.grad.clone() for p in ps]
    p0 = [p.detach().clone() for p in ps]
    AdEMA(ps, lr=lr, beta=beta, decay=decay).step()
    for p, a, gi in zip(ps, p0, g):
        torch.testing.assert_close(p.detach() - a, -lr * (1 - decay) * (1 - beta) * gi, atol=1e-15, rtol=1e-13)


def test_adema_constant_gradient_closed_form():
    """m_t = (1 - beta^t) g; p_t = p_0 - lr(1-decay)(t - beta(1-beta^t)/(1-beta)) g; step -> lr(1-decay) g."""
    lr, beta, decay = 0.5, 0.8, 0.9
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = AdEMA([p], lr=lr, beta=beta, decay=decay)
    prev = p.detach().clone()
    for t in range(1, 201):
        opt.zero_grad()
        (c @ p).backward()
        opt.step()
        torch.testing.assert_close(opt.state[p]["exp_avg"], (1 - beta**t) * c, atol=1e-15, rtol=1e-13)
        expected = -lr * (1 - decay) * (t - beta * (1 - beta**t) / (1 - beta)) * c
        torch.testing.assert_close(p.detach(), expected, atol=1e-12, rtol=1e-12)
        step = p.detach() - prev
        prev = p.detach().clone()
    torch.testing.assert_close(step, -lr * (1 - decay) * c, atol=1e-13, rtol=1e-12)


@pytest.mark.parametrize("foreach", [False, True])
def test_adema_equals_dampened_torch_sgd_with_zero_seeded_buffer(foreach):
    """AdEMA = SGD(lr=lr(1-decay), momentum=beta, dampening=beta) when torch's buffer starts at 0
    (torch otherwise starts it at the raw g_1, which is 1/(1-beta) times AdEMA's m_1)."""
    lr, beta, decay = 0.5, 0.9, 0.8

    def seeded_sgd(ps):
        opt = torch.optim.SGD(ps, lr=lr * (1 - decay), momentum=beta, dampening=beta, foreach=False)
        for p in ps:
            opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return opt

    ours = run(lambda ps: AdEMA(ps, lr=lr, beta=beta, decay=decay, foreach=foreach), 300)
    assert_same_trajectory(ours, run(seeded_sgd, 300))

    unseeded = run(lambda ps: torch.optim.SGD(ps, lr=lr * (1 - decay), momentum=beta, dampening=beta), 1)
    params_fn, _ = least_squares()
    p0 = params_fn()
    for ours_p, torch_p, start in zip(ours[0], unseeded[0], p0):
        torch.testing.assert_close(torch_p - start.detach(), (ours_p - start.detach()) / (1 - beta))


def test_adema_equals_dampened_torch_sgd_from_step_two():
    """Unseeded torch SGD, handed AdEMA's state after step 1 (p_1 and m_1 = (1-beta) g_1), follows
    AdEMA exactly from step 2 on."""
    lr, beta, decay = 0.5, 0.9, 0.8
    params_fn, loss_fn = least_squares()
    ps = params_fn()
    opt = AdEMA(ps, lr=lr, beta=beta, decay=decay)
    loss_fn(ps).backward()
    opt.step()
    qs = [p.detach().clone().requires_grad_() for p in ps]
    ref = torch.optim.SGD(qs, lr=lr * (1 - decay), momentum=beta, dampening=beta)
    for p, q in zip(ps, qs):
        ref.state[q]["momentum_buffer"] = opt.state[p]["exp_avg"].clone()
    for _ in range(200):
        for o, xs in ((opt, ps), (ref, qs)):
            o.zero_grad()
            loss_fn(xs).backward()
            o.step()
    for p, q in zip(ps, qs):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0.0)


# --------------------------------------------------------------------------- heavy-ball stability
def run_quadratic(lam: float, lr: float, decay: float, n_steps: int = 1500) -> float:
    """|x| after n steps of PersistentSGD on f(x) = lam x^2 / 2 from x = 1 (inf/nan if it blew up)."""
    x = torch.ones(1, dtype=torch.float64, requires_grad=True)
    opt = PersistentSGD([x], lr=lr, decay=decay)
    for _ in range(n_steps):
        opt.zero_grad()
        (0.5 * lam * x.pow(2)).sum().backward()
        opt.step()
        if not torch.isfinite(x).all() or x.abs().item() > 1e30:
            return math.inf
    return x.abs().item()


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9])
def test_heavy_ball_stability_bound(decay):
    """x_{t+1} = x_t - h x_t + decay (x_t - x_{t-1}), h = lr lam: stable iff 0 < h < 2(1 + decay)."""
    lam = 4.0
    h_max = 2 * (1 + decay)
    for fraction in (0.01, 0.5, 0.99):
        assert run_quadratic(lam, fraction * h_max / lam, decay) < 1e-8, fraction
    for fraction in (1.01, 1.2):
        assert run_quadratic(lam, fraction * h_max / lam, decay) > 1e8, fraction
    # negative curvature (h < 0): gradient ascent away from the maximum
    assert run_quadratic(-lam, 0.01 * h_max / lam, decay) > 1e8
