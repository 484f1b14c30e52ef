"""The contract between the runner and a training method.

The runner owns the loop, the clock, the batch order, the record and the files; an algorithm owns
its model and its update. A subclass declares every parameter it accepts in ``PARAMS`` (name ->
:class:`workbench.params.Param`: default, help, value check; a config entry with any other key is
an error, a value its check refuses too) and implements :meth:`step`.

Lifecycle, per (run entry, seed)::

    cls.resolve_params(given)                 # defaults filled in, each value checked by its Param
    cls.check_params(params)                  # before any run folder: the values together
    cls.check_model(model, params)            # before any run folder: the values with the model
    algo = cls(problem, model, seed, **params)  # model: a fresh copy of the seed's initial weights
    algo.info()                               # static facts recorded once
    algo.summary_facts()                      # columns of the summary table (e.g. the effective lr)
    loop:  metrics = algo.step(x, y)          # one update on a batch (or the full set)
           algo.evaluate()                    # when an evaluation is due
           algo.snapshot()                    # every ``snapshot_every`` steps, if not None
    algo.state_dict() / load_state_dict()     # checkpoints for --resume
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

import torch

from workbench.errors import ConfigError, closest_hint
from workbench.params import Param
from workbench.registry import ALGORITHMS


class Algorithm:
    """Base class of everything a config's ``runs`` entry can name.

    Class attributes
    ----------------
    PARAMS : dict[str, Param]
        Every accepted parameter: default, one line of help, value check. ``label`` and
        ``algorithm`` are handled by the runner and never reach the constructor.
    defaults : dict
        Derived from ``PARAMS`` (a subclass that sets only ``defaults`` gets undocumented Params).
    full_batch : bool
        True if each step uses the whole training set (convex solve, prox point, JKO); the runner
        then passes the full tensors and counts one step as one epoch.

    Instance attributes a step may set (control flags, never part of the metrics)
    -----------------------------------------------------------------------------
    wants_row : bool
        True after a step with a rare event (a growth): that step gets a metrics row of its own,
        whatever ``log_every``. The runner resets it to False after reading it.
    converged : bool
        True once further steps would change nothing (the convex solve after its last solve):
        the runner records a final row and ends the run as ``finished``.
    """

    PARAMS: dict[str, Param] = {}
    defaults: dict[str, Any] = {}
    full_batch: bool = False
    wants_row: bool = False
    converged: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "PARAMS" in cls.__dict__:
            cls.defaults = {name: p.default for name, p in cls.PARAMS.items()}
        elif "defaults" in cls.__dict__:
            cls.PARAMS = {name: Param(value, "") for name, value in cls.defaults.items()}

    def __init__(self, problem, model: torch.nn.Module, seed: int | None = None, **params):
        """``params`` as the runner passes them: resolved and checked. Missing keys take their
        defaults (for direct use in a script); nothing is checked again here."""
        self.problem = problem
        self.model = model
        self.params = {**self.defaults, **params}
        # every random stream of the algorithm starts from this (the runner passes the run's seed)
        self.seed = torch.initial_seed() if seed is None else int(seed)

    def stream_seed(self, stream: str) -> int:
        """A seed for the algorithm's random stream named ``stream``, derived from the run's seed and
        the name: different from the seed itself (which also seeds the runner's batch order, so a
        generator seeded with it would repeat the training batches) and from every other stream's."""
        digest = hashlib.sha256(f"{self.seed}:{stream}".encode()).digest()
        return int.from_bytes(digest[:8], "little") >> 1

    @classmethod
    def resolve_params(cls, params: dict) -> dict:
        """Defaults overlaid with ``params``; an unknown key raises ConfigError naming the closest."""
        unknown = [k for k in params if k not in cls.defaults]
        if unknown:
            name = getattr(cls, "registered_name", cls.__name__)
            key = unknown[0]
            raise ConfigError(
                f"algorithm {name!r} has no parameter {key!r}.{closest_hint(key, cls.defaults)} "
                f"Its parameters: {', '.join(sorted(cls.defaults)) or '(none)'}"
            )
        for key, value in params.items():
            _check_number(key, cls.defaults[key], value)
        resolved = {**cls.defaults, **params}
        for key, value in resolved.items():
            problem = cls.PARAMS[key].problem(value)
            if problem:
                raise ConfigError(f"{key} {problem}, got {value!r}")
        return resolved

    @classmethod
    def check_params(cls, params: dict) -> None:
        """Raise ValueError for parameter values that cannot work together (called before any
        training, after each value passed its own ``Param`` check).

        ``params`` are resolved (every default filled in). The base class accepts everything."""

    @classmethod
    def check_model(cls, model: torch.nn.Module, params: dict) -> None:
        """Raise ValueError when this algorithm cannot train ``model`` with ``params`` (called once,
        on the config's model, before any run folder exists). The base class accepts any model."""

    # -- what subclasses implement -------------------------------------------------------------
    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """One update on the batch ``(x, y)``; returns metrics, at least ``train_loss``.

        Values may be 0-d tensors: the runner converts them to floats only when a log is due, so
        the step loop does not synchronise with the GPU every step. Metrics of steps between two
        rows are not recorded; a step with a rare event (a growth) sets ``self.wants_row = True``
        to get a row of its own.
        """
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Test metrics (``test_loss``, and ``test_acc`` for classification)."""
        return self.problem.evaluate(self.model)

    def snapshot(self) -> dict[str, Any] | None:
        """Numpy copies of whatever this family tracks over time (positions, masses, widths)."""
        return None

    def info(self) -> dict[str, Any]:
        """Static facts about this run recorded with it (for the family's plots)."""
        return {}

    def summary_facts(self) -> dict[str, float | str]:
        """Facts the summary table shows as columns, ``{column title: value}`` (e.g. the optimizers'
        ``"eff. step"``); recorded with the run. Runs without a column show "-" there."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model weights plus the algorithm's own state."""
        state = {"model": self.model.state_dict()}
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_number(key: str, default, value) -> None:
    """A parameter whose default is a number takes a number or None (or a list of numbers, which
    the algorithm accepts or refuses, e.g. growth's per-layer ``target_width``), not a string or a flag."""
    numbers = isinstance(value, (list, tuple)) and all(_is_number(v) for v in value)
    if _is_number(default) and value is not None and not _is_number(value) and not numbers:
        hint = ""
        if isinstance(value, str):
            try:
                hint = f"; write {key}={float(value)!r} without quotes"
            except ValueError:
                pass
        raise ConfigError(f"parameter {key} must be a number, got {type(value).__name__} {value!r}{hint}")


def torch_optimizer_class(name: str, parameter: str = "optimizer") -> type:
    """``torch.optim.<name>``, case-insensitive (``"sgd"``, ``"AdamW"``); ValueError names the
    ``parameter`` that gave the name and lists the valid ones."""
    valid = {k.lower(): getattr(torch.optim, k) for k in dir(torch.optim)
             if isinstance(getattr(torch.optim, k), type) and issubclass(getattr(torch.optim, k), torch.optim.Optimizer)
             and k != "Optimizer"}
    cls = valid.get(str(name).lower())
    if cls is None:
        raise ValueError(f"{parameter} must name a torch.optim class, got {name!r}; valid: "
                         f"{', '.join(sorted(c.__name__ for c in valid.values()))}")
    return cls


# How torch's optimizers name their parameters in error messages ("Invalid learning rate: -1").
_SPOKEN_NAMES = {"lr": "learning rate", "eps": "epsilon", "betas": "beta"}


def _naming_the_parameter(message: str, params: dict) -> str:
    """``message`` prefixed with the parameter it is about, when it does not say it already."""
    words = set(re.findall(r"[A-Za-z_]+", message))
    if any(key in words for key in params):
        return message
    for key in params:
        if _SPOKEN_NAMES.get(key, "\0") in message.lower():
            return f"{key}: {message}"
    return message


def register_algorithm(name: str):
    """Class decorator: register an :class:`Algorithm` subclass under its config name."""

    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
            raise TypeError(f"{cls!r} must subclass workbench.algorithm.Algorithm")
        cls.registered_name = name
        return ALGORITHMS.register(name)(cls)

    return decorate


SCHEDULE = Param("constant", "learning-rate schedule: constant | cosine | dict(kind=\"cosine\", final=0.01, "
                 "warmup=500) | dict(kind=\"step\", epochs=[100, 150], factor=0.1) | dict(kind=\"linear_warmup\", "
                 "warmup=500); README \"Learning-rate schedules\"")


class OptimizerAlgorithm(Algorithm):
    """An algorithm that trains the problem's model with one ``torch.optim.Optimizer``.

    Subclasses implement :meth:`build_optimizer`; the step is the usual zero_grad / forward /
    mean loss / backward / ``optimizer.step()`` / ``scheduler.step()``. The loss is returned as a
    0-d tensor (no host sync). Every subclass that keeps this step gets the ``schedule`` parameter
    (:mod:`workbench.lr_schedule`); with a schedule the current learning rate is the ``lr`` metric.
    """

    def __init_subclass__(cls, **kwargs):
        if "PARAMS" in cls.__dict__ and cls.step is OptimizerAlgorithm.step and "schedule" not in cls.PARAMS:
            cls.PARAMS = {**cls.PARAMS, "schedule": SCHEDULE}
        super().__init_subclass__(**kwargs)

    def __init__(self, problem, model, seed: int | None = None, **params):
        super().__init__(problem, model, seed=seed, **params)
        optimizer_params = {k: v for k, v in self.params.items() if k != "schedule"}
        self.optimizer = self.build_optimizer(model.parameters(), **optimizer_params)
        self.scheduler = None
        if self.params.get("schedule", "constant") != "constant":
            from workbench import lr_schedule

            try:
                self.scheduler = lr_schedule.build(self.optimizer, self.params["schedule"], problem.planned_steps,
                                                   problem.steps_per_epoch(self.full_batch))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None

    @classmethod
    def build_optimizer(cls, parameters, **params) -> torch.optim.Optimizer:
        """The optimizer on ``parameters`` for the resolved ``params`` (a pure function of them)."""
        raise NotImplementedError

    @classmethod
    def check_params(cls, params: dict) -> None:
        """Build the optimizer once on a dummy tensor: its own validation runs before training; the
        schedule's form is checked too."""
        if "schedule" in params:
            from workbench import lr_schedule

            lr_schedule.spec_of(params["schedule"])
        optimizer_params = {k: v for k, v in params.items() if k != "schedule"}
        try:
            cls.build_optimizer(torch.nn.Linear(1, 1).parameters(), **optimizer_params)
        except ValueError as exc:
            raise ValueError(_naming_the_parameter(str(exc), params)) from None

    def step(self, x, y):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.problem.loss(self.model(x), y)
        loss.backward()
        metrics = {"train_loss": loss.detach()}
        if self.scheduler is not None:
            metrics["lr"] = self.optimizer.param_groups[0]["lr"]  # the rate of this update
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return metrics

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
