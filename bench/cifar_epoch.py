"""A CIFAR-10 epoch with augmentation: ours against a torchvision DataLoader loop.

Ours: the images stay one uint8 tensor; a batch is an index selection, the random crop (zero
padding 4) and flip are one vectorised gather on the batch (``workbench.augment``), then the
per-channel normalisation (``Problem.inputs``) and the step, as ``workbench.training`` does it.
Reference: ``torchvision.datasets.CIFAR10`` with ``RandomCrop(32, padding=4)``,
``RandomHorizontalFlip()``, ``ToTensor()``, ``Normalize(mean, std)`` and
``DataLoader(batch_size=128, shuffle=True)`` (per-image PIL work in Python, the usual recipe).
Both train the same small CNN (``model="cnn"``, 3 input channels) with SGD (lr 0.05, momentum
0.9) on one CPU thread, in this process, for ``--steps`` batches each (the rest of an epoch costs
the same per batch); the table gives ms per batch, the epoch time it implies, and ours / theirs.

Data: the real files under ``data/cifar-10-batches-py`` when present, else random uint8 images of
CIFAR's shape written in the real format to a temporary folder (both loaders read the same files).

    .venv/bin/python bench/cifar_epoch.py [--steps 100] [--repeat 3]

It measures the data path alone (the loader without the model) and the whole step.
"""
from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCH = 128
# A small CNN (conv5x5(8) -> pool -> conv3x3(16) -> pool -> Linear(64) -> Linear(10)), where the
# data path is a large part of a step; --model-args changes it (the notes' MNIST CNN: channels=[24, 32], hidden=256).
MODEL_ARGS = {"channels": [8, 16], "hidden": 64}


def generated_cifar(folder: Path) -> Path:
    """CIFAR-10's files, in their format, holding random images (50000 + 10000) and balanced labels."""
    target = folder / "cifar-10-batches-py"
    target.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in files:
        data = rng.integers(0, 256, size=(10000, 3072), dtype=np.uint8)
        labels = (np.arange(10000) % 10).tolist()
        with open(target / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f, protocol=2)
    with open(target / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f, protocol=2)
    return folder


def ours(data_dir: Path, steps: int, data_only: bool = False) -> float:
    """Seconds per batch of the workbench's path (module docstring)."""
    from workbench.config import Config
    from workbench.problem import build_problem
    from workbench.registry import ALGORITHMS

    config = Config.of({"dataset": "cifar10", "data_dir": str(data_dir), "model": "cnn", "model_args": MODEL_ARGS,
                        "batch_size": BATCH, "augment": {"crop": 4, "flip": True}, "threads": 1,
                        "runs": [{"algorithm": "sgd"}]})
    problem = build_problem(config, torch.device("cpu"))
    torch.manual_seed(0)
    algo = ALGORITHMS["sgd"](problem, problem.build_model(), seed=0, lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(problem.n_train, generator=generator)
    x_all, y_all = problem.data.x_train, problem.data.y_train
    step = (lambda x, y: None) if data_only else algo.step
    step(*_ours_batch(problem, x_all, y_all, order[:BATCH], generator))  # warm-up
    start = time.perf_counter()
    for k in range(1, steps + 1):
        idx = order[k * BATCH:(k + 1) * BATCH]
        step(*_ours_batch(problem, x_all, y_all, idx, generator))
    return (time.perf_counter() - start) / steps


def _ours_batch(problem, x_all, y_all, idx, generator):
    x, y = problem.batch_transform(x_all[idx], y_all[idx], generator)
    return problem.inputs(x), y


def reference(data_dir: Path, steps: int, data_only: bool = False) -> float:
    """Seconds per batch of the torchvision recipe (module docstring)."""
    import torchvision
    import torchvision.transforms as T

    from workbench.models import cnn

    class Files(torchvision.datasets.CIFAR10):
        def _check_integrity(self):  # generated files have other checksums; the real ones are checked by ours
            return True

        def _load_meta(self):  # likewise for the meta file, which torchvision checks on its own
            self.classes = [str(i) for i in range(10)]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    train = Files(str(data_dir), train=True, download=False)
    mean = (train.data / 255.0).mean(axis=(0, 1, 2)).tolist()
    std = (train.data / 255.0).std(axis=(0, 1, 2)).tolist()
    train.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                 T.Normalize(mean, std)])
    loader = torch.utils.data.DataLoader(train, batch_size=BATCH, shuffle=True)
    torch.manual_seed(0)
    model = cnn((3, 32, 32), 10, **MODEL_ARGS)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = iter(loader)

    def step():
        x, y = next(batches)
        if data_only:
            return
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    real = ROOT / "data"
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = real if (real / "cifar-10-batches-py").is_dir() else generated_cifar(Path(tmp))
        print(f"data: {'the real CIFAR-10 files' if data_dir == real else 'generated images in the real format'}; "
              f"small CNN, batch {BATCH}, SGD, 1 thread, {args.steps} batches per measurement")
        per_epoch = 50_000 / BATCH
        for data_only in (True, False):
            what = "data path alone (batch, crop, flip, normalise)" if data_only else f"whole step, cnn {MODEL_ARGS}"
            rows = []
            for r in range(args.repeat):  # interleaved, so that drifts of the machine's speed hit both
                a, b = ours(data_dir, args.steps, data_only), reference(data_dir, args.steps, data_only)
                rows.append((a, b))
                print(f"  {what}, repeat {r + 1}: ours {1e3 * a:.2f} ms/batch, torchvision DataLoader "
                      f"{1e3 * b:.2f} ms/batch, ratio {b / a:.2f}x")
            a, b = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
            print(f"{what}: median ours {1e3 * a:.2f} ms/batch ({a * per_epoch:.1f} s/epoch), torchvision "
                  f"{1e3 * b:.2f} ms/batch ({b * per_epoch:.1f} s/epoch): ours is {b / a:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
