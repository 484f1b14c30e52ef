"""CIFAR-10 and CIFAR-100 in torchvision's python format, read without trusting the pickles.

    data/cifar-10-batches-py/  data_batch_1 .. data_batch_5, test_batch, batches.meta
    data/cifar-100-python/     train, test, meta

Each batch file is a pickle of ``{b"data": uint8 array (n, 3072), b"labels" | b"fine_labels": [...]}``;
it is read by an unpickler that builds only numpy arrays and plain containers (a file from elsewhere
cannot run code). :func:`load` checks the structure (every file present, 50000 / 10000 images of
3072 bytes, labels in range, every class present) and names the file and the fix when one is missing,
truncated or malformed; it compares the known MD5 checksums (torchvision's) and reports a mismatch as
a warning (files rewritten by other tools differ and may still be right).

``python -m workbench.cifar_files --from DIR`` copies the files from a local folder (or the
``.tar.gz`` archives) into ``data/``; ``--download`` fetches them (170 MB, through torchvision).
Setup calls it for ``--cifar-dir DIR`` / ``CIFAR_DIR`` and ``--with-cifar``.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import shutil
import sys
import tarfile
import warnings
from pathlib import Path

import numpy as np

from workbench.errors import ConfigError

SETS = {
    "cifar10": {"folder": "cifar-10-batches-py", "archive": "cifar-10-python.tar.gz", "classes": 10,
                "label_key": b"labels", "meta": ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
                "train": [("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                          ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                          ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                          ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                          ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")],
                "test": [("test_batch", "40351d587109b95175f43aff81a1287e")],
                "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"},
    "cifar100": {"folder": "cifar-100-python", "archive": "cifar-100-python.tar.gz", "classes": 100,
                 "label_key": b"fine_labels", "meta": ("meta", "7973b15100ade9c7d40fb424638fde48"),
                 "train": [("train", "16019d7e3df5f24257cddd939b257f8d")],
                 "test": [("test", "f0ef6b0ae62326f3e7ffdfab6717acfc")],
                 "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"},
}
IMAGE_BYTES = 3 * 32 * 32
COUNTS = {"train": 50_000, "test": 10_000}


class _ArrayUnpickler(pickle.Unpickler):
    """Builds numpy arrays (as numpy 1 and 2 pickle them) and plain containers, nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"),
               ("_codecs", "encode")}  # how Python 3 writes bytes in protocol 2 (str -> bytes, nothing else)

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never holds")


def _fix(name: str) -> str:
    return (f"copy the {name} files again (./setup.sh --cifar-dir DIR, or --with-cifar on a connected machine; "
            f"python -m workbench.cifar_files --help)")


