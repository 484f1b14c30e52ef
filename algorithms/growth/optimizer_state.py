"""Carry a torch.optim optimizer's state across a growth.

Growing replaces a layer's weight by a larger tensor. The optimizer keeps going with the new
parameter objects: the entries that existed before keep their state (momentum, Adam moments,
step counts), the new entries start from zero state. Nothing is silently reset.
"""
from __future__ import annotations

import torch


def carry_optimizer_state(optimizer: torch.optim.Optimizer, replacements) -> None:
    """Swap parameters in ``optimizer`` and zero-pad their per-element state.

    replacements : iterable of (old_param, new_param, index) where ``new_param[index]`` is the
        place of the old entries (a tuple of slices). State tensors with the old parameter's shape
        are embedded in zeros of the new shape; other state (scalar step counts) is copied.
    """
    for old, new, index in replacements:
        found = False
        for group in optimizer.param_groups:
            for k, p in enumerate(group["params"]):
                if p is old:
                    group["params"][k] = new
                    found = True
        if not found:
            raise ValueError("a grown parameter is not in the optimizer's parameter groups")
        state = optimizer.state.pop(old, None)
        if state:
            carried = {}
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == old.shape and value.ndim > 0:
                    padded = torch.zeros(new.shape, dtype=value.dtype, device=value.device)
                    padded[index] = value
                    carried[key] = padded
                else:
                    carried[key] = value
            optimizer.state[new] = carried
