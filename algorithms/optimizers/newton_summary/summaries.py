r"""Summaries of the loss along a partition: :math:`\bar H`, :math:`\bar g` and the diagonal third
derivatives, from one batch ``(x, y)`` and one direction :math:`u`.

With the partition :math:`T_1..T_S` of :math:`\theta \in \mathbb{R}^P` and the masked directions
:math:`v_s = u \odot 1[T_s]`, define :math:`F(t) = L(\theta + \sum_s t_s v_s)`, :math:`t \in \mathbb{R}^S`.
At :math:`t = 0`:

.. math::

    \bar g = \nabla_t F = V^\top g \ (S,), \qquad
    \bar H = \nabla^2_t F = V^\top H V \ (S, S), \qquad
    \text{order3}_s = \partial^3_{t_s} F = \tfrac{d^3}{d\tau^3} L(\theta + \tau v_s) \ (S,).

Backends (same numbers, different cost):

* ``"func"`` (needs ``model``): :mod:`torch.func` on :math:`F(t)` itself. One vmapped
  forward-over-forward-over-reverse pass gives, for every direction :math:`e_s` at once, the column
  :math:`\bar H e_s` and :math:`\partial_{t_s}(\bar H e_s)`, whose entry s is order3_s.
* ``"batched"`` (any closure): reverse-over-reverse autograd whose S double and S triple backward
  passes run as ONE vmapped backward each (``is_grads_batched``), not as a Python loop.
* ``"reverse"``: the plain loop of S double- and S triple-backward passes (the reference
  implementation's scheme); the test oracle and the benchmark baseline.

``full_loss(x, y)`` must be a scalar, typically ``loss_fn(model(x), y)`` (mean over the batch).
Models with BatchNorm in training mode or dropout give summaries of a different loss than the
training one under ``"func"``/``"batched"`` (vmap); put them in eval mode first.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["compute_Hg", "compute_Hg_reverse", "flatten_groups", "check_direction"]

BACKENDS = ("auto", "func", "batched", "reverse")


def flatten_groups(param_groups) -> tuple[list[Tensor], list[int]]:
    """Parameters in partition order and, for each, the index s of its subset."""
    params, gidx = [], []
    for s, group in enumerate(param_groups):
        tensors = group["params"] if isinstance(group, dict) else group
        tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
        if not tensors:
            raise ValueError(f"subset {s} of the partition is empty")
        params += tensors
        gidx += [s] * len(tensors)
    if not params:
        raise ValueError("the partition has no subset")
    if len({id(p) for p in params}) != len(params):
        raise ValueError("a parameter appears twice in the partition")
    return params, gidx


def check_direction(params: Sequence[Tensor], direction: Sequence[Tensor]) -> list[Tensor]:
    """The direction as a list matching ``params`` pairwise (partition order); shapes must agree.

    A direction built in another order (e.g. ``model.parameters()`` with the ``wb`` partition) is
    rejected here instead of being broadcast silently."""
    direction = list(direction)
    if len(direction) != len(params):
        raise ValueError(f"direction has {len(direction)} tensors, the partition {len(params)}")
    for i, (p, u) in enumerate(zip(params, direction)):
        if u.shape != p.shape:
            raise ValueError(f"direction tensor {i} has shape {tuple(u.shape)} but parameter {i} "
                             f"(partition order) has shape {tuple(p.shape)}")
    return [u.detach() for u in direction]




def compute_Hg(param_groups, full_loss: Callable[[Tensor, Tensor], Tensor], x, y,
               direction: Sequence[Tensor], *, model: torch.nn.Module | None = None,
               order3: bool = True, backend: str = "auto",
               chunk_size: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(H, g, order3)``: :math:`\\bar H` (S, S) symmetric, :math:`\\bar g` (S,), order3 (S,).

    Args:
        param_groups: the partition (list of dicts with ``"params"``, or of tensor lists).
        full_loss: ``full_loss(x, y) -> scalar`` evaluated at the current parameters.
        x, y: the batch on which the summaries are taken.
        direction: tensors shaped like the parameters, in partition order.
        model: the module whose parameters ``full_loss`` reads; enables the ``"func"`` backend.
        order3: compute the third derivatives (else zeros, saving the third-order pass).
        backend: ``"auto"`` (``"func"`` when ``model`` is given, else ``"batched"``), ``"func"``,
            ``"batched"`` or ``"reverse"``.
        chunk_size: vmap chunk size over the S directions (bounds memory); None = all at once.

    Returned tensors have the parameters' dtype and device, detached.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    params, gidx = flatten_groups(param_groups)
    u = check_direction(params, direction)
    if backend == "auto":
        backend = "func" if model is not None else "batched"
    if backend == "func":
        if model is None:
            raise ValueError("backend='func' needs the model whose parameters full_loss reads")
        return _hg_func(params, gidx, full_loss, x, y, u, model, order3, chunk_size)
    if backend == "batched":
        return _hg_batched(params, gidx, full_loss, x, y, u, order3)
    return _hg_reverse(params, gidx, full_loss, x, y, u, order3)


def compute_Hg_reverse(param_groups, full_loss, x, y, direction, *, order3: bool = True):
    """The plain reverse-over-reverse loop (1 + S + S backward passes): oracle and baseline."""
    return compute_Hg(param_groups, full_loss, x, y, direction, order3=order3, backend="reverse")


# -- backends -------------------------------------------------------------------------------------
class _LossModule(torch.nn.Module):
    """Holds ``model`` as a child so ``functional_call`` can swap its parameters while the user's
    ``full_loss`` closure (which calls the very same model object) runs."""

    def __init__(self, model, full_loss):
        super().__init__()
        self.model = model
        self.full_loss = full_loss

    def forward(self, x, y):
        return self.full_loss(x, y)


def _hg_func(params, gidx, full_loss, x, y, u, model, order3, chunk_size):
    from torch.func import functional_call, grad, jvp, vmap

    names = {id(p): n for n, p in model.named_parameters()}
    missing = [i for i, p in enumerate(params) if id(p) not in names]
    if missing:
        raise ValueError(f"partition tensors {missing} are not parameters of the given model")
    keys = ["model." + names[id(p)] for p in params]
    base = [p.detach() for p in params]
    wrapper = _LossModule(model, full_loss)
    S = max(gidx) + 1
    ref = base[0]
    index = torch.tensor(gidx, device=ref.device)

    def F(t):  # (S,) -> scalar
        ts = t[index]
        sub = {k: p + ts[i] * ui for i, (k, p, ui) in enumerate(zip(keys, base, u))}
        return functional_call(wrapper, sub, (x, y))

    gradF = grad(F)
    t0 = ref.new_zeros(S)

    def column(e):  # (g, H e)
        return jvp(gradF, (t0,), (e,))

    def column_and_third(e):  # (g, H e, e . d/dtau [H(tau e) e])
        (g, He), (_, dHe) = jvp(lambda t: jvp(gradF, (t,), (e,)), (t0,), (e,))
        return g, He, (dHe * e).sum()

    eye = torch.eye(S, dtype=ref.dtype, device=ref.device)
    with torch.no_grad():
        if order3:
            g, Hcols, o3 = vmap(column_and_third, chunk_size=chunk_size)(eye)
        else:
            g, Hcols = vmap(column, chunk_size=chunk_size)(eye)
            o3 = ref.new_zeros(S)
    H = 0.5 * (Hcols + Hcols.T)
    return H.detach(), g[0].detach(), o3.detach()


def _contract(tensors, u, gidx, S, batched: bool):
    """Per-subset contraction with u: (S,) or, for batched tensors (S, *shape), (S_batch, S)."""
    ref = tensors[0]
    out = ref.new_zeros((ref.shape[0], S) if batched else (S,))
    cols = []
    for t, ui in zip(tensors, u):
        cols.append((t * ui).reshape(ref.shape[0], -1).sum(1) if batched else (t * ui).sum())
    index = torch.tensor(gidx, device=ref.device)
    if batched:
        return out.index_add(1, index, torch.stack(cols, dim=1))
    return out.index_add(0, index, torch.stack(cols))


def _hg_batched(params, gidx, full_loss, x, y, u, order3):
    S = max(gidx) + 1
    with torch.enable_grad():
        loss = full_loss(x, y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        g = _contract(grads, u, gidx, S, batched=False)
        # V_p: (S, *p.shape), row s = u_p if p is in subset s else 0
        V = []
        for p, ui, s in zip(params, u, gidx):
            v = ui.new_zeros((S,) + tuple(p.shape))
            v[s] = ui
            V.append(v)
        HV = torch.autograd.grad(grads, params, grad_outputs=V, is_grads_batched=True,
                                 create_graph=order3, materialize_grads=True)
        H = _contract(HV, u, gidx, S, batched=True)  # H[s, t] = v_s^T H v_t
        if order3 and H.requires_grad:  # else H-bar is constant in theta: order3 = 0
            eye = torch.eye(S, dtype=H.dtype, device=H.device)
            G = torch.autograd.grad(H.diagonal(), params, grad_outputs=eye, is_grads_batched=True,
                                    materialize_grads=True)
            o3 = _contract(G, u, gidx, S, batched=True).diagonal()
        else:
            o3 = H.new_zeros(S)
    H = H.detach()
    o3 = o3.detach()
    return 0.5 * (H + H.T), g.detach(), o3.detach()


def _hg_reverse(params, gidx, full_loss, x, y, u, order3):
    S = max(gidx) + 1
    members = [[i for i, s in enumerate(gidx) if s == k] for k in range(S)]
    with torch.enable_grad():
        loss = full_loss(x, y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        gbar = [sum((grads[i] * u[i]).sum() for i in members[s]) for s in range(S)]
        H = params[0].new_zeros(S, S)
        o3 = params[0].new_zeros(S)
        for s in range(S):  # row s, upper triangle: one double-backward pass each
            later = [i for k in range(s, S) for i in members[k]]
            if not gbar[s].requires_grad:  # g-bar_s constant in theta: row s of H-bar is 0
                continue
            hv = torch.autograd.grad(gbar[s], [params[i] for i in later], create_graph=order3,
                                     retain_graph=True, materialize_grads=True)
            hv = dict(zip(later, hv))
            for t in range(s, S):
                H[s, t] = sum((hv[i] * u[i]).sum() for i in members[t]).detach()
                H[t, s] = H[s, t]
            hss = sum((hv[i] * u[i]).sum() for i in members[s])
            if order3 and hss.requires_grad:  # else constant in theta: order3_s = 0
                d3 = torch.autograd.grad(hss, [params[i] for i in members[s]], retain_graph=True,
                                         materialize_grads=True)
                o3[s] = sum((d * u[i]).sum() for d, i in zip(d3, members[s])).detach()
    return H, torch.stack([gb.detach() for gb in gbar]), o3
