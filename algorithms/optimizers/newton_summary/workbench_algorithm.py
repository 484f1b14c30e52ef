"""The registered workbench algorithm ``newton_summary`` and the ``scaled_mlp`` model.

Parameters (config ``runs`` entries; every one has a default):

- ``partition``: "canonical" (one subset per tensor) | "wb" | "trivial";
- ``damping`` (lambda_1), ``damping_int`` (lambda_int), ``use_nesterov`` (cubic model on/off),
  ``period_hg``, ``mom_lrs``, ``remove_negative``, ``momentum``, ``momentum_damp``, ``ridge``,
  ``noregul``: as in :class:`NewtonSummary`;
- ``backend``: as in :class:`NewtonSummary`; ``"auto"`` (default) chooses from the planned
  refreshes (planned steps / ``period_hg``) with
  :func:`~algorithms.optimizers.newton_summary.summaries.choose_backend`, says what in a warning
  (once per process) and records it in ``info()["backend"]``:
  ``"reverse"`` for short runs or without a C++ compiler; ``"compiled"`` from a package in the
  on-disk cache for longer ones, compiled only for runs long enough to repay a compile; a compile
  that fails falls back to ``"reverse"`` with a warning;
- ``hg_batch_size``: size of the batches of the separate summary stream.

The summaries are taken on batches of a separate shuffled stream over the training set, driven by
its own ``torch.Generator`` seeded from the run's seed through ``stream_seed("hg")`` (the seed
itself drives the runner's batch order, so the summaries would otherwise see exactly the
training batches), and the training batch order is the same as every other algorithm's. Its state is
in ``state_dict()``: a resumed run continues exactly.

Metrics per step: ``train_loss``, ``lr_group_<i>`` (effective rate of subset i), ``r``, ``x0``,
``refresh_time`` (seconds of the last refresh), ``refresh_time_total``, and cumulative solver status
counts ``solver_<status>`` (easy, hard, newton, zero_gradient, unbounded, failed, fallback).
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from algorithms.optimizers.newton_summary import partition as _partition
from algorithms.optimizers.newton_summary.models import ScaledLinear
from algorithms.optimizers.newton_summary.optimizer import NewtonSummary
from algorithms.optimizers.newton_summary.summaries import choose_backend
from workbench.algorithm import Algorithm, register_algorithm
from workbench.models import mlp
from workbench.params import Param, at_least, in_interval, int_at_least, one_of
from workbench.registry import MODELS

NAME_GROUPS = "name_groups"  # info key (read by ..plots): the parameter names of each subset
PARTITIONS = {"canonical": _partition.canonical, "wb": _partition.wb, "trivial": _partition.trivial}
_NOTICES: set[str] = set()


def _notice(line: str) -> None:
    """A warning, once per process (every run of an experiment would repeat it)."""
    if line not in _NOTICES:
        _NOTICES.add(line)
        warnings.warn(line, RuntimeWarning, stacklevel=3)


class HGStream:
    """Endless shuffled batches ``(x[idx], y[idx])`` of a tensor dataset, from its own generator.

    ``iter(stream)`` is the stream itself, so an optimizer that re-creates its iterator resumes at
    the saved position instead of restarting an epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, inputs=lambda x: x):
        self.inputs = inputs  # the problem's input transform (stored images -> model inputs)
        if not (isinstance(batch_size, int) and batch_size > 0):
            raise ValueError(f"hg_batch_size must be a positive int, got {batch_size!r}")
        self.x, self.y = x, y
        self.batch_size = min(batch_size, x.shape[0])
        self.generator = torch.Generator().manual_seed(seed)
        self.perm: torch.Tensor | None = None
        self.position = 0

    def __iter__(self):
        return self

    def __next__(self):
        n = self.x.shape[0]
        if self.perm is None or self.position + self.batch_size > n:
            self.perm, self.position = torch.randperm(n, generator=self.generator), 0
        idx = self.perm[self.position:self.position + self.batch_size].to(self.x.device)
        self.position += self.batch_size
        return self.inputs(self.x[idx]), self.y[idx]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "perm": self.perm, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.perm, self.position = state["perm"], state["position"]


