r"""Gradient descent on a two-layer ReLU network with any torch optimizer.

Each step minimises, on the batch (x, y) given by the runner (full batch when ``batch_size=None``),

.. math::

    F_\beta(W, a) = \frac1{|B|} \sum_{i \in B} (f(x_i) - y_i)^2 + \frac\beta2 \sum_j (\|w_j\|^2 + a_j^2)

with the closed-form gradient of :func:`~algorithms.shallow.model.value_and_gradients` (relu'(0) = 0,
as autograd; no autograd graph, which is most of a step's cost at small n and m) written into the
parameters' ``.grad``, and one ``optimizer.step()``. ``beta`` is the weight decay *of the
objective* (the same beta as in :mod:`algorithms.shallow.convex`), not the optimizer's decoupled decay.
In "first layer only" mode (model built with ``train_output=False``) a has requires_grad False and is
not handed to the optimizer, so it never moves (the reference inverted this and never trained a).

The optimizer is looked up by name in ``torch.optim`` (case-insensitive: sgd, adam, adamw, adadelta,
rmsprop, ...) and receives ``lr`` plus ``optimizer_args``. The model's dtype (the config's ``dtype``)
is used throughout; there is no internal randomness (the batch order is the runner's).

With ``convex_reference=True`` the constructor solves the convex reformulation on the full training
set (all patterns for 1-D inputs, else ``reference_gates`` sampled gates plus the initial network's
patterns) and records its optimum in ``info()["convex_optimum"]`` for the plots.
"""
from __future__ import annotations

import torch

from algorithms.shallow.model import TwoLayerReLU, add_bias, objective, regulariser, value_and_gradients
from workbench.algorithm import Algorithm, register_algorithm, torch_optimizer_class


def make_optimizer(name: str, parameters, lr: float, **kwargs) -> torch.optim.Optimizer:
    """``torch.optim.<name>`` (case-insensitive) built on ``parameters``; ValueError lists the valid names."""
    return torch_optimizer_class(name)(parameters, lr=lr, **kwargs)


@register_algorithm("relu_gd")
class ReLUGD(Algorithm):
    """(Minibatch) gradient descent on F_beta (module docstring); snapshots hold W and a.

    Metrics per step: train_loss (batch data term, before the update), objective (batch F_beta).
    ``evaluate()`` adds full_objective and full_loss on the whole training set, and test_sign_acc
    (accuracy of sign(f), in %; full_train_sign_acc for a dataset without a test split) when the
    targets are +-1.
    """

    defaults = {
        "optimizer": "sgd",       # a torch.optim class name
        "lr": 1e-2,
        "beta": 0.0,              # weight decay of the objective, (beta/2) sum(|w|^2 + a^2)
        "optimizer_args": {},     # extra keyword arguments of the optimizer (momentum, betas, ...)
        "convex_reference": False,  # solve the convex problem once for the plots' reference line
        "reference_gates": 1000,  # sampled gates of that reference solve (d > 1)
        "reference_solver": "CLARABEL",
    }

    @classmethod
    def check_params(cls, params: dict) -> None:
        if not params["lr"] > 0:
            raise ValueError(f"lr must be > 0, got {params['lr']}")
        if not params["beta"] >= 0:
            raise ValueError(f"beta must be >= 0, got {params['beta']}")
        make_optimizer(params["optimizer"], [torch.zeros(1, requires_grad=True)], params["lr"],
                       **params["optimizer_args"])  # the name and its keyword arguments
        if params["convex_reference"]:
            from algorithms.shallow.convex import check_solver

            check_solver(params["reference_solver"])
        if not (isinstance(params["reference_gates"], int) and params["reference_gates"] >= 0):
            raise ValueError(f"reference_gates must be an int >= 0, got {params['reference_gates']!r}")

    def __init__(self, problem, model, seed: int | None = None, **params):
        params = self.resolve_params(params)
        super().__init__(problem, model, seed=seed, **params)
        if not isinstance(model, TwoLayerReLU):
            raise ValueError("relu_gd needs model='two_layer_relu'")
        if params["lr"] <= 0:
            raise ValueError(f"lr must be > 0, got {params['lr']}")
        if params["beta"] < 0:
            raise ValueError(f"beta must be >= 0, got {params['beta']}")
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(params["optimizer"], trainable, params["lr"], **params["optimizer_args"])
        self.reference = self._convex_reference() if params["convex_reference"] else None
        y = problem.data.y_train
        self._pm_one_targets = bool(y.numel()) and bool(((y == 1) | (y == -1)).all())

    @torch.no_grad()
    def step(self, x, y):
        W, a, beta = self.model.W, self.model.a, self.params["beta"]
        loss, W.grad, a_grad = value_and_gradients(W, a, add_bias(x), y.reshape(-1), beta,
                                                   need_a=a.requires_grad)
        if a.requires_grad:
            a.grad = a_grad
        total = loss + regulariser(W, a, beta) if beta else loss  # F_beta before the update
        self.optimizer.step()
        return {"train_loss": loss, "objective": total}

    @torch.no_grad()
    def evaluate(self):
        metrics = self.problem.evaluate(self.model)
        data = self.problem.data
        X, y = add_bias(data.x_train), data.y_train.reshape(-1)
        loss = objective(self.model.W, self.model.a, X, y)
        metrics["full_loss"] = loss.item()
        metrics["full_objective"] = (loss + regulariser(self.model.W, self.model.a, self.params["beta"])).item()
        if self._pm_one_targets:  # +-1 targets (the MNIST pair): the classifier sign(f) is meaningful
            split = "test" if data.x_test.shape[0] else "full_train"  # never training data as test
            xt, yt = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
            metrics[f"{split}_sign_acc"] = 100.0 * (torch.sign(self.model(xt)) == yt.reshape(-1)).double().mean().item()
        return metrics

    def snapshot(self):
        return {"W": self.model.W.detach().cpu().numpy().copy(), "a": self.model.a.detach().cpu().numpy().copy()}

    def info(self):
        from algorithms.shallow.indicators import data_for_record

        info = {"beta": self.params["beta"], "train_output": self.model.train_output,
                "width": self.model.width, **data_for_record(self.problem)}
        if self.reference is not None:
            info.update(self.reference)
        return info

    def _convex_reference(self) -> dict:
        from algorithms.shallow.convex import ConvexReLUProblem, pattern_set

        data = self.problem.data
        X = add_bias(data.x_train.detach().double().cpu()).numpy()
        y = data.y_train.detach().double().cpu().numpy().reshape(-1)
        exact = self.model.input_dim == 1
        g = torch.Generator().manual_seed(self.seed)
        patterns = pattern_set(X, 0 if exact else self.params["reference_gates"], g,
                               self.model.W.detach().double().cpu().numpy(), exact_1d=exact)
        result = ConvexReLUProblem(X, patterns).solve(y, self.params["beta"], self.params["reference_solver"])
        return {"convex_optimum": result.value, "convex_status": result.status,
                "convex_patterns": result.n_patterns, "convex_time": result.solve_time}
