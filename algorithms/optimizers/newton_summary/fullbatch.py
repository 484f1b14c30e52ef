"""Full-batch gradient of a mean loss: a deterministic direction u for NewtonSummary."""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["fullbatch_gradient"]


def fullbatch_gradient(model: torch.nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], data,
                       *, params: Sequence[Tensor] | None = None, batch_size: int | None = None,
                       loader_pre_hook: Callable | None = None) -> tuple[Tensor, ...]:
    r"""Gradient of the dataset mean loss :math:`\frac1N \sum_i \ell(f(x_i), y_i)`.

    Args:
        model: the network; its ``.grad`` fields are left untouched (``torch.autograd.grad``).
        loss_fn: ``loss_fn(output, y)`` with MEAN reduction over the batch.
        data: a tuple ``(x, y)`` of tensors (split into chunks of ``batch_size``), or an iterable
            of ``(x, y)`` batches (e.g. a DataLoader); batch means are weighted by batch size / N.
        params: tensors to differentiate, in the order wanted (default ``model.parameters()``;
            pass a partition's tensors in partition order to get a NewtonSummary direction).
        batch_size: chunk size for a tensor tuple (None: one chunk).
        loader_pre_hook: optional ``(x, y) -> (x, y)`` applied to every batch (device, dtype).

    Returns:
        A tuple of tensors shaped like ``params``, in the order of ``params``.
    """
    params = list(model.parameters()) if params is None else list(params)
    if not params:
        raise ValueError("no parameters to differentiate")
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor):
        x, y = data
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(f"x and y must have the same positive length, got {x.shape[0]} and {y.shape[0]}")
        step = batch_size or x.shape[0]
        if step <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        batches: Iterable = ((x[i:i + step], y[i:i + step]) for i in range(0, x.shape[0], step))
    else:
        batches = data
    total = [torch.zeros_like(p) for p in params]
    n = 0
    for xb, yb in batches:
        if loader_pre_hook is not None:
            xb, yb = loader_pre_hook(xb, yb)
        with torch.enable_grad():
            loss = loss_fn(model(xb), yb) * xb.shape[0]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        for t, gr in zip(total, grads):
            if gr is not None:
                t.add_(gr)
        n += xb.shape[0]
    if n == 0:
        raise ValueError("the data is empty")
    return tuple(t.div_(n) for t in total)
