"""Indicators of a two-layer ReLU network (the reference's postprocess), on numpy or torch inputs.

For neurons W (m, d+1) (rows (w_j, b_j) with the bias last) and output weights a (m,):

* :func:`kinks` (d = 1): the kink x*_j = -b_j / w_j where w_j x + b_j changes sign (inf when w_j = 0);
* :func:`neuron_norms` |w_j|, :func:`output_weights` a_j, :func:`slopes` |b_j a_j| (the reference's
  "lnorm");
* :func:`distinct_patterns`: the distinct nonzero activation patterns 1[X w_j > 0] of the network on X;
* :func:`loss`: F_beta (model convention); :func:`gap`: F_beta - convex optimum, absolute and relative;
* :func:`summary`: all of the above as one dict of plain values.
"""
from __future__ import annotations

import numpy as np
import torch

# Training data is copied into a run's info() for the plots only below this many numbers.
MAX_RECORDED_DATA = 200_000


def _np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64)


def kinks(W) -> np.ndarray:
    """x*_j = -b_j / w_j for 1-D inputs (W (m, 2)); +-inf (or nan for w = b = 0) when w_j = 0."""
    W = _np(W)
    if W.ndim != 2 or W.shape[1] != 2:
        raise ValueError(f"kinks are defined for 1-D inputs, W (m, 2); got {W.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return -W[:, 1] / W[:, 0]


def neuron_norms(W) -> np.ndarray:
    """|w_j| (bias included), shape (m,)."""
    return np.linalg.norm(_np(W), axis=1)


def output_weights(a) -> np.ndarray:
    return _np(a).reshape(-1)


def slopes(W, a) -> np.ndarray:
    """|b_j a_j|, the reference's per-neuron size indicator."""
    return np.abs(_np(W)[:, -1] * _np(a))


def distinct_patterns(W, X) -> np.ndarray:
    """Distinct nonzero activation patterns of the network on biased X (n, d+1): bool (P, n)."""
    from algorithms.shallow.convex import gate_patterns, unique_patterns

    W = _np(W)
    if not len(W):
        return np.zeros((0, _np(X).shape[0]), dtype=bool)
    return unique_patterns(gate_patterns(_np(X), W))


def loss(W, a, X, y, beta: float = 0.0) -> float:
    """F_beta(W, a) on biased X (float64)."""
    from algorithms.shallow.model import objective

    t = lambda v: torch.as_tensor(_np(v))  # noqa: E731
    return float(objective(t(W), t(a).reshape(-1), t(X), t(y).reshape(-1), beta))


def gap(value: float, optimum: float) -> tuple[float, float]:
    """(value - optimum, (value - optimum) / |optimum|): the distance to the convex optimum."""
    diff = float(value) - float(optimum)
    return diff, diff / abs(optimum) if optimum else float("inf") if diff else 0.0


def summary(W, a, X, y, beta: float = 0.0, optimum: float | None = None) -> dict:
    """Every indicator of the network as plain numpy / float values."""
    W, a = _np(W), _np(a).reshape(-1)
    out = {"loss": loss(W, a, X, y, 0.0), "objective": loss(W, a, X, y, beta), "norms": neuron_norms(W),
           "output_weights": a, "slopes": slopes(W, a) if len(W) else np.zeros(0),
           "n_patterns": int(len(distinct_patterns(W, X))), "width": int(len(W))}
    if W.shape[1] == 2:
        out["kinks"] = kinks(W)
    if optimum is not None:
        out["gap"], out["relative_gap"] = gap(out["objective"], optimum)
    return out


DATA_X, DATA_Y = "data_x", "data_y"  # info keys of the training set, for the plots' output panels


def data_for_record(problem, model) -> dict:
    """{DATA_X (n, d), DATA_Y (n,)}: numpy copies of the training set for the plots, when it has at
    most ``MAX_RECORDED_DATA`` numbers and ``model`` is a two-layer ReLU network on it (its rows
    W have the input dimension plus the bias column); else {}."""
    x, y = problem.data.x_train, problem.data.y_train
    W = getattr(model, "W", None)
    if x.numel() + y.numel() > MAX_RECORDED_DATA or x.dim() != 2 or W is None or W.shape[1] != x.shape[1] + 1:
        return {}
    return {DATA_X: _np(x), DATA_Y: _np(y).reshape(-1)}
