"""MNIST-format IDX files: parse, find, verify, and prepare them in ``data/``.

The IDX format (LeCun's MNIST page) is a big-endian header followed by raw bytes::

    magic (int32)   0x00000801 = 2049: labels, 1 dimension
                    0x00000803 = 2051: images, 3 dimensions
    dims (int32 each)   n            (labels)   or   n, rows, cols   (images)
    data                prod(dims) unsigned bytes, row-major

MNIST and Fashion-MNIST share the format and the file names::

    train-images-idx3-ubyte  (60000, 28, 28)    train-labels-idx1-ubyte  (60000,)
    t10k-images-idx3-ubyte   (10000, 28, 28)    t10k-labels-idx1-ubyte   (10000,)

each raw or gzipped (``.gz``). They are looked for in ``ROOT/MNIST/raw/`` (torchvision's layout;
``ROOT/FashionMNIST/raw/`` for Fashion-MNIST) and in ``ROOT`` itself.

:func:`prepare` is what ``setup.sh`` / ``setup.bat`` call (``python -m workbench.mnist_files``):
files already valid in ``data/`` are kept; otherwise a local folder (``--source`` or the ``MNIST_DIR`` /
``FASHION_MNIST_DIR`` environment variable) is copied in; otherwise torchvision downloads them.
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np

LABELS_MAGIC = 2049
IMAGES_MAGIC = 2051
_NDIM = {LABELS_MAGIC: 1, IMAGES_MAGIC: 3}

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# torchvision's folder name under the root, and the environment variable naming a local copy
DATASETS = {
    "mnist": dict(folder="MNIST", env="MNIST_DIR", title="MNIST"),
    "fashion_mnist": dict(folder="FashionMNIST", env="FASHION_MNIST_DIR", title="Fashion-MNIST"),
}
FULL_SIZE = {"train": 60000, "test": 10000}
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10


def _spec(dataset: str) -> dict:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[dataset]


def _candidates(stem: str) -> list[str]:
    # Some mirrors (e.g. Kaggle) write "train-images.idx3-ubyte" with a dot.
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


# ------------------------------------------------------------------------------------------------
# IDX parsing


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file (raw or gzip, detected from its first bytes).

    Returns uint8 of shape (n,) for labels (magic 2049) or (n, rows, cols) for images (magic 2051).
    Raises ValueError naming the file when the magic number, the header or the data length is wrong
    (a corrupt, truncated or non-IDX file) and FileNotFoundError when it does not exist.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(2)
    try:
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: corrupt or truncated gzip file ({exc}); replace it with a fresh copy") from None
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic not in _NDIM:
        raise ValueError(
            f"{path}: magic number {magic} (0x{magic:08x}) is not an IDX label file (2049) or image "
            f"file (2051); is it an MNIST file, and was it fully downloaded?"
        )
    ndim = _NDIM[magic]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: header announces dims {dims} = {expected} bytes of data but the file holds "
            f"{len(data) - header}; the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def write_idx(path: str | os.PathLike, array) -> Path:
    """Writes a uint8 array of 1 dimension (labels) or 3 dimensions (images) as an IDX file,
    gzipped when ``path`` ends in ``.gz``. Values must lie in 0..255."""
    path = Path(path)
    a = np.asarray(array)
    if a.ndim not in (1, 3):
        raise ValueError(f"IDX files here hold labels (n,) or images (n, rows, cols); got shape {a.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.integer) or (a.size and (a.min() < 0 or a.max() > 255)):
            raise ValueError(f"IDX data must be uint8 (integers in 0..255), got {a.dtype}")
        a = a.astype(np.uint8)
    magic = LABELS_MAGIC if a.ndim == 1 else IMAGES_MAGIC
    payload = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    payload += np.ascontiguousarray(a).tobytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6)
    path.write_bytes(payload)
    return path


# ------------------------------------------------------------------------------------------------
# Finding and loading


def search_dirs(root: str | os.PathLike, dataset: str = "mnist") -> list[Path]:
    """The folders :func:`locate` searches, in order: ``root/<Folder>/raw`` then ``root``."""
    root = Path(root)
    return [root / _spec(dataset)["folder"] / "raw", root]


def instructions(dataset: str = "mnist", dest: str | os.PathLike = "data") -> str:
    """How to provide the files: the text every 'not found' error carries."""
    spec = _spec(dataset)
    names = "\n".join(f"      {stem}  (or {stem}.gz)" for stem in FILES.values())
    dest_raw = Path(dest) / spec["folder"] / "raw"
    fashion = " --dataset fashion_mnist" if dataset == "fashion_mnist" else ""
    return (
        f"How to provide {spec['title']}:\n"
        f"  - on a machine with internet access, run setup again (./setup.sh or setup.bat), or\n"
        f"      python -m workbench.mnist_files{fashion}            (downloads through torchvision)\n"
        f"  - offline: get these four files (raw or .gz):\n{names}\n"
        f"    put them in a folder DIR (or DIR/{spec['folder']}/raw/) and run one of\n"
        f"      ./setup.sh --mnist-dir DIR        setup.bat --mnist-dir DIR\n"
        f"      {spec['env']}=DIR ./setup.sh      (Windows: set {spec['env']}=DIR, then setup.bat)\n"
        f"      python -m workbench.mnist_files{fashion} --source DIR\n"
        f"    or copy them yourself into {dest_raw}/"
    )


def locate(root: str | os.PathLike, dataset: str = "mnist") -> dict[str, Path]:
    """Paths of the four files under ``root`` (keys train_images, train_labels, test_images,
    test_labels), each found in ``root/MNIST/raw/`` (``FashionMNIST/raw`` for fashion_mnist) or in
    ``root``, raw preferred over ``.gz``.

    Raises FileNotFoundError listing the missing files, the folders searched and how to provide them.
    """
    dirs = search_dirs(root, dataset)
    found: dict[str, Path] = {}
    missing = []
    for key, stem in FILES.items():
        for folder in dirs:
            hit = next((folder / name for name in _candidates(stem) if (folder / name).is_file()), None)
            if hit is not None:
                found[key] = hit
                break
        else:
            missing.append(stem)
    if missing:
        raise FileNotFoundError(
            f"{_spec(dataset)['title']} files not found: {', '.join(missing)} (raw or .gz) are missing "
            f"from {' and '.join(str(d) for d in dirs)}.\n{instructions(dataset, root)}"
        )
    return found


def verify(x_train, y_train, x_test, y_test, verify_full_size: bool = True, where: str = "") -> None:
    """Raises ValueError unless the arrays look like an MNIST-format dataset: images (n, 28, 28),
    labels (n,) of the same n, labels in 0..9 with every class present in both splits, and (with
    ``verify_full_size``) 60000 training and 10000 test examples."""
    where = f" in {where}" if where else ""
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"{split} images{where} have shape {x.shape}, expected (n, 28, 28)")
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"{split} labels{where} have shape {y.shape} for {len(x)} images")
        if verify_full_size and len(x) != FULL_SIZE[split]:
            raise ValueError(f"{split} set{where} has {len(x)} examples, expected {FULL_SIZE[split]}: "
                             f"wrong or incomplete files")
        if len(y) and int(y.max()) >= N_CLASSES:
            raise ValueError(f"{split} labels{where} reach {int(y.max())}, expected 0..9")
        counts = np.bincount(y, minlength=N_CLASSES)
        if (counts == 0).any():
            raise ValueError(f"{split} labels{where} miss the classes {np.flatnonzero(counts == 0).tolist()}")


def load(root: str | os.PathLike, dataset: str = "mnist", verify_full_size: bool = True):
    """``(x_train, y_train, x_test, y_test)``: images uint8 (n, 28, 28), labels int64 (n,),
    read from the files :func:`locate` finds under ``root`` and checked with :func:`verify`.

    Raises FileNotFoundError (with instructions) when files are missing, ValueError when they are
    corrupt or inconsistent.
    """
    paths = locate(root, dataset)
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for key, array in arrays.items():
        expected = 3 if key.endswith("images") else 1
        if array.ndim != expected:
            raise ValueError(f"{paths[key]} holds a {array.ndim}-D array; expected the {key.replace('_', ' ')}")
    x_train, x_test = arrays["train_images"], arrays["test_images"]
    y_train = arrays["train_labels"].astype(np.int64)
    y_test = arrays["test_labels"].astype(np.int64)
    verify(x_train, y_train, x_test, y_test, verify_full_size, where=str(paths["train_images"].parent))
    return x_train, y_train, x_test, y_test


# ------------------------------------------------------------------------------------------------
# Preparing data/ (setup scripts)


def _copy_decompressed(src: Path, dst: Path) -> None:
    """Copies ``src`` (raw or gzip) to ``dst`` uncompressed, via a temporary file (never half-written)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    with open(src, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(src, "rb") if gz else open(src, "rb")) as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, length=1 << 20)
    except (EOFError, OSError, zlib.error) as exc:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"{src}: could not be read ({exc}); replace it with a fresh copy") from None
    os.replace(tmp, dst)


