"""What the workbench's own optimizers share: hyperparameter checks (ValueError naming the value),
the multi-tensor dispatch, and :class:`BufferedOptimizer`, the scaffolding of an optimizer with one
state buffer per parameter (PersistentSGD, AdEMA)."""
from __future__ import annotations

import math
from numbers import Real
from typing import Callable

import torch
from torch.optim import Optimizer


def _as_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"Invalid {name}: {value!r} (expected a real number)")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"Invalid {name}: {value} (must be finite)")
    return value


def check_lr(lr) -> None:
    """lr must be a finite number >= 0."""
    if _as_real("learning rate", lr) < 0.0:
        raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")


def check_unit_interval(name: str, value) -> None:
    """``value`` must lie in [0, 1) (a decay or EMA factor; 1 would never forget)."""
    if not 0.0 <= _as_real(name, value) < 1.0:
        raise ValueError(f"Invalid {name} value: {value} (must be in [0, 1))")


def group_by_device_and_dtype(*tensor_lists):
    """Split parallel tensor lists into buckets of one (device, dtype): ``torch._foreach_*`` needs
    every list in one call to share both. Returns ``{(device, dtype): (list_0, list_1, ...)}``."""
    buckets: dict = {}
    for tensors in zip(*tensor_lists, strict=True):
        key = (tensors[0].device, tensors[0].dtype)
        bucket = buckets.setdefault(key, tuple([] for _ in tensor_lists))
        for lst, t in zip(bucket, tensors):
            lst.append(t)
    return buckets


# Below this many tensors the CPU for-loop kernel is as fast or faster than torch._foreach_* (whose
# CPU path is itself a loop); above it foreach wins, 1.3x at 100 tensors (bench/optimizers_foreach.py).
FOREACH_MIN_CPU_TENSORS = 8


def default_foreach(params) -> bool:
    """The kernel ``foreach=None`` picks: multi-tensor when every parameter is on CUDA, or on CPU
    when there are at least ``FOREACH_MIN_CPU_TENSORS`` of them."""
    if not params:
        return False
    return all(p.is_cuda for p in params) or len(params) >= FOREACH_MIN_CPU_TENSORS


class BufferedOptimizer(Optimizer):
    """An optimizer with one state buffer per parameter and a functional kernel, structured like
    ``torch/optim/sgd.py``. Subclasses name the buffer (``buffer_name``), the hyperparameters that
    lie in [0, 1) (``unit_interval``), and implement :meth:`_update`.

    Hyperparameters are checked on construction and in every added group. The buffer is created
    (zeros) on a parameter's first step with a gradient; parameters whose ``.grad`` is None are
    skipped and get no state; sparse gradients raise.
    """

    buffer_name: str = "buffer"
    unit_interval: tuple[str, ...] = ()

    def __init__(self, params, defaults: dict):
        self._check(defaults)
        super().__init__(params, defaults)

    def _check(self, group: dict) -> None:
        check_lr(group["lr"])
        for name in self.unit_interval:
            check_unit_interval(name, group[name])

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._check(self.param_groups[-1])

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)

    def _init_group(self, group: dict, params: list, grads: list, bufs: list) -> None:
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            state = self.state[p]
            if len(state) == 0:
                state[self.buffer_name] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            bufs.append(state[self.buffer_name])

    def _update(self, params: list, grads: list, bufs: list, group: dict) -> None:
        """The functional kernel on one group's tensors (in place)."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        """One update of every parameter with a gradient; returns ``closure()`` or None.

        The closure (re-evaluating the loss and calling ``backward``) runs once, before the update,
        with gradients enabled.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, bufs = [], [], []
            self._init_group(group, params, grads, bufs)
            if params:
                self._update(params, grads, bufs, group)
        return loss
