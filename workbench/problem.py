"""A problem = data resident on the run's device + a model factory + one loss convention.

Datasets that fit in memory live as one tensor on the device; batches are index selections, so the
training loop has no DataLoader and no per-image Python work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass
class DataSplit:
    """Tensors of one dataset, as returned by a registered dataset function (CPU is fine).

    x_train : (n, *input_shape) float      y_train : (n,) int64 labels, or (n,) / (n, k) float targets
    x_test, y_test : the same for the held-out set (may be empty, shape (0, ...))
    task : "classification" (mean cross-entropy) or "regression" (mean squared error, see below)
    n_outputs : number of classes, or the target dimension for regression
    extras : anything a family needs besides tensors (e.g. a planted teacher), recorded nowhere
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str
    n_outputs: int
    extras: dict = field(default_factory=dict)

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

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, forward: Callable | None = None) -> dict[str, float]:
        """Test loss (and accuracy) over the whole test set, independent of the evaluation batch
        size: losses are summed in chunks and divided by the number of examples once. A dataset
        without a test split is evaluated on the whole training set, under the names
        ``full_train_loss`` / ``full_train_acc`` (never as test metrics)."""
        x, y = self.data.x_test, self.data.y_test
        prefix = "test"
        if x.shape[0] == 0:
            x, y, prefix = self.data.x_train, self.data.y_train, "full_train"
        forward = forward or model
        was_training = model.training
        model.eval()
        total_loss = torch.zeros((), device=x.device, dtype=torch.float64)
        correct = torch.zeros((), device=x.device, dtype=torch.int64)
        for start in range(0, x.shape[0], self.eval_batch_size):
            xb, yb = x[start : start + self.eval_batch_size], y[start : start + self.eval_batch_size]
            out = forward(xb)
            total_loss += self.loss(out, yb, reduction="sum").double()
            if self.task == "classification":
                correct += (out.argmax(dim=1) == yb).sum()
        model.train(was_training)
        metrics = {f"{prefix}_loss": total_loss.item() / x.shape[0]}
        if self.task == "classification":
            metrics[f"{prefix}_acc"] = 100.0 * correct.item() / x.shape[0]
        return metrics
