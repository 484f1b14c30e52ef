"""The file datasets on small files written in their real formats: CIFAR's python pickles, npz,
image folders; each malformed case is one ConfigError naming the file or key and the fix."""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.config import Config
from workbench.errors import ConfigError
from workbench.problem import build_problem, load_data


def write_cifar10(folder: Path, per_file: int = 20, seed: int = 0) -> Path:
    """CIFAR-10's six batch files and meta in torchvision's format, ``per_file`` images each."""
    target = folder / "cifar-10-batches-py"
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8)
        with open(target / name, "wb") as f:
            pickle.dump({"data": data, "labels": (np.arange(per_file) % 10).tolist()}, f, protocol=2)
    with open(target / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["c"] * 10}, f, protocol=2)
    return folder


def _cifar_config(folder, **changes):
    return Config.of({"dataset": "cifar10", "data_dir": str(folder), "dataset_args": {"verify_counts": False},
                      "model": "cnn", "runs": [{"algorithm": "sgd"}], **changes})


def test_cifar_files_load_as_uint8_normalised_per_channel_on_the_device(tmp_path):
    write_cifar10(tmp_path)
    with pytest.warns(RuntimeWarning, match="differ from the published files"):
        data = load_data(_cifar_config(tmp_path))
    assert data.x_train.shape == (100, 3, 32, 32) and data.x_train.dtype == torch.uint8 and data.n_outputs == 10
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        first = pickle.load(f)["data"][0]
    assert torch.equal(data.x_train[0].reshape(-1), torch.from_numpy(first))  # (3, 32, 32) = CIFAR's row order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        problem = build_problem(_cifar_config(tmp_path, dtype="float64"), torch.device("cpu"))
    x = problem.inputs(problem.data.x_train)
    assert x.dtype == torch.float64
    np.testing.assert_allclose(x.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(x.std(dim=(0, 2, 3), unbiased=False).numpy(), 1.0, atol=1e-12)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "data_batch_3").unlink(), "data_batch_3 is missing"),
    (lambda d: (d / "test_batch").write_bytes((d / "test_batch").read_bytes()[:500]), "not a readable CIFAR batch"),
    (lambda d: pickle.dump({b"data": np.zeros((20, 100), np.uint8), b"labels": [0] * 20},
                           open(d / "data_batch_1", "wb")), "not uint8 images of 3072 bytes"),
    (lambda d: pickle.dump({b"data": np.zeros((20, 3072), np.uint8), b"labels": [12] * 20},
                           open(d / "data_batch_2", "wb")), "label is 12, outside 0..9"),
    (lambda d: pickle.dump({b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 20},
                           open(d / "test_batch", "wb")), "has no image of class"),
    (lambda d: (d / "data_batch_4").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR."), "names os.system"),
])
def test_a_damaged_cifar_file_is_named_with_the_fix(tmp_path, damage, message):
    write_cifar10(tmp_path)
    damage(tmp_path / "cifar-10-batches-py")
    with pytest.raises(ConfigError, match=message) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        load_data(_cifar_config(tmp_path))
    assert "setup.sh --cifar-dir" in str(info.value)


def test_the_full_cifar_counts_are_checked(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(ConfigError, match="hold 100 images, not 50000"):
        load_data(Config.of({"dataset": "cifar10", "data_dir": str(tmp_path), "runs": [{"algorithm": "sgd"}]}))


def _npz(tmp_path, **arrays) -> str:
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays)
    return str(path)


def _npz_config(path, **changes):
    return Config.of({"dataset": "npz", "data_path": path, "runs": [{"algorithm": "sgd"}], **changes})


def test_npz_classification_images_and_regression_features(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(30, 8, 8)).astype(np.uint8)
    path = _npz(tmp_path, x_train=x, y_train=np.arange(30) % 3, x_test=x[:6], y_test=np.arange(6) % 3)
    data = load_data(_npz_config(path))
    assert data.task == "classification" and data.n_outputs == 3 and data.x_train.shape == (30, 1, 8, 8)
    assert abs(float(data.x_train.mean())) < 1e-5 and abs(float(data.x_train.std(unbiased=False)) - 1) < 1e-5
    features = rng.normal(size=(40, 5)) * [1, 10, 100, 0, 3]
    path = _npz(tmp_path, x_train=features, y_train=features[:, 0] * 2, x_test=features[:8], y_test=features[:8, 0],
                x_val=features[:4], y_val=features[:4, 0])
    data = load_data(_npz_config(path))
    assert data.task == "regression" and data.n_outputs == 1 and data.x_val.shape == (4, 5)
    np.testing.assert_allclose(data.x_train.std(dim=0, unbiased=False).numpy(), [1, 1, 1, 0, 1], atol=1e-5)


