"""The first stage of the data path: config -> problem = data resident on the run's device + a
model factory + one loss convention (+ an optional per-batch transform).

Datasets that fit in memory live as one tensor on the device; batches are index selections, so the
training loop has no DataLoader and no per-image Python work. :func:`load_data` reads the dataset
once per experiment (on the CPU); :func:`build_problem` places it on a device, in every process
that trains.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import sys
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from workbench.config import Config, app_path
from workbench.errors import ConfigError, closest_hint
from workbench.registry import DATASETS, MODELS, load_for_config
import workbench.plugins  # noqa: F401  (resolves torch.optim.NAME, torchvision.NAME, file.py:Class)


@dataclass
class DataSplit:
    """Tensors of one dataset, as returned by a registered dataset function (CPU is fine).

    x_train : (n, *input_shape) float      y_train : (n,) int64 labels, or (n,) / (n, k) float targets
    x_test, y_test : the same for the held-out set (may be empty, shape (0, ...))
    task : "classification" (mean cross-entropy) or "regression" (mean squared error, see below)
    n_outputs : number of classes, or the target dimension for regression
    extras : anything a family needs besides tensors (e.g. a planted teacher), recorded nowhere
    x_val, y_val : a validation split (None: none), held out of the training set by ``val_split``
        (:func:`hold_out`) or given by the dataset
    normalise : (mean, std) per channel when the images are stored as uint8 (CIFAR, image folders):
        they stay uint8 on the device, and :meth:`Problem.inputs` normalises each batch
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str
    n_outputs: int
    extras: dict = field(default_factory=dict)
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    normalise: tuple | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


@dataclass
class Problem:
    """Data on ``device`` in ``dtype``, a model factory and the loss convention of the task.

    Loss conventions: classification uses the mean cross-entropy over the batch; regression uses
    F = (1/n) sum_i |f(x_i) - y_i|^2 (no 1/2), the shallow-ReLU family's convention.
    """

    data: DataSplit
    build_model: Callable[[], torch.nn.Module]
    device: torch.device
    dtype: torch.dtype
    batch_size: int | None = None
    eval_batch_size: int = 10_000
    planned_steps: int | None = None  # mini-batch steps a run's budget allows (None: time-limited only)
    # (x, y, generator) -> (x, y): applied to every training batch on the device (augmentation);
    # ``generator`` is the run's own, so the draws follow the run across executors and resumes
    batch_transform: Callable | None = None
    # a tuning trial's problem: its evaluations never read the test split (:meth:`without_test`)
    test_withheld: bool = False
    _normaliser: tuple | None = field(default=None, repr=False, compare=False)  # (key, mean, std) of inputs()

    @property
    def task(self) -> str:
        return self.data.task

    @property
    def n_train(self) -> int:
        return self.data.x_train.shape[0]

    def loss(self, output: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if self.task == "classification":
            return F.cross_entropy(output, y, reduction=reduction)
        err = (output.reshape(y.shape) - y) ** 2
        err = err.reshape(err.shape[0], -1).sum(dim=1)
        return err.mean() if reduction == "mean" else err.sum()

    def member_losses(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean loss of each member of a stack (:mod:`workbench.stacked_training`): ``output``
        [M, B, ...] and ``y`` [M, B, ...] -> [M], member m's value :meth:`loss` ``(output[m], y[m])``
        (to rounding)."""
        members, batch = y.shape[:2]
        if self.task == "classification":
            per_example = F.cross_entropy(output.flatten(0, 1), y.flatten(0, 1), reduction="none")
        else:
            err = (output.reshape(y.shape) - y) ** 2
            per_example = err.reshape(members * batch, -1).sum(dim=1)
        return per_example.view(members, batch).mean(dim=1)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the model reads for stored inputs ``x``: uint8 images -> (x - mean) / std per channel
        in the problem's dtype (``data.normalise``); float inputs as they are."""
        if self.data.normalise is None:
            return x
        key = x.device
        if self._normaliser is None or self._normaliser[0] != key:  # made once, not every batch
            # (channels, 1, ...): aligned with the channel axis of one example, whatever leads it
            # (a batch, or a stack's members and batch)
            shape = (-1,) + (1,) * (self.data.x_train.dim() - 2)
            mean, std = (torch.as_tensor(v, dtype=self.dtype, device=x.device).reshape(shape)
                         for v in self.data.normalise)
            self._normaliser = (key, mean, std)
        _, mean, std = self._normaliser
        return (x.to(self.dtype) - mean) / std

    def steps_per_epoch(self, full_batch: bool = False) -> int:
        return steps_per_epoch(self.n_train, self.batch_size, full_batch)

    def without_test(self) -> "Problem":
        """This problem for a tuning trial: the same tensors, but no test split to evaluate on
        (a family's own evaluation that reads ``data.x_test`` finds it empty)."""
        data = dataclasses.replace(self.data, x_test=self.data.x_test[:0], y_test=self.data.y_test[:0])
        return dataclasses.replace(self, data=data, test_withheld=True)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, forward: Callable | None = None) -> dict[str, float]:
        """Validation loss and accuracy (``val_*``, when there is a validation split), then test
        loss (and accuracy) over the whole test set, independent of the evaluation batch size:
        losses are summed in chunks and divided by the number of examples once. A dataset without
        a test split is evaluated on the whole training set, under the names ``full_train_loss`` /
        ``full_train_acc`` (never as test metrics); a tuning trial's problem has neither."""
        forward = forward or model
        was_training = model.training
        model.eval()
        metrics: dict[str, float] = {}
        data = self.data
        if data.x_val is not None:
            metrics.update(self._evaluate_split(forward, data.x_val, data.y_val, "val"))
        if data.x_test.shape[0]:
            metrics.update(self._evaluate_split(forward, data.x_test, data.y_test, "test"))
        elif not self.test_withheld:
            metrics.update(self._evaluate_split(forward, data.x_train, data.y_train, "full_train"))
        model.train(was_training)
        return metrics

    def _evaluate_split(self, forward: Callable, x: torch.Tensor, y: torch.Tensor, prefix: str) -> dict[str, float]:
        total_loss = torch.zeros((), device=x.device, dtype=torch.float64)
        correct = torch.zeros((), device=x.device, dtype=torch.int64)
        for start in range(0, x.shape[0], self.eval_batch_size):
            xb, yb = x[start : start + self.eval_batch_size], y[start : start + self.eval_batch_size]
            out = forward(self.inputs(xb))
            total_loss += self.loss(out, yb, reduction="sum").double()
            if self.task == "classification":
                correct += (out.argmax(dim=1) == yb).sum()
        metrics = {f"{prefix}_loss": total_loss.item() / x.shape[0]}
        if self.task == "classification":
            metrics[f"{prefix}_acc"] = 100.0 * correct.item() / x.shape[0]
        return metrics


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch sees no CUDA GPU here; use device='auto' or 'cpu'")
    return device


def load_data(config, quiet: bool = False) -> DataSplit:
    """The config's dataset on the CPU, ``subset`` applied (loaded once per experiment); a
    ``subset`` larger than the training set is reported (``quiet``: not)."""
    config = Config.of(config)
    load_for_config(config)
    dataset_fn = DATASETS[config.dataset]
    try:
        data = dataset_fn(app_path(config.data_dir), **file_arguments(config, dataset_fn), **config.dataset_args)
    except FileNotFoundError as exc:  # the message says where the files were looked for and how to get them
        raise ConfigError(str(exc)) from None
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"dataset {config.dataset!r}: {exc} (check dataset_args)") from None
    subset = config.subset
    if subset is not None:
        if subset > len(data.x_train) and not quiet:
            print(f"warning: subset={subset} but {config.dataset!r} has {len(data.x_train)} training examples: "
                  f"all {len(data.x_train)} are used", file=sys.stderr)
        # copies, so that the full set is freed and a worker is sent the subset alone
        data.x_train, data.y_train = data.x_train[:subset].clone(), data.y_train[:subset].clone()
    return hold_out(data, config.val_split, config.dataset)


