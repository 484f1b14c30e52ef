"""``dataset="npz"``: a researcher's own arrays, checked before any run folder exists.

Keys ``x_train, y_train, x_test, y_test`` (``x_val, y_val`` optional, both or neither). Inputs
(N, D) features, (N, H, W) images (a channel axis is added) or (N, C, H, W), any numeric dtype;
targets (N,) integers for classification (classes 0..K-1, K = the largest training label + 1,
every test or validation label below K) or floats (N,) / (N, k) for regression. Inputs are
normalised with the training split's mean and standard deviation (per feature, or per channel for
images; a constant feature is left centred). Read with ``allow_pickle=False``: a file from
elsewhere cannot run code. Every problem is one ConfigError naming the key and the fix.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from workbench.errors import ConfigError
from workbench.problem import DataSplit

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def load(path: Path) -> DataSplit:
    where = f"data_path={str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{where}: no such file (a relative path is relative to the config file, else to the "
                          f"app folder)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except Exception as exc:  # noqa: BLE001  not an npz, truncated, or an object array
        raise ConfigError(f"{where}: not a readable .npz of numeric arrays ({type(exc).__name__}: {exc}); write it "
                          f"with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise ConfigError(f"{where}: key {missing[0]!r} is missing; the file has {', '.join(sorted(arrays)) or '(none)'}"
                          f" and needs {', '.join(REQUIRED)} (x_val, y_val optional)")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise ConfigError(f"{where}: give both x_val and y_val, or neither")
    splits = [s for s in ("train", "test", "val") if f"x_{s}" in arrays]
    for split in splits:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
            raise ConfigError(f"{where}: x_{split} / y_{split} must be numeric, got {x.dtype} / {y.dtype}")
        if x.ndim not in (2, 3, 4) or len(x) != len(y):
            raise ConfigError(f"{where}: x_{split} has shape {x.shape} and y_{split} {len(y)} entries; inputs are "
                              f"(N, D), (N, H, W) or (N, C, H, W) with one target each")
        if not np.isfinite(x).all():
            raise ConfigError(f"{where}: x_{split} holds NaN or infinite values; clean them before training")
        if x.shape[1:] != arrays["x_train"].shape[1:]:
            raise ConfigError(f"{where}: x_{split} has inputs of shape {x.shape[1:]}, x_train "
                              f"{arrays['x_train'].shape[1:]}")
    if len(arrays["x_train"]) == 0:
        raise ConfigError(f"{where}: x_train is empty")
    classification = np.issubdtype(arrays["y_train"].dtype, np.integer)
    if classification:
        classes = int(arrays["y_train"].max()) + 1
        for split in splits:
            y = arrays[f"y_{split}"]
            if y.ndim != 1 or (y.size and (y.min() < 0 or y.max() >= classes)):
                raise ConfigError(f"{where}: y_{split} must hold class labels 0..{classes - 1} (one per input; the "
                                  f"classes are those of y_train), got values {y.min() if y.size else ''}.."
                                  f"{y.max() if y.size else ''} of shape {y.shape}")
    elif not all(np.isfinite(arrays[f"y_{s}"]).all() for s in splits):
        raise ConfigError(f"{where}: a regression target (y_*) holds NaN or infinite values")

    def inputs(x: np.ndarray) -> np.ndarray:
        return x[:, None] if x.ndim == 3 else x  # (N, H, W) images get their channel axis

    x_train = inputs(arrays["x_train"]).astype(np.float64)
    axes = (0,) if x_train.ndim == 2 else (0, 2, 3)
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True)
    std[std == 0] = 1.0

    def tensor_x(x):
        return torch.from_numpy(((inputs(x).astype(np.float64) - mean) / std).astype(np.float32))

    def tensor_y(y):
        return torch.from_numpy(y.astype(np.int64) if classification else y.astype(np.float32))

    y_train = arrays["y_train"]
    n_outputs = int(y_train.max()) + 1 if classification else (1 if y_train.ndim == 1 else int(y_train.shape[1]))
    val = {"x_val": tensor_x(arrays["x_val"]), "y_val": tensor_y(arrays["y_val"])} if "x_val" in arrays else {}
    return DataSplit(tensor_x(arrays["x_train"]), tensor_y(y_train), tensor_x(arrays["x_test"]),
                     tensor_y(arrays["y_test"]), task="classification" if classification else "regression",
                     n_outputs=n_outputs, **val)