def _read_batch(path: Path, label_key: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise ConfigError(f"{name}: {path} is missing; {_fix(name)}")
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001  truncated, foreign or hostile: one message
        raise ConfigError(f"{name}: {path} is not a readable CIFAR batch ({type(exc).__name__}: {exc}); "
                          f"{_fix(name)}") from None
    if isinstance(batch, dict):  # Python 2's files have byte-string keys, files written by Python 3 str keys
        batch = {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise ConfigError(f"{name}: {path} has no {b'data'!r} and {label_key!r} entries; {_fix(name)}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES or len(labels) != len(data):
        raise ConfigError(f"{name}: {path} holds {data.dtype} data of shape {data.shape} with {len(labels)} labels, "
                          f"not uint8 images of {IMAGE_BYTES} bytes, one label each; {_fix(name)}")
    return data, labels.astype(np.int64)


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load(data_dir: Path, name: str, verify_counts: bool = True) -> dict[str, np.ndarray]:
    """``{"x_train": (50000, 3, 32, 32) uint8, "y_train", "x_test", "y_test"}`` of CIFAR ``name``
    under ``data_dir``, checked (module docstring). ``verify_counts=False`` accepts fewer images
    (the tests' small files in the real format)."""
    info = SETS[name]
    folder = Path(data_dir) / info["folder"]
    if not folder.is_dir():
        raise ConfigError(f"{name}: no {info['folder']}/ in {Path(data_dir).resolve()}; {_fix(name)}")
    out = {}
    for split in ("train", "test"):
        parts = [_read_batch(folder / file, info["label_key"], name) for file, _ in info[split]]
        x = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
        y = np.concatenate([p[1] for p in parts])
        if verify_counts and len(x) != COUNTS[split]:
            raise ConfigError(f"{name}: the {split} files in {folder} hold {len(x)} images, not {COUNTS[split]}; "
                              f"{_fix(name)}")
        if y.size and (y.min() < 0 or y.max() >= info["classes"]):
            raise ConfigError(f"{name}: a {split} label is {int(y.min() if y.min() < 0 else y.max())}, outside "
                              f"0..{info['classes'] - 1}; {_fix(name)}")
        missing = sorted(set(range(info["classes"])) - set(np.unique(y).tolist()))
        if missing:
            raise ConfigError(f"{name}: the {split} split has no image of class {missing[:5]}; {_fix(name)}")
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    wrong = [file for file, expected in info["train"] + info["test"] + [info["meta"]]
             if (folder / file).is_file() and md5(folder / file) != expected]
    if wrong:
        warnings.warn(f"{name}: {', '.join(wrong)} in {folder} differ from the published files (MD5); the "
                      f"structure checks passed, so they are used (files rewritten by other tools differ)",
                      RuntimeWarning, stacklevel=2)
    return out


def channel_statistics(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images (n, c, h, w), in pixel units."""
    x = x.astype(np.float64)
    return x.mean(axis=(0, 2, 3)).tolist(), x.std(axis=(0, 2, 3)).tolist()


def install(name: str, source: Path, data_dir: Path, verify_counts: bool = True) -> Path:
    """Copy CIFAR ``name`` from ``source`` (its folder, a folder holding it, or its .tar.gz) into
    ``data_dir``; the copy is checked with :func:`load`."""
    info = SETS[name]
    target = Path(data_dir) / info["folder"]
    candidates = [source, source / info["folder"], source / info["archive"]]
    found = next((c for c in candidates if c.is_dir() and (c / info["test"][0][0]).is_file()), None)
    archive = next((c for c in candidates if c.is_file() and c.name.endswith(".tar.gz")), None)
    target.parent.mkdir(parents=True, exist_ok=True)
    if found is not None:
        shutil.copytree(found, target, dirs_exist_ok=True)
    elif archive is not None:
        with tarfile.open(archive) as tar:
            tar.extractall(target.parent, filter="data")
    else:
        raise ConfigError(f"{name}: {source} holds neither {info['folder']}/ nor {info['archive']}")
    load(data_dir, name, verify_counts)
    return target


def download(name: str, data_dir: Path) -> Path:
    """Fetch CIFAR ``name`` with torchvision (which checks the archive's MD5) into ``data_dir``."""
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    cls(str(data_dir), train=True, download=True)
    load(data_dir, name)
    return Path(data_dir) / SETS[name]["folder"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.cifar_files",
                                     description="Put CIFAR-10 / CIFAR-100 into the data folder.")
    parser.add_argument("--from", dest="source", help="a folder with cifar-10-batches-py/, cifar-100-python/ or "
                                                      "their .tar.gz archives")
    parser.add_argument("--from-environment", action="store_true",
                        help="the folder is the environment variable CIFAR_DIR (setup.bat: a trailing backslash "
                             "would escape a quoted argument)")
    parser.add_argument("--download", action="store_true", help="fetch them (170 MB each; needs the network)")
    parser.add_argument("--sets", default="cifar10,cifar100", help="which (default: both)")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent.parent / "data"))
    args = parser.parse_args(argv)
    if args.from_environment:
        args.source = os.environ.get("CIFAR_DIR") or parser.error("--from-environment: CIFAR_DIR is not set")
    done = 0
    for name in args.sets.split(","):
        try:
            if args.source:
                path = install(name, Path(args.source), Path(args.data_dir))
            elif args.download:
                path = download(name, Path(args.data_dir))
            else:
                parser.error("give --from DIR or --download")
            print(f"{name}: {path} (checked)")
            done += 1
        except ConfigError as exc:
            print(f"{'warning' if args.source and ',' in args.sets else 'error'}: {exc}", file=sys.stderr)
    return 0 if done else 2


if __name__ == "__main__":
    sys.exit(main())
