"""Shared tiny float64 models and brute-force oracles for the NewtonSummary tests."""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

DT = torch.float64


def tanh_mlp(sizes=(5, 6, 4), seed=0) -> nn.Module:
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).to(DT)


def batch(n=7, d=5, classes=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=DT), torch.randint(0, classes, (n,), generator=g)


def ce_loss(model):
    return lambda x, y: nn.functional.cross_entropy(model(x), y)


def F_of_t(model, full_loss, groups, direction, x, y):
    """t (S,) -> L(theta + sum_s t_s v_s), through functional_call (brute-force oracle)."""
    names = {id(p): n for n, p in model.named_parameters()}
    flat = [(names[id(p)], p.detach(), s) for s, grp in enumerate(groups) for p in grp["params"]]

    def F(t):
        sub = {n: p + t[s] * u for (n, p, s), u in zip(flat, direction)}
        return functional_call(model, sub, (x,)) if full_loss is None else _call(model, full_loss, sub, x, y)
    return F


def _call(model, full_loss, sub, x, y):
    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x, y):
            return full_loss(x, y)
    return functional_call(Wrap(), {"model." + k: v for k, v in sub.items()}, (x, y))


def brute_summaries(F, S):
    """g, H, diag third derivatives of F at 0 with torch.autograd.functional (no torch.func)."""
    t0 = torch.zeros(S, dtype=DT)
    g = torch.autograd.functional.jacobian(F, t0)
    H = torch.autograd.functional.hessian(F, t0)
    o3 = torch.zeros(S, dtype=DT)
    for s in range(S):
        e = torch.zeros(S, dtype=DT)
        e[s] = 1.0

        def f(tau):
            return F(tau * e)
        tau = torch.zeros((), dtype=DT, requires_grad=True)
        d1, = torch.autograd.grad(f(tau), tau, create_graph=True)
        d2, = torch.autograd.grad(d1, tau, create_graph=True)
        d3, = torch.autograd.grad(d2, tau)
        o3[s] = d3
    return g, H, o3


class Poly(nn.Module):
    """s(x) = sum_d x_d c_d^(d+1) with one scalar parameter per coefficient (grnewt's test model)."""

    def __init__(self, D=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.c = nn.ParameterList([nn.Parameter(0.5 + torch.rand((), generator=g, dtype=DT)) for _ in range(D)])

    def forward(self, x):
        return sum(x[:, d] * self.c[d] ** (d + 2) for d in range(len(self.c)))
