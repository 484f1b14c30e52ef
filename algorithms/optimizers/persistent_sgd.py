"""PersistentSGD: the "never fully clear the gradients" optimizer of GradRetentionNet (reference 003).

Structure follows ``torch/optim/sgd.py``: the class gathers tensors per parameter group and calls the
functional :func:`persistent_sgd`, which dispatches to a for-loop kernel (the specification) or a
``torch._foreach_*`` multi-tensor kernel (the fast path).
"""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.optimizers._common import BufferedOptimizer, default_foreach, group_by_device_and_dtype

__all__ = ["PersistentSGD", "persistent_sgd"]


class PersistentSGD(BufferedOptimizer):
    r"""Gradient descent on a decaying sum of all past gradients; this IS heavy-ball momentum.

    For each parameter :math:`p` (any shape) with gradient :math:`g_t` (whatever ``p.grad`` holds
    when :meth:`step` runs), with the buffer :math:`b_0 = 0` of ``p``'s shape:

    .. math::

        b_t = \text{decay}\, b_{t-1} + g_t, \qquad p_t = p_{t-1} - \text{lr}\, b_t .

    Unrolled, :math:`b_t = \sum_{k \le t} \text{decay}^{t-k} g_k`: the "persistent gradient".
    The update is exactly ``torch.optim.SGD(params, lr=lr, momentum=decay, dampening=0)`` (torch
    starts its buffer as a copy of :math:`g_1`; :math:`\text{decay}\cdot 0 + g_1` is the same), so
    the trajectories agree to the last bit. Scaling ``.grad`` by ``decay`` before each
    ``backward()`` instead of zeroing it, then plain SGD, gives the same recursion as well. Doing
    both (keeping ``.grad`` AND this buffer) would integrate twice and diverge; this optimizer never
    reads anything but the current ``.grad`` and never modifies it.

    **Effective step size.** For a constant gradient :math:`g`,
    :math:`b_t = \frac{1 - \text{decay}^t}{1 - \text{decay}} g \to \frac{g}{1-\text{decay}}`, so the
    steady-state step is :math:`\frac{\text{lr}}{1 - \text{decay}} g`. The reference values
    ``lr=0.01, decay=0.99`` give an effective learning rate of 1.0. On a quadratic with curvature
    :math:`\lambda` the iteration is stable iff :math:`0 < \text{lr}\,\lambda < 2(1 + \text{decay})`.

    Args:
        params: iterable of parameters or dicts defining parameter groups (per-group ``lr`` and
            ``decay`` are honoured).
        lr: learning rate, finite and >= 0 (default 0.01).
        decay: factor applied to the persistent buffer each step, in [0, 1) (default 0.99).
            ``decay=0`` is plain SGD.
        foreach: use the ``torch._foreach_*`` multi-tensor kernel (bitwise equal to the for-loop
            kernel). ``None`` (default) picks it when every parameter is on CUDA, or on CPU for 8 or
            more tensors; below that the CPU for-loop is faster (``bench/optimizers_foreach.py``).

    State per parameter (created lazily on its first step with a gradient): ``persistent_grad``.
    Parameters whose ``.grad`` is None are skipped and get no state. Sparse gradients raise.

    Example::

        opt = PersistentSGD(model.parameters(), lr=0.01, decay=0.99)
        opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    buffer_name = "persistent_grad"
    unit_interval = ("decay",)

    def __init__(self, params, lr: float = 0.01, decay: float = 0.99, *, foreach: bool | None = None):
        super().__init__(params, dict(lr=lr, decay=decay, foreach=foreach))

    def _update(self, params, grads, bufs, group) -> None:
        persistent_sgd(params, grads, bufs, lr=group["lr"], decay=group["decay"], foreach=group["foreach"])


def persistent_sgd(params: list[Tensor], grads: list[Tensor], bufs: list[Tensor], *,
                   lr: float, decay: float, foreach: bool | None = None) -> None:
    r"""Functional PersistentSGD: in place, :math:`b \leftarrow \text{decay}\, b + g`,
    :math:`p \leftarrow p - \text{lr}\, b` for each (p, g, b) of equal shapes."""
    if foreach is None:
        foreach = default_foreach(params)
    kernel = _multi_tensor_persistent_sgd if foreach else _single_tensor_persistent_sgd
    kernel(params, grads, bufs, lr=lr, decay=decay)


def _single_tensor_persistent_sgd(params, grads, bufs, *, lr: float, decay: float) -> None:
    for p, g, b in zip(params, grads, bufs, strict=True):
        b.mul_(decay).add_(g)
        p.add_(b, alpha=-lr)


def _multi_tensor_persistent_sgd(params, grads, bufs, *, lr: float, decay: float) -> None:
    for p_list, g_list, b_list in group_by_device_and_dtype(params, grads, bufs).values():
        torch._foreach_mul_(b_list, decay)
        torch._foreach_add_(b_list, g_list)
        torch._foreach_add_(p_list, b_list, alpha=-lr)
