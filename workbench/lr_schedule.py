"""Learning-rate schedules of the optimizer algorithms: the ``schedule`` parameter of a runs entry.

    schedule = "constant"                                   # the default
    schedule = "cosine"                                     # lr -> 0 over the run (cosine)
    schedule = dict(kind="cosine", final=0.01, warmup=500)  # to 1 % of lr, after 500 warmup steps
    schedule = dict(kind="step", epochs=[100, 150], factor=0.1, warmup=0)   # x0.1 at epochs 100, 150
    schedule = dict(kind="linear_warmup", warmup=500)       # linear warmup, then constant

With the run's learning rate lr, T its planned steps and W = ``warmup`` steps, the rate used at
step t (t = 0 for the first update) is

    warmup      lr * (t + 1) / (W + 1)                               for t < W
    cosine      lr * (final + (1 - final) (1 + cos(pi (t - W) / (T - W))) / 2)    for t >= W
    step        lr * factor^(number of milestones <= t), milestones = epochs * steps per epoch

built from ``torch.optim.lr_scheduler`` (``LinearLR``, ``CosineAnnealingLR``, ``MultiStepLR``,
joined by ``SequentialLR``), stepped after every training step, saved in the checkpoint (a resumed
run continues exactly) and recorded as the ``lr`` metric.
"""
from __future__ import annotations

from typing import Any

KINDS = ("constant", "cosine", "step", "linear_warmup")
_KEYS = {"constant": (), "cosine": ("final", "warmup"), "step": ("epochs", "factor", "warmup"),
         "linear_warmup": ("warmup",)}


def spec_of(value: Any) -> dict:
    """``schedule`` as a dict with every key of its kind; ValueError says what is wrong."""
    spec = {"kind": value} if isinstance(value, str) else dict(value) if isinstance(value, dict) else None
    if spec is None or spec.get("kind") not in KINDS:
        raise ValueError(f"schedule must be one of {', '.join(map(repr, KINDS))} or dict(kind=..., ...), got {value!r}")
    kind = spec["kind"]
    unknown = [k for k in spec if k != "kind" and k not in _KEYS[kind]]
    if unknown:
        raise ValueError(f"schedule {kind!r} has no key {unknown[0]!r}; its keys: {', '.join(_KEYS[kind]) or '(none)'}")
    full = {"kind": kind, "final": 0.0, "warmup": 0, "epochs": [], "factor": 0.1, **spec}
    if not (isinstance(full["warmup"], int) and full["warmup"] >= 0):
        raise ValueError(f"schedule warmup must be a number of steps >= 0, got {full['warmup']!r}")
    if not 0.0 <= full["final"] <= 1.0:
        raise ValueError(f"schedule final must be a fraction of lr in [0, 1], got {full['final']!r}")
    if kind == "step" and not (full["epochs"] and all(isinstance(e, int) and e > 0 for e in full["epochs"])):
        raise ValueError(f"schedule 'step' needs epochs=[...], the epochs after which lr is multiplied by factor, "
                         f"got {full['epochs']!r}")
    if kind == "linear_warmup" and full["warmup"] < 1:
        raise ValueError("schedule 'linear_warmup' needs warmup=N steps (N >= 1)")
    return full


def build(optimizer, value: Any, total: int | None, per_epoch: int):
    """The torch scheduler of ``schedule=value`` for a run of ``total`` planned steps (None for a
    constant schedule); ValueError when the run's length is unknown (``max_time`` alone) but needed."""
    import torch.optim.lr_scheduler as lrs

    spec = spec_of(value)
    if spec["kind"] == "constant":
        return None
    warmup = spec["warmup"]
    if spec["kind"] == "cosine" and total is None:
        raise ValueError("schedule 'cosine' needs a run of known length (epochs or max_steps), not max_time alone")
    if warmup and total is not None and warmup >= total:
        raise ValueError(f"schedule warmup={warmup} is not shorter than the run ({total} steps)")
    base = optimizer.param_groups[0]["lr"]
    if spec["kind"] == "cosine":
        main = lrs.CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=spec["final"] * base)
    elif spec["kind"] == "step":
        milestones = [e * per_epoch - warmup for e in spec["epochs"]]
        main = lrs.MultiStepLR(optimizer, milestones=[m for m in milestones if m > 0], gamma=spec["factor"])
    else:
        main = lrs.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if not warmup:
        return main
    ramp = lrs.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return lrs.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
