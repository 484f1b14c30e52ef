"""Augmentation: crops are exact index moves of the zero-padded image, flips mirror, the draws
follow the run's generator (the same per seed, with every executor and across a resume)."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from workbench import record
from workbench.augment import batch_transform, crop_and_flip
from workbench.config import Config
from workbench.errors import ConfigError
from workbench.runner import Experiment, Hooks

from tests.workbench.test_data_files import write_cifar10


def test_each_crop_is_a_window_of_the_zero_padded_image_and_each_flip_a_mirror():
    x = torch.arange(8 * 3 * 6 * 6, dtype=torch.int64).reshape(8, 3, 6, 6) + 1  # no zero pixel
    out = crop_and_flip(x, torch.Generator().manual_seed(3), crop=2, flip=True)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(8):
        candidates = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                      if torch.equal(out[b], (lambda w: w.flip(2) if f else w)(padded[b, :, dy:dy + 6, dx:dx + 6]))]
        assert candidates, b  # every output image is one window (maybe mirrored) of its own padded image
    again = crop_and_flip(x, torch.Generator().manual_seed(3), crop=2, flip=True)
    assert torch.equal(out, again)  # the same draws for the same generator state
    assert not torch.equal(out, crop_and_flip(x, torch.Generator().manual_seed(4), crop=2, flip=True))
    assert batch_transform({"crop": 0, "flip": False}) is None
    assert torch.equal(crop_and_flip(x, torch.Generator(), crop=0, flip=False), x)


def test_the_draws_are_uniform_over_offsets_and_half_the_images_flip():
    x = torch.zeros(4000, 1, 3, 3)
    x[:, :, 1, 1] = 1.0  # a single bright pixel: where it lands says the offset
    out = crop_and_flip(x, torch.Generator().manual_seed(0), crop=1)
    positions = out.reshape(4000, 9).argmax(dim=1)
    counts = torch.bincount(positions, minlength=9).float()
    assert torch.all((counts / 4000 - 1 / 9).abs() < 0.03)  # 9 offsets, each about 1/9 (4 sigma)
    y = torch.zeros(4000, 1, 1, 2)
    y[..., 0] = 1.0
    flipped = crop_and_flip(y, torch.Generator().manual_seed(0), flip=True)
    assert abs(float(flipped[..., 1].mean()) - 0.5) < 0.04


def test_augment_is_refused_for_non_image_data_and_bad_keys(tiny_config):
    with pytest.raises(ConfigError, match="augment=.*needs image inputs"):
        from workbench.problem import build_problem

        build_problem(Config.of({**tiny_config, "augment": {"crop": 2}}), torch.device("cpu"))
    with pytest.raises(ConfigError, match="has no key 'crp'"):
        Config.of({**tiny_config, "augment": {"crp": 2}})


def test_augmented_runs_are_identical_with_workers_and_after_a_resume(tmp_path, tiny_config):
    write_cifar10(tmp_path / "data", per_file=16)
    config = copy.deepcopy(tiny_config)
    config.update(dataset="cifar10", data_dir=str(tmp_path / "data"), dataset_args={"verify_counts": False},
                  model="cnn", model_args={"channels": [4, 4], "hidden": 8}, augment={"crop": 4, "flip": True},
                  batch_size=16, epochs=2, dtype="float64", seeds=[0, 1], runs=[dict(algorithm="sgd", lr=0.01)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        one = Experiment.create(copy.deepcopy(config))
        assert one.run() == 0
        two = Experiment.create({**copy.deepcopy(config), "workers": 2})
        assert two.run() == 0
        count = {"n": 0}
        stopped = Experiment.create(copy.deepcopy(config), hooks=Hooks(should_stop=lambda s: (
            count.__setitem__("n", count["n"] + 1) or count["n"] == 4)))
        assert stopped.run() == 130
        assert Experiment.resume(stopped.run_dir).run() == 0
    expected = record.load_history(one.run_dir)["runs"]
    for other in (two, stopped):
        for a, b in zip(expected, record.load_history(other.run_dir)["runs"]):
            for key in ("train_loss", "test_loss", "test_acc"):
                assert np.array_equal(a["metrics"][key], b["metrics"][key], equal_nan=True), key
