"""Effective step sizes: the steady-state multiplier of a constant gradient, recorded with each run.

For a constant gradient g, momentum methods settle into ``p_t - p_{t-1} -> -eta_eff * g``; comparing
runs by ``eta_eff`` instead of ``lr`` explains most of the reference's results (PersistentSGD at
lr 0.01, decay 0.99 steps like SGD at 1.0; AdEMA at its defaults like SGD at 1e-6).
"""
from __future__ import annotations

from typing import Any

__all__ = ["effective_step_size"]

# Constructor defaults used when ``params`` leaves a hyperparameter out.
_DEFAULTS = {
    "persistent_sgd": dict(lr=0.01, decay=0.99),
    "adema": dict(lr=1e-3, beta=0.999, decay=0.999),
    "sgd": dict(lr=1e-3, momentum=0.0, dampening=0.0),
    "adamw": {},
}


def effective_step_size(algorithm_name: str, params: dict[str, Any]) -> float | None:
    r"""Steady-state step per unit of a constant gradient, or None where no single number exists.

    - ``persistent_sgd``: lr / (1 - decay)   (heavy ball: b -> g / (1 - decay))
    - ``adema``: lr (1 - decay)              (the EMA m -> g; beta only sets how fast)
    - ``sgd``: lr (1 - dampening) / (1 - momentum), i.e. lr / (1 - momentum) without dampening
      (Nesterov gives the same limit)
    - ``adamw``: None (the step is normalised per coordinate: about lr * sign(g), not a multiple of g)

    Raises ValueError for an algorithm this table does not know.
    """
    if algorithm_name not in _DEFAULTS:
        raise ValueError(f"no effective step size for algorithm {algorithm_name!r}; "
                         f"known: {', '.join(sorted(_DEFAULTS))}")
    p = {**_DEFAULTS[algorithm_name], **params}
    if algorithm_name == "persistent_sgd":
        return float(p["lr"]) / (1.0 - float(p["decay"]))
    if algorithm_name == "adema":
        return float(p["lr"]) * (1.0 - float(p["decay"]))
    if algorithm_name == "sgd":
        return float(p["lr"]) * (1.0 - float(p["dampening"])) / (1.0 - float(p["momentum"]))
    return None
