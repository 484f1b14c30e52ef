"""IDX files: parsing, finding, verifying and preparing MNIST-format data (workbench.mnist_files)."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from workbench import mnist_files
from workbench.mnist_files import FILES, load, locate, prepare, read_idx, write_idx

REAL_MNIST = Path(__file__).resolve().parents[3] / "shared" / "mnist"


def small_dataset(seed=0, n_train=50, n_test=20):
    """Random uint8 images and labels that contain every class 0..9 in both splits."""
    rng = np.random.default_rng(seed)
    def split(n):
        return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.permutation(np.arange(n) % 10).astype(np.uint8)
    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    return dict(train_images=xtr, train_labels=ytr, test_images=xte, test_labels=yte)


def write_dataset(folder: Path, arrays: dict, gz: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        write_idx(folder / (FILES[key] + (".gz" if gz else "")), array)
    return folder


# ------------------------------------------------------------------------------------------------
# read_idx / write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (5, 28, 28), (3, 4, 6)])
def test_idx_round_trip(tmp_path, suffix, shape):
    a = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    path = write_idx(tmp_path / f"x-idx{suffix}", a)
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, a)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_idx_header_layout(tmp_path):
    """Big-endian magic 2051, then the dims, then the bytes row-major (LeCun's format)."""
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = write_idx(tmp_path / "img", a).read_bytes()
    assert raw[:4] == bytes([0, 0, 8, 3])
    assert [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(3)] == [2, 3, 4]
    assert raw[16:] == bytes(range(24))
    labels = write_idx(tmp_path / "lab", np.array([3, 1, 4], dtype=np.uint8)).read_bytes()
    assert labels == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])


def test_read_idx_accepts_gz_whatever_the_name(tmp_path):
    a = np.array([1, 2, 3], dtype=np.uint8)
    raw = write_idx(tmp_path / "lab", a).read_bytes()
    (tmp_path / "lab-no-suffix").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(tmp_path / "lab-no-suffix"), a)


def test_read_idx_rejects_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x08\x02" + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(4))
    with pytest.raises(ValueError, match="magic number 2050"):
        read_idx(path)
    (tmp_path / "html").write_bytes(b"<html>404 not found</html>")
    with pytest.raises(ValueError, match="magic number"):
        read_idx(tmp_path / "html")


def test_read_idx_rejects_wrong_dims_and_truncation(tmp_path):
    raw = write_idx(tmp_path / "img", np.zeros((3, 28, 28), np.uint8)).read_bytes()
    (tmp_path / "truncated").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(tmp_path / "truncated")
    (tmp_path / "extra").write_bytes(raw + b"\x00")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(tmp_path / "extra")
    (tmp_path / "short_header").write_bytes(raw[:10])
    with pytest.raises(ValueError, match="header"):
        read_idx(tmp_path / "short_header")
    (tmp_path / "tiny").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="too short"):
        read_idx(tmp_path / "tiny")