@pytest.mark.parametrize("arrays, message", [
    (dict(x_train=np.zeros((4, 2)), y_train=np.zeros(4, int), x_test=np.zeros((2, 2))), "key 'y_test' is missing"),
    (dict(x_train=np.zeros((4, 2)), y_train=np.zeros(3, int), x_test=np.zeros((2, 2)), y_test=np.zeros(2, int)),
     "x_train has shape"),
    (dict(x_train=np.array([[0.0, np.nan]] * 4), y_train=np.zeros(4, int), x_test=np.zeros((2, 2)),
          y_test=np.zeros(2, int)), "x_train holds NaN"),
    (dict(x_train=np.zeros((4, 2)), y_train=np.array([0, 1, 1, 0]), x_test=np.zeros((2, 2)), y_test=np.array([0, 2])),
     "y_test must hold class labels 0..1"),
    (dict(x_train=np.zeros((4, 2)), y_train=np.zeros(4, int), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)),
     "x_test has inputs of shape"),
])
def test_a_bad_npz_is_one_error_naming_the_key(tmp_path, arrays, message):
    with pytest.raises(ConfigError, match=message):
        load_data(_npz_config(_npz(tmp_path, **arrays)))


def test_file_names_that_a_dataset_would_ignore_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="reads no files.*remove data_dir"):
        load_data(Config.of({"dataset": "synthetic_classification", "data_dir": str(tmp_path),
                             "runs": [{"algorithm": "sgd"}]}))
    with pytest.raises(ConfigError, match="does not read one.*remove data_path"):
        load_data(Config.of({"dataset": "mnist", "data_path": str(tmp_path), "runs": [{"algorithm": "sgd"}]}))
    with pytest.raises(ConfigError, match="needs data_path"):
        load_data(Config.of({"dataset": "npz", "runs": [{"algorithm": "sgd"}]}))


def test_an_image_folder_is_read_once_and_cached(tmp_path, monkeypatch):
    from PIL import Image

    from workbench import image_folder_files

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for name in ("cat", "dog"):
            (tmp_path / "imgs" / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / split / name / f"{i}.png")
    config = Config.of({"dataset": "image_folder", "data_path": str(tmp_path / "imgs"),
                        "dataset_args": {"image_size": 16}, "runs": [{"algorithm": "sgd"}]})
    data = load_data(config)
    assert data.x_train.shape == (8, 3, 16, 16) and data.x_train.dtype == torch.uint8
    assert data.y_train.tolist() == [0] * 4 + [1] * 4 and data.extras["classes"] == ["cat", "dog"]
    assert (tmp_path / "imgs" / ".workbench_cache_16.npz").is_file()
    monkeypatch.setattr(image_folder_files, "_decode", lambda *a: pytest.fail("decoded again"))
    assert torch.equal(load_data(config).x_train, data.x_train)  # from the cache
    (tmp_path / "imgs" / "test" / "dog" / "0.png").write_bytes(b"not an image")
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="0.png cannot be read as an image"):
        load_data(config)


def test_resnet20_has_the_papers_parameter_count():
    from workbench.models import resnet20

    model = resnet20((3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == 269_722
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sum(p.numel() for p in resnet20((3, 32, 32), 10, depth=56).parameters()) == 853_018


def test_setup_copies_cifar_from_a_folder_or_its_archive(tmp_path, monkeypatch):
    import tarfile

    from workbench import cifar_files

    source = write_cifar10(tmp_path / "downloads", per_file=20)
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for origin, copy in ((source, "a"), (source / "cifar-10-batches-py", "b"), (tmp_path, "c")):
            cifar_files.install("cifar10", origin, tmp_path / copy, verify_counts=False)
            data = load_data(_cifar_config(tmp_path / copy))
            assert data.x_train.shape == (100, 3, 32, 32) and data.x_test.shape == (20, 3, 32, 32)
        seen = []
        monkeypatch.setattr(cifar_files, "install", lambda name, src, dst: seen.append((name, src)) or dst)
        monkeypatch.setenv("CIFAR_DIR", str(tmp_path))
        assert cifar_files.main(["--from-environment", "--sets", "cifar10,cifar100"]) == 0
        assert seen == [("cifar10", tmp_path), ("cifar100", tmp_path)]
        monkeypatch.undo()
        # the real counts are checked by setup's copy: 100 images are refused, and the command says so
        assert cifar_files.main(["--from", str(source), "--sets", "cifar10", "--data-dir", str(tmp_path / "d")]) == 2