def _download(dest: Path, dataset: str) -> None:
    import torchvision

    cls = torchvision.datasets.MNIST if dataset == "mnist" else torchvision.datasets.FashionMNIST
    for train in (True, False):
        cls(str(dest), train=train, download=True)


def _copy_from(source: Path, dest: Path, dataset: str) -> dict[str, Path]:
    """Step 2 of :func:`prepare`: the files of a local folder, copied uncompressed and checked."""
    spec = _spec(dataset)
    title = spec["title"]
    if not source.is_dir():
        raise FileNotFoundError(f"{title}: source folder {source} does not exist.\n{instructions(dataset, dest)}")
    src_paths = locate(source, dataset)
    raw = dest / spec["folder"] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for key, src in src_paths.items():
        dst = raw / FILES[key]
        if dst.exists() and os.path.samefile(src, dst):
            continue
        _copy_decompressed(src, dst)
        print(f"{title}: copied {src} -> {dst}")
    load(dest, dataset)
    print(f"{title}: verified the files in {raw}")
    return locate(dest, dataset)


def prepare(dest: str | os.PathLike = "data", source: str | os.PathLike | None = None,
            dataset: str = "mnist", download: bool = True) -> dict[str, Path]:
    """Makes sure ``dest`` holds valid files of ``dataset`` and returns their paths (see :func:`locate`).

    1. valid files already in ``dest``: nothing to do (safe to run twice);
    2. else a local folder, ``source`` or the environment variable ``MNIST_DIR`` /
       ``FASHION_MNIST_DIR``: its files (raw or .gz, flat or in ``<Folder>/raw/``) are copied,
       uncompressed, into ``dest/<Folder>/raw/``;
    3. else, with ``download``, torchvision downloads them into ``dest``.

    The result is checked with :func:`load`. Prints what it does. Raises FileNotFoundError (with
    instructions) when no step provides the files, ValueError when the provided files are invalid.
    """
    spec = _spec(dataset)
    dest = Path(dest)
    title = spec["title"]
    try:
        load(dest, dataset)
        paths = locate(dest, dataset)
        print(f"{title}: valid files already in {paths['train_images'].parent}; nothing to do")
        return paths
    except FileNotFoundError:
        pass
    except ValueError as exc:
        print(f"{title}: the files in {dest} are not usable ({exc}); providing them again")

    if source is None and os.environ.get(spec["env"]):
        source = os.environ[spec["env"]]
        print(f"{title}: using {spec['env']}={source}")
    if source is not None:
        return _copy_from(Path(source).expanduser(), dest, dataset)

    if download:
        print(f"{title}: downloading through torchvision into {dest} ...")
        try:
            _download(dest, dataset)
        except Exception as exc:  # offline, proxy, mirror down: fall through to the instructions
            print(f"{title}: download failed ({type(exc).__name__}: {exc})")
        else:
            load(dest, dataset)
            paths = locate(dest, dataset)
            print(f"{title}: downloaded and verified the files in {paths['train_images'].parent}")
            return paths

    raise FileNotFoundError(
        f"{title} is not in {dest}"
        + (" and could not be downloaded" if download else " (download disabled)")
        + f".\n{instructions(dataset, dest)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workbench.mnist_files",
        description="Put MNIST / Fashion-MNIST into the data folder: keep valid files, else copy a local "
                    "folder of IDX files (--source or MNIST_DIR / FASHION_MNIST_DIR), else download.",
    )
    parser.add_argument("--dest", default="data", help="data folder (default: data)")
    parser.add_argument("--source", help="local folder with the four IDX files (raw or .gz)")
    parser.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
    parser.add_argument("--no-download", action="store_true", help="never use the network")
    args = parser.parse_args(argv)
    try:
        prepare(args.dest, args.source, args.dataset, download=not args.no_download)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
