"""Shared fixtures: a tiny synthetic config that trains in well under a second."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow (inductor compiles; .ci/run runs them as a step of their own)")


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one); bench/gpu_check.sh runs them")
    config.addinivalue_line("markers", "slow: takes most of a minute on 2 cores (skipped unless --run-slow)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (.ci/run does, as a step of its own)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_config(tmp_path):
    """A resolved config: 4-class Gaussian clusters, a 20-8-4 MLP, float64, no progress bars, in this
    process (workers=1; the tests of other executors set it)."""
    from workbench.config import DEFAULTS

    config = copy.deepcopy(DEFAULTS)
    config.update(
        name="tiny", dataset="synthetic_classification",
        dataset_args=dict(n=96, n_test=64, d=6, classes=3, seed=1),
        model="mlp", model_args=dict(hidden=[8]), batch_size=16, epochs=2, seeds=[0],
        dtype="float64", device="cpu", log_every=2, out_dir=str(tmp_path / "results"),
        progress=False, save_every=3600.0, workers=1,
        runs=[dict(algorithm="sgd", lr=0.1, momentum=0.9), dict(algorithm="persistent_sgd", lr=0.01, decay=0.9)],
    )
    return config
