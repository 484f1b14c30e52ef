"""AdEMA: the exponential-moving-average optimizer of GradRetentionNet (reference 003), exactly as
its initial commit defines it. Same structure as ``persistent_sgd.py`` (class, functional kernel,
for-loop and ``torch._foreach_*`` implementations)."""
from __future__ import annotations

import torch
from torch import Tensor

from algorithms.optimizers._common import BufferedOptimizer, default_foreach, group_by_device_and_dtype

__all__ = ["AdEMA", "adema"]


class AdEMA(BufferedOptimizer):
    r"""SGD on an un-bias-corrected EMA of the gradients, scaled by ``(1 - decay)``.

    For each parameter :math:`p` (any shape) with gradient :math:`g_t` and :math:`m_0 = 0` of
    ``p``'s shape:

    .. math::

        m_t = \beta\, m_{t-1} + (1 - \beta)\, g_t, \qquad
        p_t = p_{t-1} - \text{lr}\,(1 - \text{decay})\, m_t .

    **Not Adam-like**, despite the name: there is no second moment, no per-coordinate
    normalisation, no bias correction and no weight decay. It is SGD with dampened momentum,
    ``torch.optim.SGD(lr=lr*(1-decay), momentum=beta, dampening=beta)``, except that torch starts
    its buffer at the raw :math:`g_1` where AdEMA starts at :math:`(1-\beta) g_1`; with torch's
    buffer pre-seeded to zeros the two trajectories coincide from the first step. (The published
    optimizer with a similar name, AdEMAMix, Pagliardini et al. 2024, is an Adam variant.)

    **Closed forms.** The first step moves :math:`p` by :math:`-\text{lr}(1-\text{decay})(1-\beta) g_1`.
    For a constant gradient :math:`g`, :math:`m_t = (1 - \beta^t) g` and

    .. math::

        p_t = p_0 - \text{lr}(1-\text{decay})\Big(t - \beta\,\frac{1-\beta^t}{1-\beta}\Big) g,

    so the step tends to :math:`\text{lr}(1-\text{decay})\, g`: the **effective step size is
    lr·(1 - decay)**, 1e-6 with the defaults (and smaller still during the first
    :math:`\sim 1/(1-\beta)` steps), far too small to train.

    Args:
        params: iterable of parameters or dicts defining parameter groups (per-group ``lr``,
            ``beta`` and ``decay`` are honoured).
        lr: learning rate, finite and >= 0 (default 1e-3).
        beta: EMA factor in [0, 1) (default 0.999).
        decay: the step is scaled by ``1 - decay``; in [0, 1) (default 0.999).
        foreach: use the ``torch._foreach_*`` multi-tensor kernel. ``None`` (default) picks it when
            every parameter is on CUDA, or on CPU for 8 or more tensors (``bench/optimizers_foreach.py``).

    State per parameter (created lazily on its first step with a gradient): ``exp_avg``.
    Parameters whose ``.grad`` is None are skipped and get no state. Sparse gradients raise.
    """

    buffer_name = "exp_avg"
    unit_interval = ("beta", "decay")

    def __init__(self, params, lr: float = 1e-3, beta: float = 0.999, decay: float = 0.999, *,
                 foreach: bool | None = None):
        super().__init__(params, dict(lr=lr, beta=beta, decay=decay, foreach=foreach))

    def _update(self, params, grads, bufs, group) -> None:
        adema(params, grads, bufs, lr=group["lr"], beta=group["beta"], decay=group["decay"],
              foreach=group["foreach"])


def adema(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], *,
          lr: float, beta: float, decay: float, foreach: bool | None = None) -> None:
    r"""Functional AdEMA: in place, :math:`m \leftarrow \beta m + (1-\beta) g`,
    :math:`p \leftarrow p - \text{lr}(1-\text{decay})\, m` for each (p, g, m) of equal shapes."""
    if foreach is None:
        foreach = default_foreach(params)
    kernel = _multi_tensor_adema if foreach else _single_tensor_adema
    kernel(params, grads, exp_avgs, lr=lr, beta=beta, decay=decay)


def _single_tensor_adema(params, grads, exp_avgs, *, lr: float, beta: float, decay: float) -> None:
    step_size = lr * (1.0 - decay)
    for p, g, m in zip(params, grads, exp_avgs, strict=True):
        m.mul_(beta).add_(g, alpha=1.0 - beta)
        p.add_(m, alpha=-step_size)


def _multi_tensor_adema(params, grads, exp_avgs, *, lr: float, beta: float, decay: float) -> None:
    step_size = lr * (1.0 - decay)
    for p_list, g_list, m_list in group_by_device_and_dtype(params, grads, exp_avgs).values():
        torch._foreach_mul_(m_list, beta)
        torch._foreach_add_(m_list, g_list, alpha=1.0 - beta)
        torch._foreach_add_(p_list, m_list, alpha=-step_size)
