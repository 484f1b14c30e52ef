"""``dataset="image_folder"``: ``data_path/train/<class>/*`` and ``data_path/test/<class>/*`` (the
layout of torchvision's ImageFolder), read once with Pillow, converted to RGB, resized to
``image_size`` x ``image_size`` (bilinear), kept as uint8 tensors (n, 3, s, s) and normalised per
channel with the training split's statistics on the device.

The decoded arrays are cached in ``<data_path>/.workbench_cache_<size>.npz``, keyed by every file's
path, size and modification time: a later start reads one file; a changed, added or removed image
rebuilds it. Class names are the sorted folder names of ``train/``; ``test/`` may not add others.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from workbench.errors import ConfigError
from workbench.files import atomic_write_bytes
from workbench.problem import DataSplit

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


def _files(root: Path, split: str, classes: list[str] | None) -> tuple[list[Path], list[int], list[str]]:
    folder = root / split
    if not folder.is_dir():
        raise ConfigError(f"image_folder: no {split}/ in {root}; the layout is {root}/train/<class>/*.png and "
                          f"{root}/test/<class>/*.png")
    found = sorted(d.name for d in folder.iterdir() if d.is_dir())
    classes = classes or found
    extra = sorted(set(found) - set(classes))
    if extra:
        raise ConfigError(f"image_folder: {split}/ has classes that train/ lacks: {', '.join(extra)}")
    if not classes:
        raise ConfigError(f"image_folder: {folder} has no class folders")
    paths, labels = [], []
    for k, name in enumerate(classes):
        for path in sorted((folder / name).iterdir()) if (folder / name).is_dir() else []:
            if path.suffix.lower() in EXTENSIONS:
                paths.append(path)
                labels.append(k)
    if not paths:
        raise ConfigError(f"image_folder: no images ({', '.join(sorted(EXTENSIONS))}) under {folder}")
    return paths, labels, classes


def _decode(paths: list[Path], size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image = image.convert("RGB").resize((size, size), Image.BILINEAR)
                out[i] = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
        except Exception as exc:  # noqa: BLE001  a broken or foreign file: name it
            raise ConfigError(f"image_folder: {path} cannot be read as an image ({type(exc).__name__}: {exc}); "
                              f"remove or replace it") from None
    return out


def load(root: Path, image_size: int = 32) -> DataSplit:
    if not (isinstance(image_size, int) and image_size > 0):
        raise ConfigError(f"image_folder: image_size must be a positive integer, got {image_size!r}")
    if not root.is_dir():
        raise ConfigError(f"data_path={str(root)!r}: no such folder (a relative path is relative to the config file, "
                          f"else to the app folder)")
    train, y_train, classes = _files(root, "train", None)
    test, y_test, _ = _files(root, "test", classes)
    key = hashlib.sha256(repr([(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                               for p in train + test]).encode()).hexdigest()
    cache = root / f".workbench_cache_{image_size}.npz"
    arrays = None
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as stored:
                if str(stored["key"]) == key:
                    arrays = stored["x_train"], stored["x_test"]
        except Exception:  # noqa: BLE001  a broken cache is rebuilt
            arrays = None
    if arrays is None:
        arrays = _decode(train, image_size), _decode(test, image_size)
        import io

        buffer = io.BytesIO()
        np.savez(buffer, key=np.array(key), x_train=arrays[0], x_test=arrays[1])
        try:
            atomic_write_bytes(cache, buffer.getvalue())
        except OSError:  # a read-only folder: no cache, the images are decoded each time
            pass
    x_train, x_test = arrays
    pixels = x_train.astype(np.float64)
    mean, std = pixels.mean(axis=(0, 2, 3)).tolist(), pixels.std(axis=(0, 2, 3)).tolist()
    return DataSplit(torch.from_numpy(x_train), torch.tensor(y_train), torch.from_numpy(x_test), torch.tensor(y_test),
                     task="classification", n_outputs=len(classes), extras={"classes": classes},
                     normalise=(mean, [s if s > 0 else 1.0 for s in std]))
