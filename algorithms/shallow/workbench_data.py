"""The shallow family's datasets and models, registered for config files.

Datasets (their ``dataset_args`` in parentheses; each is ``fn(data_dir, **dataset_args) -> DataSplit``):
``linear``, ``sinus``, ``random_linear``, ``noise`` (n, n_test, seed, and the generator's own
arguments, see :mod:`.data`), ``teacher`` (planted network; extras ``teacher_W``, ``teacher_a``),
``mnist_pair`` (two MNIST digits as +-1 targets) and ``particle_toy`` (the notes' two particles).
Models: ``two_layer_relu`` (:class:`.model.TwoLayerReLU` with :mod:`.init`'s neurons), ``relu_grid``
(a fixed grid of neurons for JKO) and ``particle_toy``. Bad values raise ValueError, which the
runner reports as a config error.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from algorithms.shallow.data import linear, mnist_pair, noise, random_linear, sinus, teacher, teacher_network
from algorithms.shallow.init import grid, normal
from algorithms.shallow.model import TwoLayerReLU
from algorithms.shallow.toy import ParticleToy
from workbench.problem import DataSplit
from workbench.registry import DATASETS, MODELS

F64 = torch.float64


# -- datasets ------------------------------------------------------------------------------------
def _split(fn, n, n_test, seed, kwargs, extras=None) -> DataSplit:
    """Train sample (seed) and an independent test sample (seed + 1_000_003) of the same law."""
    x_train, y_train = fn(n=n, seed=seed, **kwargs)
    if n_test:
        x_test, y_test = fn(n=n_test, seed=seed + 1_000_003, **kwargs)
    else:
        x_test, y_test = x_train[:0], y_train[:0]
    return DataSplit(x_train, y_train, x_test, y_test, task="regression", n_outputs=1, extras=extras or {})


def _generator_dataset(name, fn, default_n=20):
    """The generator ``fn`` as a regression dataset (dataset_args: n, n_test, seed, and fn's own)."""
    def dataset(data_dir=None, n=default_n, n_test=0, seed=0, **kwargs) -> DataSplit:
        return _split(fn, n, n_test, seed, kwargs)

    dataset.__name__ = f"{name}_dataset"
    dataset.__doc__ = (f"{fn.__doc__.strip().splitlines()[0]} (dataset_args: n, n_test, seed, ...)\n\n"
                       f"The ``{name}`` generator as a regression dataset; n_test = 0 means no test set.\n\n{fn.__doc__}")
    return dataset


DATASETS.register("linear")(_generator_dataset("linear", linear))
DATASETS.register("sinus")(_generator_dataset("sinus", sinus))
DATASETS.register("random_linear")(_generator_dataset("random_linear", random_linear))
DATASETS.register("noise")(_generator_dataset("noise", noise))


@DATASETS.register("teacher")
def teacher_dataset(data_dir=None, n=100, n_test=0, d=2, seed=0, k=3, noise=0.0,
                    teacher_seed=None, max_offset=0.5) -> DataSplit:
    """Planted two-layer ReLU teacher with k random neurons, x ~ U(-1, 1)^d (d = 2 by default).

    See :func:`teacher`; extras hold ``teacher_W`` (k, d+1) and ``teacher_a`` (k,). The test sample
    shares the teacher."""
    teacher_seed = seed if teacher_seed is None else teacher_seed
    kwargs = dict(d=d, k=k, noise=noise, teacher_seed=teacher_seed, max_offset=max_offset)
    W, a = teacher_network(d, k, teacher_seed, max_offset)
    return _split(teacher, n, n_test, seed, kwargs, extras={"teacher_W": W, "teacher_a": a})


@DATASETS.register("mnist_pair")
def mnist_pair_dataset(data_dir="data", n=None, n_test=None, d=None, seed=0, digits=(0, 1),
                       downsample=1) -> DataSplit:
    """Two MNIST digits as +-1 regression (digits=(0, 1), optional downsample / projection to d).

    See :func:`~algorithms.shallow.data.mnist_pair`: the MNIST train split's examples of those
    digits for training (first ``n``), its test split (first ``n_test``) for testing."""
    from workbench import mnist_files  # imported only when MNIST is asked for

    x_train, y_train, x_test, y_test = mnist_files.load(Path(data_dir), "mnist")
    digits = tuple(digits)
    x_train, y_train = mnist_pair(x_train, y_train, n, d, seed, digits, downsample)
    x_test, y_test = mnist_pair(x_test, y_test, n_test, d, seed, digits, downsample)
    return DataSplit(x_train, y_train, x_test, y_test, task="regression", n_outputs=1,
                     extras={"digits": digits})


@DATASETS.register("particle_toy")
def particle_toy_data(data_dir=None, target: float = 4.0) -> DataSplit:
    """One example with label target / sqrt 2, so that F = (x - target)^2 / 2 for ``particle_toy``."""
    x = torch.zeros(1, 1, dtype=F64)
    y = torch.full((1,), target / math.sqrt(2.0), dtype=F64)
    return DataSplit(x, y, x[:0], y[:0], "regression", 1)


# -- models --------------------------------------------------------------------------------------
@MODELS.register("two_layer_relu")
def two_layer_relu(input_shape, n_outputs, width: int = 50, init: str = "normal", scale: float = 1e-2,
                   signs: str = "mixed", train_output: bool = True, output_scale: float = 1.0,
                   m_per_axis: int | None = None, seed: int | None = None) -> TwoLayerReLU:
    """A :class:`TwoLayerReLU` for inputs of shape (d,) and one regression output.

    ``init`` is "normal" (``width`` neurons) or "grid" (d = 1 only, ``m_per_axis``^2 neurons;
    ``m_per_axis`` defaults to round(sqrt(width))). Output weights are +-1 times ``output_scale``.
    ``seed=None`` draws the init seed from torch's global generator, which the runner seeds, so the
    experiment seed fixes the weights.
    """
    if len(input_shape) != 1:
        raise ValueError(f"two_layer_relu needs flat inputs of shape (d,), got {tuple(input_shape)}")
    if n_outputs != 1:
        raise ValueError(f"two_layer_relu has one output (regression), the dataset has {n_outputs}")
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    d = int(input_shape[0])
    if init == "normal":
        W, a = normal(d, int(width), scale, signs, seed)
    elif init == "grid":
        if d != 1:
            raise ValueError(f"init='grid' needs 1-D inputs (a 2-D parameter plane), got d={d}")
        W, a = grid(int(m_per_axis or round(width ** 0.5)), scale, signs, seed)
    else:
        raise ValueError(f"init must be 'normal' or 'grid', got {init!r}")
    return TwoLayerReLU(W, output_scale * a, train_output=train_output)


@MODELS.register("relu_grid")
def relu_grid(input_shape, n_outputs, kind: str = "circle", n: int = 64, radius: float = 1.0,
              signs: str = "both", mass: float = 1.0, bump_center: float | None = None,
              bump_width: float = 0.3) -> TwoLayerReLU:
    r"""A :class:`TwoLayerReLU` whose neurons are a fixed grid for ``relu_jko`` (1-D inputs, D = 2).

    ``kind="circle"``: n neurons :math:`g_k = r(\cos\theta_k, \sin\theta_k)`, :math:`\theta_k = 2\pi k/n`
    (a 1-D grid: every kink position and orientation, by positive homogeneity of relu).
    ``kind="plane"``: an n x n grid of [-radius, radius]^2 (a 2-D grid).
    ``signs="both"`` duplicates every grid point with output sign +1 and -1 (any signed measure
    on the grid is reachable); "positive" keeps +1 only.
    Masses a_k = s_k p_k: uniform with total ``mass``, or, with ``bump_center`` (an angle for the
    circle, ignored for the plane), a von Mises-like bump exp(cos(theta - c) / width^2).
    """
    if tuple(input_shape) != (1,):
        raise ValueError(f"relu_grid needs 1-D inputs (a 2-D parameter plane), got input shape {tuple(input_shape)}")
    if n_outputs != 1:
        raise ValueError(f"relu_grid has one output (regression), the dataset has {n_outputs}")
    if int(n) < 2 or not radius > 0 or not mass > 0:
        raise ValueError(f"relu_grid needs n >= 2, radius > 0 and mass > 0, got n={n}, radius={radius}, mass={mass}")
    if kind == "circle":
        theta = 2 * math.pi * torch.arange(int(n), dtype=F64) / int(n)
        G = radius * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
        if bump_center is not None:
            w = torch.exp((torch.cos(theta - bump_center) - 1.0) / bump_width ** 2)
        else:
            w = torch.ones(int(n), dtype=F64)
    elif kind == "plane":
        axis = torch.linspace(-radius, radius, int(n), dtype=F64)
        ww, bb = torch.meshgrid(axis, axis, indexing="ij")
        G = torch.stack([ww.reshape(-1), bb.reshape(-1)], dim=1)
        w = torch.ones(G.shape[0], dtype=F64)
    else:
        raise ValueError(f"relu_grid kind must be 'circle' or 'plane', got {kind!r}")
    if signs == "both":
        G, w = torch.cat([G, G]), torch.cat([w, w])
        s = torch.cat([torch.ones(G.shape[0] // 2, dtype=F64), -torch.ones(G.shape[0] // 2, dtype=F64)])
    elif signs == "positive":
        s = torch.ones(G.shape[0], dtype=F64)
    else:
        raise ValueError(f"relu_grid signs must be 'both' or 'positive', got {signs!r}")
    p = mass * w / w.sum()
    return TwoLayerReLU(G, s * p, train_output=False)


@MODELS.register("particle_toy")
def particle_toy_model(input_shape, n_outputs, start=(0.0, 1.0)) -> ParticleToy:
    """The two-particle toy of the notes (only with dataset ``particle_toy``)."""
    if n_outputs != 1 or len(start) != 2:
        raise ValueError("particle_toy: one regression output and start=(x0, y0) expected")
    return ParticleToy(start)
