r"""Regression data for the shallow ReLU family, and their registered datasets.

Every generator is ``fn(n, d, seed, ...) -> (x (n, d), y (n,))`` in float64 and depends only on its
arguments. Inputs never carry the bias column (:func:`algorithms.shallow.model.add_bias` adds it).

* ``linear``: y = slope * sum_k x_k + offset (+ noise * N(0, 1)); the reference's ``linear2d`` for
  d = 1 (slope = offset = 0.2).
* ``sinus``: y = sin(frequency * t + phase) + slope * t + offset with t = x_1 (first coordinate);
  the reference's y = sin(10x - pi/2) + 0.2x - 0.5 by default.
* ``random_linear``: x ~ U(-1/2, 1/2)^d (or N(0, I)), y = x . b + noise * U(-1, 1) with b ~ U(-1, 1)^d.
* ``noise``: pure-noise labels (memorisation): x ~ U(-1, 1)^d, y ~ U(-3, 1), or x ~ N(0, I),
  y ~ U(-1, 1) with ``sampling="normal"``.
* ``teacher``: a planted network y = sum_{j<k} a_j relu(w_j . (x, 1)) (+ noise * N(0, 1)) with k random
  unit-norm neurons whose kink hyperplanes cut through the data and a_j = +-U(1/2, 3/2).
* ``mnist_pair``: two MNIST digits, targets +1 / -1, pixels in [0, 1], optionally downsampled and/or
  projected to d dimensions by a fixed Gaussian matrix.

For d = 1, ``linear`` and ``sinus`` use n evenly spaced points of [low, high] (the reference's grid);
otherwise inputs are sampled uniformly from [low, high]^d.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from workbench.problem import DataSplit
from workbench.registry import DATASETS, ConfigError

F64 = torch.float64


def _check(n: int, d: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")


def _inputs(n: int, d: int, g: torch.Generator, low: float, high: float, grid: bool) -> torch.Tensor:
    if grid and d == 1:
        return torch.linspace(low, high, n, dtype=F64)[:, None]
    return low + (high - low) * torch.rand(n, d, generator=g, dtype=F64)


def linear(n: int = 20, d: int = 1, seed: int = 0, slope: float = 0.2, offset: float = 0.2,
           noise: float = 0.0, low: float = -0.5, high: float = 0.5, grid: bool = True):
    """y = slope * sum_k x_k + offset + noise * N(0, 1)."""
    _check(n, d)
    g = torch.Generator().manual_seed(int(seed))
    x = _inputs(n, d, g, low, high, grid)
    y = slope * x.sum(dim=1) + offset + noise * torch.randn(n, generator=g, dtype=F64)
    return x, y


def sinus(n: int = 20, d: int = 1, seed: int = 0, frequency: float = 10.0, phase: float = -math.pi / 2,
          slope: float = 0.2, offset: float = -0.5, noise: float = 0.0, low: float = -0.5,
          high: float = 0.5, grid: bool = True):
    """y = sin(frequency * x_1 + phase) + slope * x_1 + offset + noise * N(0, 1)."""
    _check(n, d)
    g = torch.Generator().manual_seed(int(seed))
    x = _inputs(n, d, g, low, high, grid)
    t = x[:, 0]
    y = torch.sin(frequency * t + phase) + slope * t + offset + noise * torch.randn(n, generator=g, dtype=F64)
    return x, y


def random_linear(n: int = 20, d: int = 1, seed: int = 0, noise: float = 0.0, sampling: str = "uniform",
                  return_coefficients: bool = False):
    """x ~ U(-1/2, 1/2)^d or N(0, I); y = x . b + noise * U(-1, 1), b ~ U(-1, 1)^d."""
    _check(n, d)
    g = torch.Generator().manual_seed(int(seed))
    if sampling == "uniform":
        x = torch.rand(n, d, generator=g, dtype=F64) - 0.5
    elif sampling == "normal":
        x = torch.randn(n, d, generator=g, dtype=F64)
    else:
        raise ValueError(f"sampling must be 'uniform' or 'normal', got {sampling!r}")
    b = 2 * torch.rand(d, generator=g, dtype=F64) - 1
    y = x @ b + noise * (2 * torch.rand(n, generator=g, dtype=F64) - 1)
    return (x, y, b) if return_coefficients else (x, y)


def noise(n: int = 20, d: int = 1, seed: int = 0, sampling: str = "uniform"):
    """Labels independent of inputs: x ~ U(-1, 1)^d, y ~ U(-3, 1) (or N(0, I) and U(-1, 1))."""
    _check(n, d)
    g = torch.Generator().manual_seed(int(seed))
    if sampling == "uniform":
        x = 2 * torch.rand(n, d, generator=g, dtype=F64) - 1
        y = 4 * torch.rand(n, generator=g, dtype=F64) - 3
    elif sampling == "normal":
        x = torch.randn(n, d, generator=g, dtype=F64)
        y = 2 * torch.rand(n, generator=g, dtype=F64) - 1
    else:
        raise ValueError(f"sampling must be 'uniform' or 'normal', got {sampling!r}")
    return x, y


def teacher_network(d: int, k: int, seed: int = 0, max_offset: float = 0.5):
    """The planted neurons: W (k, d+1) with unit-norm direction u_j ~ Unif(S^{d-1}) and bias
    b_j ~ U(-max_offset, max_offset) (so the kink hyperplane u.x + b = 0 crosses [-1, 1]^d), scaled to
    |w_j| = 1; a (k,) = random sign * U(1/2, 3/2)."""
    if k < 1:
        raise ValueError(f"the teacher needs k >= 1 neurons, got {k}")
    g = torch.Generator().manual_seed(int(seed) + 7919)  # a stream apart from the inputs'
    u = torch.randn(k, d, generator=g, dtype=F64)
    u = u / u.norm(dim=1, keepdim=True)
    b = max_offset * (2 * torch.rand(k, 1, generator=g, dtype=F64) - 1)
    W = torch.cat([u, b], dim=1)
    W = W / W.norm(dim=1, keepdim=True)
    sign = torch.where(torch.rand(k, generator=g, dtype=F64) < 0.5, -1.0, 1.0)
    a = sign * (0.5 + torch.rand(k, generator=g, dtype=F64))
    return W, a


def teacher(n: int = 100, d: int = 2, seed: int = 0, k: int = 3, noise: float = 0.0,
            teacher_seed: int | None = None, max_offset: float = 0.5, return_teacher: bool = False):
    """x ~ U(-1, 1)^d, y = sum_j a_j relu(w_j . (x, 1)) + noise * N(0, 1) (see :func:`teacher_network`).

    ``teacher_seed`` (default ``seed``) fixes the planted network independently of the sample.
    """
    _check(n, d)
    from algorithms.shallow.model import add_bias, predict

    W, a = teacher_network(d, k, seed if teacher_seed is None else teacher_seed, max_offset)
    g = torch.Generator().manual_seed(int(seed))
    x = 2 * torch.rand(n, d, generator=g, dtype=F64) - 1
    y = predict(W, a, add_bias(x)) + noise * torch.randn(n, generator=g, dtype=F64)
    return (x, y, W, a) if return_teacher else (x, y)


def mnist_pair(n: int | None = None, d: int | None = None, seed: int = 0, digits=(0, 1),
               root: str | Path = "data", split: str = "train", downsample: int = 1):
    """Two MNIST digits as regression: y = +1 for ``digits[0]``, -1 for ``digits[1]``.

    Pixels are scaled to [0, 1], average-pooled by ``downsample`` (1, 2, 4, 7, 14 or 28), then, when
    ``d`` is given, projected to d dimensions by x @ P / sqrt(p) with a Gaussian P fixed by ``seed``
    (the same P for train and test). The first ``n`` examples of the pair are kept (all if None).
    """
    from workbench import mnist_files  # written by the workbench; imported only when MNIST is asked for

    if len(digits) != 2 or digits[0] == digits[1]:
        raise ValueError(f"digits must be two different digits, got {digits!r}")
    if 28 % int(downsample):
        raise ValueError(f"downsample must divide 28, got {downsample!r}")
    x_train, y_train, x_test, y_test = mnist_files.load(Path(root), "mnist")
    images, labels = {"train": (x_train, y_train), "test": (x_test, y_test)}[split]
    keep = np.flatnonzero((labels == digits[0]) | (labels == digits[1]))
    if n is not None:
        keep = keep[:n]
    x = torch.from_numpy(images[keep].astype(np.float64) / 255.0)  # (n, 28, 28)
    if downsample > 1:
        x = torch.nn.functional.avg_pool2d(x[:, None], int(downsample))[:, 0]
    x = x.reshape(len(keep), -1)
    if d is not None:
        p = x.shape[1]
        P = torch.randn(p, int(d), generator=torch.Generator().manual_seed(int(seed)), dtype=F64)
        x = x @ P / math.sqrt(p)
    y = torch.where(torch.from_numpy(labels[keep]) == digits[0], 1.0, -1.0).to(F64)
    return x, y


# -- registered datasets ------------------------------------------------------------------------
def _split(fn, n, n_test, subset, seed, kwargs, extras=None) -> DataSplit:
    """Train sample (seed) and an independent test sample (seed + 1_000_003) of the same law."""
    if subset is not None:
        n = min(n, subset)
    try:
        x_train, y_train = fn(n=n, seed=seed, **kwargs)
        if n_test:
            x_test, y_test = fn(n=n_test, seed=seed + 1_000_003, **kwargs)
        else:
            x_test, y_test = x_train[:0], y_train[:0]
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{fn.__name__}: {exc}") from None
    return DataSplit(x_train, y_train, x_test, y_test, task="regression", n_outputs=1, extras=extras or {})


def _register(name, fn, default_n):
    def dataset(data_dir=None, subset=None, n=default_n, n_test=0, seed=0, **kwargs) -> DataSplit:
        return _split(fn, n, n_test, subset, seed, kwargs)

    dataset.__name__ = f"{name}_dataset"
    dataset.__doc__ = (f"{fn.__doc__.strip().splitlines()[0]} (dataset_args: n, n_test, seed, ...)\n\n"
                       f"The ``{name}`` generator as a regression dataset; n_test = 0 means no test set.\n\n{fn.__doc__}")
    DATASETS.register(name)(dataset)


for _name, _fn in {"linear": linear, "sinus": sinus, "random_linear": random_linear, "noise": noise}.items():
    _register(_name, _fn, 20)


@DATASETS.register("teacher")
def teacher_dataset(data_dir=None, subset=None, n=100, n_test=0, d=2, seed=0, k=3, noise=0.0,
                    teacher_seed=None, max_offset=0.5) -> DataSplit:
    """Planted two-layer ReLU teacher with k random neurons, x ~ U(-1, 1)^d (d = 2 by default).

    See :func:`teacher`; extras hold ``teacher_W`` (k, d+1) and ``teacher_a`` (k,). The test sample
    shares the teacher."""
    teacher_seed = seed if teacher_seed is None else teacher_seed
    kwargs = dict(d=d, k=k, noise=noise, teacher_seed=teacher_seed, max_offset=max_offset)
    try:
        W, a = teacher_network(d, k, teacher_seed, max_offset)
    except ValueError as exc:
        raise ConfigError(f"teacher: {exc}") from None
    return _split(teacher, n, n_test, subset, seed, kwargs, extras={"teacher_W": W, "teacher_a": a})


@DATASETS.register("mnist_pair")
def mnist_pair_dataset(data_dir="data", subset=None, n=None, n_test=None, d=None, seed=0, digits=(0, 1),
                       downsample=1) -> DataSplit:
    """Two MNIST digits as +-1 regression (digits=(0, 1), optional downsample / projection to d).

    See :func:`mnist_pair`: the MNIST train split's examples of those digits for training (first
    ``n``, or ``subset``), its test split (first ``n_test``) for testing."""
    if subset is not None:
        n = subset if n is None else min(n, subset)
    try:
        x_train, y_train = mnist_pair(n, d, seed, tuple(digits), data_dir, "train", downsample)
        x_test, y_test = mnist_pair(n_test, d, seed, tuple(digits), data_dir, "test", downsample)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    except ValueError as exc:
        raise ConfigError(f"mnist_pair: {exc}") from None
    return DataSplit(x_train, y_train, x_test, y_test, task="regression", n_outputs=1,
                     extras={"digits": tuple(digits)})