def test_read_idx_rejects_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "img.gz", np.ones((4, 28, 28), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(path)


def test_write_idx_validates(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_idx(tmp_path / "x", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "x", np.array([1, 300]))
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "x", np.array([0.5]))
    write_idx(tmp_path / "ok", np.array([0, 255], dtype=np.int64))  # integers in range are fine
    np.testing.assert_array_equal(read_idx(tmp_path / "ok"), [0, 255])


# ------------------------------------------------------------------------------------------------
# locate / load


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", ["torchvision", "flat"])
def test_locate_and_load_round_trip(tmp_path, gz, layout):
    arrays = small_dataset()
    folder = tmp_path / "MNIST" / "raw" if layout == "torchvision" else tmp_path
    write_dataset(folder, arrays, gz)
    paths = locate(tmp_path)
    assert set(paths) == {"train_images", "train_labels", "test_images", "test_labels"}
    assert all(p.parent == folder and p.name.endswith(".gz") == gz for p in paths.values())
    x_train, y_train, x_test, y_test = load(tmp_path, verify_full_size=False)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    np.testing.assert_array_equal(x_train, arrays["train_images"])
    np.testing.assert_array_equal(y_train, arrays["train_labels"])
    np.testing.assert_array_equal(x_test, arrays["test_images"])
    np.testing.assert_array_equal(y_test, arrays["test_labels"])


def test_locate_prefers_torchvision_layout_and_raw_files(tmp_path):
    write_dataset(tmp_path, small_dataset(seed=1), gz=False)
    raw = tmp_path / "MNIST" / "raw"
    write_dataset(raw, small_dataset(seed=2), gz=True)
    write_dataset(raw, small_dataset(seed=3), gz=False)
    assert all(p.parent == raw and not p.name.endswith(".gz") for p in locate(tmp_path).values())
    np.testing.assert_array_equal(load(tmp_path, verify_full_size=False)[0], small_dataset(seed=3)["train_images"])


def test_locate_fashion_mnist_folder(tmp_path):
    write_dataset(tmp_path / "FashionMNIST" / "raw", small_dataset(), gz=True)
    assert locate(tmp_path, "fashion_mnist")["test_labels"].parent == tmp_path / "FashionMNIST" / "raw"
    with pytest.raises(FileNotFoundError):
        locate(tmp_path, "mnist")
    with pytest.raises(ValueError, match="unknown dataset"):
        locate(tmp_path, "cifar10")


def test_missing_files_say_how_to_provide_them(tmp_path):
    arrays = small_dataset()
    del arrays["test_labels"]
    write_dataset(tmp_path, arrays, gz=False)
    with pytest.raises(FileNotFoundError) as info:
        locate(tmp_path)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte" in message.split("\n")[0]  # names the missing file first
    for needle in ("MNIST_DIR", "--mnist-dir", "setup.sh", "setup.bat", "train-images-idx3-ubyte",
                   str(tmp_path / "MNIST" / "raw")):
        assert needle in message
    with pytest.raises(FileNotFoundError, match="FASHION_MNIST_DIR"):
        locate(tmp_path, "fashion_mnist")


def test_load_verifies_contents(tmp_path):
    arrays = small_dataset()
    write_dataset(tmp_path / "ok", arrays, gz=False)
    with pytest.raises(ValueError, match="60000"):
        load(tmp_path / "ok")  # full size required by default

    bad = dict(arrays, train_labels=arrays["train_labels"][:-1])
    write_dataset(tmp_path / "count", bad, gz=False)
    with pytest.raises(ValueError, match="labels .* shape"):
        load(tmp_path / "count", verify_full_size=False)

    bad = dict(arrays, test_labels=np.where(arrays["test_labels"] == 3, 11, arrays["test_labels"]).astype(np.uint8))
    write_dataset(tmp_path / "range", bad, gz=False)
    with pytest.raises(ValueError, match="reach 11"):
        load(tmp_path / "range", verify_full_size=False)

    bad = dict(arrays, train_labels=np.where(arrays["train_labels"] == 7, 0, arrays["train_labels"]).astype(np.uint8))
    write_dataset(tmp_path / "class", bad, gz=False)
    with pytest.raises(ValueError, match=r"miss the classes \[7\]"):
        load(tmp_path / "class", verify_full_size=False)

    bad = dict(arrays, train_images=np.zeros((50, 28, 27), np.uint8))
    write_dataset(tmp_path / "shape", bad, gz=False)
    with pytest.raises(ValueError, match="28, 28"):
        load(tmp_path / "shape", verify_full_size=False)

    bad = dict(arrays, train_images=arrays["train_labels"])  # a label file where images belong
    write_dataset(tmp_path / "swap", bad, gz=False)
    with pytest.raises(ValueError, match="1-D"):
        load(tmp_path / "swap", verify_full_size=False)


# ------------------------------------------------------------------------------------------------
# prepare


@pytest.fixture
def small_full_size(monkeypatch):
    """Let prepare() verify small generated datasets (it checks the full MNIST sizes otherwise)."""
    monkeypatch.setattr(mnist_files, "FULL_SIZE", {"train": 50, "test": 20})
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", ["torchvision", "flat"])
def test_prepare_copies_a_source_folder_and_is_idempotent(tmp_path, small_full_size, capsys, gz, layout):
    arrays = small_dataset()
    source = tmp_path / "downloads"
    write_dataset(source / "MNIST" / "raw" if layout == "torchvision" else source, arrays, gz)
    dest = tmp_path / "data"
    paths = prepare(dest, source=source, download=False)
    raw = dest / "MNIST" / "raw"
    assert {p.name for p in paths.values()} == set(FILES.values())  # stored uncompressed
    assert sorted(os.listdir(raw)) == sorted(FILES.values())      # no temporary files left
    np.testing.assert_array_equal(load(dest)[0], arrays["train_images"])
    assert "copied" in capsys.readouterr().out

    mtimes = {p: p.stat().st_mtime_ns for p in raw.iterdir()}
    prepare(dest, source=source, download=False)
    assert "nothing to do" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in raw.iterdir()} == mtimes