@register_algorithm("newton_summary")
class NewtonSummaryAlgorithm(Algorithm):
    """NewtonSummary: per-subset learning rates from H-bar, g-bar and third derivatives (cubic model)."""

    PARAMS = dict(
        partition=Param("canonical", "subsets with one learning rate each: canonical (one per tensor), wb "
                        "(weights / biases), trivial (one)", one_of(*PARTITIONS)),
        damping=Param(0.1, "lambda_1, damping of the second-order model", at_least(0)),
        damping_int=Param(1.0, "lambda_int, damping of the cubic (Nesterov) model"),
        use_nesterov=Param(True, "the cubic model with third derivatives (False: the quadratic one)"),
        period_hg=Param(10, "steps between refreshes of H-bar, g-bar (and the third derivatives)", int_at_least(1)),
        mom_lrs=Param(0.5, "momentum of the per-subset learning rates, in [0, 1)", in_interval(0, 1, "left")),
        remove_negative=Param(True, "drop the subsets whose learning rate comes out negative"),
        momentum=Param(0.9, "momentum of the update direction, in [0, 1)", in_interval(0, 1, "left")),
        momentum_damp=Param(0.9, "dampening of that momentum, in [0, 1]", in_interval(0, 1)),
        ridge=Param(0.0, "ridge added to H-bar before the solve", at_least(0)),
        noregul=Param(False, "plain Newton step on the summaries (no cubic regularisation)"),
        hg_batch_size=Param(100, "batch size of the separate summary stream", int_at_least(1)),
        backend=Param("auto", "how a refresh is computed: auto | reverse | compiled (module docstring)"),
    )

    def __init__(self, problem, model, seed: int | None = None, **params):
        super().__init__(problem, model, seed=seed, **params)
        params = self.params
        self.param_groups, self.name_groups = PARTITIONS[params["partition"]](model)
        data = problem.data
        self.hg_stream = HGStream(data.x_train, data.y_train, params["hg_batch_size"], self.stream_seed("hg"),
                                  problem.inputs)
        self.backend, compile_missing = params["backend"], True
        if self.backend == "auto":
            steps = getattr(problem, "planned_steps", None)
            refreshes = None if steps is None else math.ceil(steps / params["period_hg"])
            self.backend, compile_missing, why = choose_backend(refreshes, problem.device)
            _notice(f"newton_summary: backend=auto refreshes with {self.backend!r} ({why})")
        self.optimizer = self._build(self.param_groups, model, self.hg_stream, {**params, "backend": self.backend},
                                     self.full_loss, compile_fallback=params["backend"] == "auto",
                                     compile_missing=compile_missing)

    @staticmethod
    def _build(param_groups, model, stream, params, full_loss, compile_fallback=False, compile_missing=True):
        return NewtonSummary(
            param_groups, full_loss, stream, damping=params["damping"],
            dct_nesterov={"use": params["use_nesterov"], "damping_int": params["damping_int"]},
            period_hg=params["period_hg"], mom_lrs=params["mom_lrs"],
            remove_negative=params["remove_negative"], momentum=params["momentum"],
            momentum_damp=params["momentum_damp"], ridge=params["ridge"], noregul=params["noregul"],
            model=model, backend=params["backend"], compile_fallback=compile_fallback,
            compile_missing=compile_missing)

    @classmethod
    def check_params(cls, params: dict) -> None:
        probe = torch.nn.Linear(1, 1)
        cls._build(_partition.canonical(probe)[0], probe, [], params, lambda x, y: None)  # the optimizer's own checks

    def full_loss(self, x, y):
        return self.problem.loss(self.model(x), y)

    def step(self, x, y) -> dict[str, Any]:
        opt = self.optimizer
        opt.zero_grad(set_to_none=True)
        loss = self.full_loss(x, y)
        loss.backward()
        opt.step()
        st = opt.summary_state
        metrics: dict[str, Any] = {"train_loss": loss.detach()}
        for i, lr in enumerate(opt.lrs):
            metrics[f"lr_group_{i}"] = lr
        metrics.update(r=st["r"], x0=st["x0"], refresh_time=st["refresh_time"],
                       refresh_time_total=st["refresh_time_total"])
        for status, count in st["status_counts"].items():
            metrics[f"solver_{status}"] = count
        return metrics

    def info(self) -> dict[str, Any]:
        return {NAME_GROUPS: self.name_groups, "S": len(self.name_groups), "backend": self.backend,
                "group_sizes": [sum(p.numel() for p in g["params"]) for g in self.param_groups]}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["hg_stream"] = self.hg_stream.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.hg_stream.load_state_dict(state["hg_stream"])


@MODELS.register("scaled_mlp")
def scaled_mlp(input_shape, n_outputs, hidden=(256,), activation="tanh", weight_scales=None,
               bias_scales=None) -> nn.Module:
    """The workbench ``mlp`` (same initial function for a seed) with per-layer scale factors:
    ``weight_scales`` / ``bias_scales`` lists of len(hidden) + 1 non-zero numbers (default all 1)."""
    base = mlp(input_shape, n_outputs, hidden=hidden, activation=activation)
    linears = [m for m in base if isinstance(m, nn.Linear)]
    weight_scales = [1.0] * len(linears) if weight_scales is None else list(weight_scales)
    bias_scales = [1.0] * len(linears) if bias_scales is None else list(bias_scales)
    if len(weight_scales) != len(linears) or len(bias_scales) != len(linears):
        raise ValueError(f"scaled_mlp needs {len(linears)} weight_scales and bias_scales "
                          f"(one per Linear layer), got {len(weight_scales)} and {len(bias_scales)}")
    it = iter(zip(weight_scales, bias_scales))
    layers = [ScaledLinear(m, *next(it)) if isinstance(m, nn.Linear) else m for m in base]
    return nn.Sequential(*layers)
