"""Helpers shared by the workbench's own optimizers: hyperparameter checks (ValueError naming the
value) and the multi-tensor dispatch."""
from __future__ import annotations

import math
from numbers import Real


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