def test_prepare_reads_the_environment_variable(tmp_path, small_full_size, monkeypatch, capsys):
    write_dataset(tmp_path / "src", small_dataset(), gz=True)
    write_dataset(tmp_path / "fsrc" / "FashionMNIST" / "raw", small_dataset(seed=5), gz=False)
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "src"))
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "fsrc"))
    prepare(tmp_path / "data", download=False)
    prepare(tmp_path / "data", dataset="fashion_mnist", download=False)
    out = capsys.readouterr().out
    assert "MNIST_DIR" in out and "FASHION_MNIST_DIR" in out
    np.testing.assert_array_equal(load(tmp_path / "data")[0], small_dataset()["train_images"])
    np.testing.assert_array_equal(load(tmp_path / "data", "fashion_mnist")[0], small_dataset(seed=5)["train_images"])


def test_prepare_replaces_corrupt_files(tmp_path, small_full_size, capsys):
    write_dataset(tmp_path / "src", small_dataset(), gz=False)
    raw = write_dataset(tmp_path / "data" / "MNIST" / "raw", small_dataset(seed=9), gz=False)
    (raw / FILES["train_images"]).write_bytes(b"\x00\x00\x08\x03garbage")
    prepare(tmp_path / "data", source=tmp_path / "src", download=False)
    assert "not usable" in capsys.readouterr().out
    np.testing.assert_array_equal(load(tmp_path / "data")[0], small_dataset()["train_images"])


def test_prepare_rejects_an_invalid_source(tmp_path, small_full_size):
    arrays = small_dataset()
    arrays["train_labels"] = np.zeros(50, np.uint8)  # one class only
    write_dataset(tmp_path / "src", arrays, gz=False)
    with pytest.raises(ValueError, match="miss the classes"):
        prepare(tmp_path / "data", source=tmp_path / "src", download=False)


def test_prepare_without_files_fails_with_instructions(tmp_path, small_full_size, monkeypatch):
    with pytest.raises(FileNotFoundError, match="MNIST_DIR") as info:
        prepare(tmp_path / "data", download=False)
    assert "download disabled" in str(info.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare(tmp_path / "data", source=tmp_path / "nowhere", download=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="--mnist-dir"):
        prepare(tmp_path / "data", source=tmp_path / "empty", download=False)

    def offline(dest, dataset):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: Name or service not known")

    monkeypatch.setattr(mnist_files, "_download", offline)
    with pytest.raises(FileNotFoundError, match="could not be downloaded"):
        prepare(tmp_path / "data")


def test_prepare_downloads_when_nothing_is_local(tmp_path, small_full_size, monkeypatch, capsys):
    def fake_download(dest, dataset):  # what torchvision leaves behind: raw files and .gz
        write_dataset(Path(dest) / "MNIST" / "raw", small_dataset(seed=4), gz=True)

    monkeypatch.setattr(mnist_files, "_download", fake_download)
    prepare(tmp_path / "data")
    assert "downloaded and verified" in capsys.readouterr().out
    np.testing.assert_array_equal(load(tmp_path / "data")[1], small_dataset(seed=4)["train_labels"])


def test_cli_exit_codes(tmp_path, small_full_size, capsys):
    write_dataset(tmp_path / "src", small_dataset(), gz=True)
    assert mnist_files.main(["--dest", str(tmp_path / "data"), "--source", str(tmp_path / "src"), "--no-download"]) == 0
    assert mnist_files.main(["--dest", str(tmp_path / "other"), "--no-download"]) == 1
    assert "MNIST_DIR" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# the real files


@pytest.mark.skipif(not REAL_MNIST.exists(), reason=f"no MNIST copy at {REAL_MNIST}")
def test_real_mnist():
    x_train, y_train, x_test, y_test = load(REAL_MNIST)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    scaled = x_train.astype(np.float64) / 255.0
    assert scaled.mean() == pytest.approx(0.1307, abs=5e-4)
    assert scaled.std() == pytest.approx(0.3081, abs=5e-4)
    assert np.bincount(y_train).tolist()[:2] == [5923, 6742]  # the well-known MNIST class counts
