"""Registered datasets: MNIST-format image sets and small synthetic generators.

Each entry is ``fn(data_dir, **dataset_args) -> DataSplit`` returning CPU tensors; the runner keeps
the first ``subset`` training examples and moves them once to the run's device and dtype. Images
are normalised here, once, never per batch.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from workbench.problem import DataSplit
from workbench.registry import DATASETS
from workbench.errors import ConfigError

# Training-set pixel statistics (of x / 255), the usual normalisation constants.
NORMALISATION = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}


def _image_dataset(name: str, data_dir: Path, flatten: bool = False) -> DataSplit:
    from workbench import mnist_files

    try:
        x_train, y_train, x_test, y_test = mnist_files.load(Path(data_dir), name)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    except (ValueError, OSError) as exc:  # a truncated or corrupt IDX file: the message names it
        raise ConfigError(f"{name} in {data_dir}: {exc}. Delete the damaged file and run setup again "
                          f"(or python -m workbench.mnist_files) to fetch a fresh copy") from None
    mean, std = NORMALISATION[name]

    def to_tensor(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images).to(torch.float32)
        x.mul_(1.0 / (255.0 * std)).sub_(mean / std)  # (x / 255 - mean) / std, in place (no temporaries)
        return x.reshape(len(images), -1) if flatten else x.unsqueeze(1)  # (n, 784) or (n, 1, 28, 28)

    return DataSplit(
        to_tensor(x_train), torch.from_numpy(y_train).long(),
        to_tensor(x_test), torch.from_numpy(y_test).long(),
        task="classification", n_outputs=10,
    )


@DATASETS.register("mnist")
def mnist(data_dir, flatten=False) -> DataSplit:
    """MNIST, 60000 / 10000 images of shape (1, 28, 28) (or (784,) with ``flatten=True``),
    normalised with the training-set mean 0.1307 and std 0.3081."""
    return _image_dataset("mnist", data_dir, flatten)


@DATASETS.register("fashion_mnist")
def fashion_mnist(data_dir, flatten=False) -> DataSplit:
    """Fashion-MNIST (same IDX format and shapes as MNIST), normalised with 0.2860 / 0.3530."""
    return _image_dataset("fashion_mnist", data_dir, flatten)


@DATASETS.register("synthetic_classification")
def synthetic_classification(data_dir=None, n=2048, n_test=512, d=20, classes=4,
                             separation=2.0, seed=0) -> DataSplit:
    """Gaussian clusters: class c has mean ``separation * mu_c`` (mu_c random unit vectors in R^d)
    and identity covariance. Labels are balanced; the data depends only on ``seed``."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g)
    centres = separation * centres / centres.norm(dim=1, keepdim=True)

    def sample(count):
        y = torch.arange(count) % classes
        y = y[torch.randperm(count, generator=g)]
        return centres[y] + torch.randn(count, d, generator=g), y

    x_train, y_train = sample(n)
    x_test, y_test = sample(n_test)
    return DataSplit(x_train, y_train, x_test, y_test, task="classification", n_outputs=classes)


@DATASETS.register("synthetic_regression")
def synthetic_regression(data_dir=None, n=2048, n_test=512, d=10, hidden=16,
                         noise=0.05, seed=0) -> DataSplit:
    """y = b . tanh(A x / sqrt(d)) + noise * N(0, 1) with x ~ N(0, I_d), A (hidden, d) and
    b (hidden,) standard normal / sqrt(hidden): a smooth nonlinear target of unit scale."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(hidden, d, generator=g)
    b = torch.randn(hidden, generator=g) / math.sqrt(hidden)

    def sample(count):
        x = torch.randn(count, d, generator=g)
        return x, torch.tanh(x @ A.T / math.sqrt(d)) @ b + noise * torch.randn(count, generator=g)

    x_train, y_train = sample(n)
    x_test, y_test = sample(n_test)
    return DataSplit(x_train, y_train, x_test, y_test, task="regression", n_outputs=1)


def _cifar(name: str, data_dir, verify_counts: bool = True) -> DataSplit:
    from workbench import cifar_files

    arrays = cifar_files.load(Path(data_dir), name, verify_counts=verify_counts)
    mean, std = cifar_files.channel_statistics(arrays["x_train"])
    return DataSplit(torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["y_train"]),
                     torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"]),
                     task="classification", n_outputs=cifar_files.SETS[name]["classes"], normalise=(mean, std))


@DATASETS.register("cifar10")
def cifar10(data_dir, verify_counts=True) -> DataSplit:
    """CIFAR-10 (data_dir/cifar-10-batches-py/), 50000 / 10000 images (3, 32, 32), kept uint8 on
    the device and normalised per channel with the training split's mean and std."""
    return _cifar("cifar10", data_dir, verify_counts)


@DATASETS.register("cifar100")
def cifar100(data_dir, verify_counts=True) -> DataSplit:
    """CIFAR-100 (data_dir/cifar-100-python/), 100 fine classes, stored and normalised as CIFAR-10."""
    return _cifar("cifar100", data_dir, verify_counts)


@DATASETS.register("npz")
def npz(data_dir=None, *, data_path) -> DataSplit:
    """Your own arrays: data_path = a .npz with x_train, y_train, x_test, y_test (x_val, y_val
    optional); inputs (N, D), (N, H, W) or (N, C, H, W); integer targets: classification, else
    regression; inputs normalised with the training split's mean and std (per feature or channel)."""
    from workbench import npz_files

    return npz_files.load(Path(data_path))


@DATASETS.register("image_folder")
def image_folder(data_dir=None, *, data_path, image_size=32) -> DataSplit:
    """An image folder (data_path/train/<class>/*, data_path/test/<class>/*, torchvision's
    ImageFolder layout), read once with Pillow, resized to image_size, kept uint8 and normalised per
    channel; a cache next to the folder makes later starts fast."""
    from workbench import image_folder_files

    return image_folder_files.load(Path(data_path), image_size)