# The seed of the validation split's draw: its own, the same for every run and experiment.
VALIDATION_SEED = 271_828


def validation_size(val_split: int | float, n_train: int) -> int:
    """Examples ``val_split`` holds out of ``n_train`` (a fraction, rounded, or a number)."""
    return round(val_split * n_train) if isinstance(val_split, float) else int(val_split)


def hold_out(data: DataSplit, val_split: int | float | None, name: str = "the dataset") -> DataSplit:
    """``data`` with a validation split of ``val_split`` training examples (a fraction in (0, 1)
    or a number), drawn by :data:`VALIDATION_SEED`: the same examples for every run, whatever its
    seed; the training split keeps the others, in their order. None: ``data`` as it is."""
    if val_split is None:
        return data
    if data.x_val is not None:
        raise ConfigError(f"dataset {name!r} has its own validation split ({len(data.x_val)} examples): leave "
                          f"val_split=None")
    n = data.x_train.shape[0]
    k = validation_size(val_split, n)
    if not 1 <= k < n:
        raise ConfigError(f"val_split={val_split!r} holds out {k} of the {n} training examples of {name!r}, "
                          f"leaving {'none' if k >= n else 'all'} for training: give a fraction in (0, 1) or a "
                          f"number of examples between 1 and {n - 1}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_SEED))
    val, train = order[:k].sort().values, order[k:].sort().values
    return dataclasses.replace(data, x_train=data.x_train[train], y_train=data.y_train[train],
                               x_val=data.x_train[val], y_val=data.y_train[val])


def file_arguments(config, dataset_fn) -> dict:
    """``data_path`` for a dataset that takes it; ConfigError when ``data_dir`` or ``data_path`` is
    given to a dataset that reads no files (a generator: its ``data_dir`` defaults to None) or
    ``data_path`` to one that does not take it: such a name would be ignored."""
    from workbench.config import DEFAULTS

    params = inspect.signature(dataset_fn).parameters
    reads_dir = "data_dir" in params and params["data_dir"].default is not None
    if config.data_dir != DEFAULTS["data_dir"] and not reads_dir:
        raise ConfigError(f"data_dir={config.data_dir!r} is given, but dataset {config.dataset!r} reads no files (it "
                          f"generates its data): remove data_dir")
    if config.data_path is None:
        if "data_path" in params and params["data_path"].default is inspect.Parameter.empty:
            raise ConfigError(f"dataset {config.dataset!r} needs data_path=... (a file or folder; a relative path "
                              f"is relative to the config file, else to the app folder)")
        return {}
    if "data_path" not in params:
        raise ConfigError(f"data_path={config.data_path!r} is given, but dataset {config.dataset!r} does not read "
                          f"one (it {'reads data_dir' if reads_dir else 'generates its data'}): remove data_path, or "
                          f"use dataset=\"npz\" or \"image_folder\"")
    return {"data_path": config.data_path}


def build_problem(config, device: torch.device | None = None, data: DataSplit | None = None) -> Problem:
    """The dataset (loaded, or the given CPU ``data``) moved to the device and dtype, and a model
    factory. Sets torch's threads (when ``threads`` is set) and subnormal mode for this process
    (:func:`configure_torch`)."""
    config = Config.of(config)
    load_for_config(config)
    configure_torch(config)
    device = device or resolve_device(config.device)
    dtype = getattr(torch, config.dtype)
    model_fn = MODELS[config.model]
    data = copy.copy(data) if data is not None else load_data(config, quiet=True)

    def place(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

    data.x_train, data.y_train = place(data.x_train), place(data.y_train)
    data.x_test, data.y_test = place(data.x_test), place(data.y_test)
    if data.x_val is not None:
        data.x_val, data.y_val = place(data.x_val), place(data.y_val)

    def build_model() -> torch.nn.Module:
        try:
            model = model_fn(data.input_shape, data.n_outputs, **config.model_args)
        except TypeError as exc:
            raise ConfigError(_model_args_message(config, model_fn, exc)) from None
        except ValueError as exc:
            raise ConfigError(f"model {config.model!r}: {exc} (check model_args)") from None
        return model.to(device=device, dtype=dtype)

    transform = None
    if config.augment:
        if data.x_train.dim() != 4:
            raise ConfigError(f"augment={config.augment!r} needs image inputs (n, channels, height, width); dataset "
                              f"{config.dataset!r} has inputs of shape {tuple(data.x_train.shape[1:])}: remove augment")
        from workbench.augment import batch_transform

        transform = batch_transform(config.augment)
    return Problem(data=data, build_model=build_model, device=device, dtype=dtype, batch_size=config.batch_size,
                   planned_steps=planned_steps(config, len(data.x_train)), batch_transform=transform)


def steps_per_epoch(n_train: int, batch_size: int | None, full_batch: bool = False) -> int:
    """Steps in one pass over ``n_train`` examples (one for a full-batch algorithm or batch size)."""
    return 1 if (full_batch or batch_size is None) else math.ceil(n_train / batch_size)


def planned_steps(config: dict, n_train: int, full_batch: bool = False) -> int | None:
    """The steps a run's budget allows (``max_steps``, ``epochs``; a full-batch run takes one step
    an epoch); None when only ``max_time`` limits it."""
    per_epoch = steps_per_epoch(n_train, config["batch_size"], full_batch)
    budget = [b for b in (config["max_steps"], config["epochs"] and config["epochs"] * per_epoch) if b]
    return min(budget) if budget else None


def _model_args_message(config, model_fn, exc: TypeError) -> str:
    """The bad ``model_args`` key with the closest valid one, or the TypeError itself."""
    valid = [p for p in inspect.signature(model_fn).parameters if p not in ("input_shape", "n_outputs")]
    unknown = [k for k in config.model_args if k not in valid]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(model_fn).parameters.values()):
        return (f"model {config.model!r} has no argument {unknown[0]!r} in model_args."
                f"{closest_hint(unknown[0], valid)} Its arguments: {', '.join(valid)}")
    return f"model {config.model!r}: {exc} (check model_args)"


def configure_torch(config) -> None:
    """This process's torch settings for training: ``threads`` (when set) and the subnormal mode.

    ``flush_denormal`` (default True): CPU arithmetic flushes subnormal floats to zero (below
    1.2e-38 in float32, 2.2e-308 in float64), which x86 computes about 100x slower; AdamW's first
    moments of rarely active inputs reach them within a few epochs. The mode is per thread and
    torch's intra-op threads inherit it when they are created, so it is set here, before the run's
    first parallel work (in a process whose thread pool already exists, only the calling thread
    changes)."""
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    torch.set_flush_denormal(bool(config["flush_denormal"]))


def subnormals_flushed() -> bool:
    """Whether this thread's CPU arithmetic flushes subnormals (torch cannot report its mode)."""
    return bool((torch.tensor([2.0 ** -1070], dtype=torch.float64) * 1.0 == 0.0).item())


def cpu_can_flush() -> bool:
    """Whether this CPU can flush subnormals (``torch.set_flush_denormal`` says so); the mode is left as it was."""
    before = subnormals_flushed()
    supported = torch.set_flush_denormal(True)
    torch.set_flush_denormal(before)
    return supported
