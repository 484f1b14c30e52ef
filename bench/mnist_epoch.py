"""One MNIST epoch of the 784-256-10 MLP at batch 64: the workbench loop against the reference's.

The reference (GradRetentionNet, reference 003) trains with a torchvision ``MNIST`` dataset,
``ToTensor`` + ``Normalize`` per image and a ``DataLoader(batch_size=64, shuffle=True)``. The
workbench keeps the normalised dataset as one tensor on the device and indexes batches. Both train
the same model with the same optimizer for one epoch in this process; the ratio is printed.

    python bench/mnist_epoch.py [--data-dir data] [--optimizer adamw|persistent_sgd] [--device cpu|cuda]
    python bench/mnist_epoch.py --quick        (a fifth of an epoch each)
"""
from __future__ import annotations

import argparse
import copy
import gzip
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from algorithms.optimizers import PersistentSGD  # noqa: E402
from workbench import mnist_files  # noqa: E402
from workbench.config import DEFAULTS  # noqa: E402
from workbench.runner import Experiment  # noqa: E402

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def make_optimizer(name: str, params):
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3)
    return PersistentSGD(params, lr=1e-3, decay=0.99)


def reference_epoch(raw_root: Path, optimizer_name: str, device: torch.device, max_steps: int | None) -> float:
    """The reference's loop: torchvision dataset + per-image transforms + DataLoader (workers 0)."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    dataset = datasets.MNIST(str(raw_root), train=True, download=False, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10)).to(device)
    optimizer = make_optimizer(optimizer_name, model.parameters())
    criterion = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            loss.item()  # the reference prints the loss every 100 batches
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def workbench_epoch(data_dir: Path, optimizer_name: str, device: torch.device, max_steps: int | None,
                    out_dir: Path) -> tuple[float, float]:
    """The runner as main.py drives it: dataset resident on the device, batches by index, records
    on disk. Returns (seconds to load the dataset once, seconds of the epoch incl. its evaluations)."""
    config = copy.deepcopy(DEFAULTS)
    config.update(name="bench", dataset="mnist", data_dir=str(data_dir), model="mlp",
                  model_args=dict(hidden=[256]), batch_size=64, epochs=1, max_steps=max_steps,
                  device=str(device), out_dir=str(out_dir), progress=False, checkpoint=False,
                  runs=[dict(algorithm=optimizer_name, lr=1e-3)])
    start = time.perf_counter()
    experiment = Experiment.create(config)  # loads the dataset
    experiment.run()
    total = time.perf_counter() - start
    epoch = experiment.history["runs"][0]["metrics"]["time"][-1]  # the run's own clock
    return total - epoch, epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder with MNIST IDX files (default: data, then ../shared/mnist)")
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "persistent_sgd"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="188 steps (a fifth of an epoch) each")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    candidates = [Path(args.data_dir)] if args.data_dir else [ROOT / "data", ROOT.parent / "shared" / "mnist"]
    for data_dir in candidates:
        try:
            paths = mnist_files.locate(data_dir, "mnist")
            break
        except FileNotFoundError:
            continue
    else:
        sys.exit("MNIST IDX files not found; run setup first or pass --data-dir")
    max_steps = 188 if args.quick else None
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "MNIST" / "raw"  # torchvision wants the uncompressed files here
        raw.mkdir(parents=True)
        for key, stem in zip(("train_images", "train_labels", "test_images", "test_labels"), FILES):
            opener = gzip.open if paths[key].suffix == ".gz" else open
            with opener(paths[key], "rb") as src, open(raw / stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        start = time.perf_counter()
        from torchvision import datasets
        datasets.MNIST(tmp, train=True, download=False)  # the reference's one-time dataset construction
        reference_load = time.perf_counter() - start
        reference = reference_epoch(Path(tmp), args.optimizer, device, max_steps)
        load, ours = workbench_epoch(data_dir, args.optimizer, device, max_steps, Path(tmp) / "results")
    what = "a fifth of an epoch" if args.quick else "one epoch"
    print(f"MNIST 784-256-10 MLP, batch 64, {args.optimizer}, {what} on {device} "
          f"({torch.get_num_threads()} threads, torch {torch.__version__}, data from {data_dir})")
    print(f"  reference loop (torchvision DataLoader + ToTensor/Normalize): {reference:7.2f} s"
          f"   (+ {reference_load:.2f} s to construct the dataset once)")
    print(f"  workbench runner (tensors on the device, evaluations included): {ours:7.2f} s"
          f"   (+ {load:.2f} s to load, normalise and place the dataset once)")
    print(f"  speed-up per epoch: {reference / ours:.1f}x; "
          f"including the one-time loading: {(reference + reference_load) / (ours + load):.1f}x")


if __name__ == "__main__":
    main()
