r"""The shallow family's workbench algorithms: ``relu_gd``, ``relu_convex``, ``relu_prox``, ``relu_jko``.

Each adapts a library piece of the family to the runner's contract (:class:`workbench.algorithm.Algorithm`):
``relu_gd`` trains with the closed-form gradients of :mod:`.model`, ``relu_convex`` solves
:mod:`.convex`'s group lasso, ``relu_prox`` runs :class:`.prox.ProxPoint`, ``relu_jko`` runs
:func:`.jko.jko_step` on a fixed grid of neurons.

Snapshot and info keys (what :mod:`.plots` reads; the constants below are their one spelling):

- every algorithm: ``W`` (m, d+1) neurons and ``a`` (m,) output weights (``relu_jko``: only ``a``,
  with the masses ``p`` (N,); its grid ``grid`` (N, 2), ``signs`` (N,) and ``grid_kind`` are in
  ``info()``); ``data_x`` (n, d), ``data_y`` (n,) in ``info()`` when the training set is small;
- ``relu_convex``: ``status``, the last solve's cvxpy status;
- ``relu_prox``: the inner loop of the latest outer step, ``inner_objective``, ``inner_distance``,
  ``inner_lr`` (one entry per inner step) and ``inner_of_step`` (its outer step);
- ``relu_gd`` with ``convex_reference=True``: ``convex_optimum`` in ``info()``.
"""
from __future__ import annotations

import inspect

import numpy as np
import torch

from algorithms.shallow.convex import (FORMULATIONS, ConvexReLUProblem, ConvexResult, check_solver, pattern_set,
                                       prune, recover)
from algorithms.shallow.distances import DISTANCES
from algorithms.shallow.indicators import DATA_X, DATA_Y, data_for_record
from algorithms.shallow.jko import cost_matrix, grid_kind, jko_step, log_kernel, plan
from algorithms.shallow.jko_prox import PROX_SOLVERS, QuadraticEnergy, make_prox
from algorithms.shallow.model import TwoLayerReLU, add_bias, objective, regulariser
from algorithms.shallow.prox import ProxPoint
from algorithms.shallow.relu_gd import gd_step
from workbench.algorithm import Algorithm, register_algorithm, torch_optimizer_class
from workbench.params import Param, at_least, in_interval, int_at_least, one_of, optional, positive

F64 = torch.float64

NEURONS, OUTPUT_WEIGHTS = "W", "a"
SOLVER_STATUS = "status"
INNER_OBJECTIVE, INNER_DISTANCE, INNER_LR, INNER_OF_STEP = "inner_objective", "inner_distance", "inner_lr", "inner_of_step"
MASSES, GRID, SIGNS, GRID_KIND = "p", "grid", "signs", "grid_kind"
CONVEX_OPTIMUM = "convex_optimum"
__all__ = ["ReLUGD", "ReLUConvex", "ReLUProx", "ReLUJKO", "NEURONS", "OUTPUT_WEIGHTS", "SOLVER_STATUS",
           "INNER_OBJECTIVE", "INNER_DISTANCE", "INNER_LR", "INNER_OF_STEP", "MASSES", "GRID", "SIGNS",
           "GRID_KIND", "CONVEX_OPTIMUM", "DATA_X", "DATA_Y"]


def _neurons(model) -> dict:
    return {NEURONS: model.W.detach().cpu().numpy().copy(), OUTPUT_WEIGHTS: model.a.detach().cpu().numpy().copy()}


def _needs_two_layer_relu(cls, model) -> None:
    if not isinstance(model, TwoLayerReLU):
        raise ValueError(f"{cls.registered_name} needs model='two_layer_relu', got {type(model).__name__}")


def _positions_and_outputs(cls, model: torch.nn.Module):
    W, a = getattr(model, "W", None), getattr(model, "a", None)
    if not isinstance(W, torch.Tensor) or not isinstance(a, torch.Tensor) or W.dim() != 2:
        raise ValueError(f"{cls.registered_name} needs a two-layer ReLU model with first-layer rows `W` (m, d+1) "
                         "and output weights `a` (m,), e.g. model='two_layer_relu'")
    return W, a


@register_algorithm("relu_gd")
class ReLUGD(Algorithm):
    r"""Gradient descent on F_beta with any torch optimizer: :func:`.relu_gd.gd_step` per batch (the
    module explains the objective, the closed-form gradient and the first-layer-only mode). The
    optimizer is looked up by name in ``torch.optim`` (case-insensitive: sgd, adam, adamw, ...;
    :func:`workbench.algorithm.torch_optimizer_class`) and receives ``lr`` plus ``optimizer_args``.

    With ``convex_reference=True`` the constructor solves the convex reformulation on the full training
    set (all patterns for 1-D inputs, else ``reference_gates`` sampled gates plus the initial network's
    patterns) and records its optimum in ``info()["convex_optimum"]`` for the plots.

    Snapshots hold W and a. Metrics per step: train_loss (batch data term, before the update),
    objective (batch F_beta). ``evaluate()`` adds full_objective and full_loss on the whole training set, and test_sign_acc
    (accuracy of sign(f), in %; full_train_sign_acc for a dataset without a test split) when the
    targets are +-1.
    """

    PARAMS = dict(
        optimizer=Param("sgd", "a torch.optim class name (case-insensitive)"),
        lr=Param(1e-2, "learning rate", positive),
        beta=Param(0.0, "weight decay of the objective, (beta/2) sum(|w|^2 + a^2)", at_least(0)),
        optimizer_args=Param({}, "extra keyword arguments of the optimizer (momentum, betas, ...)"),
        convex_reference=Param(False, "solve the convex problem once for the plots' reference line"),
        reference_gates=Param(1000, "sampled gates of that reference solve (d > 1)", int_at_least(0)),
        reference_solver=Param("CLARABEL", "cvxpy solver of that reference solve"),
    )

    @classmethod
    def check_params(cls, params: dict) -> None:
        optimizer = torch_optimizer_class(params["optimizer"])  # the name and its keyword arguments
        optimizer([torch.zeros(1, requires_grad=True)], lr=params["lr"], **params["optimizer_args"])
        if params["convex_reference"]:
            check_solver(params["reference_solver"])

    @classmethod
    def check_model(cls, model, params: dict) -> None:
        _needs_two_layer_relu(cls, model)

    def __init__(self, problem, model, seed: int | None = None, **params):
        super().__init__(problem, model, seed=seed, **params)
        params = self.params
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch_optimizer_class(params["optimizer"])(trainable, lr=params["lr"],
                                                                    **params["optimizer_args"])
        self.reference = self._convex_reference() if params["convex_reference"] else None
        y = problem.data.y_train
        self._pm_one_targets = bool(y.numel()) and bool(((y == 1) | (y == -1)).all())

    @torch.no_grad()
    def step(self, x, y):
        loss, total = gd_step(self.model, self.optimizer, x, y, self.params["beta"])
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
        return _neurons(self.model)

    def info(self):
        info = {"beta": self.params["beta"], "train_output": self.model.train_output,
                "width": self.model.width, **data_for_record(self.problem, self.model)}
        if self.reference is not None:
            info.update(self.reference)
        return info

    def _convex_reference(self) -> dict:
        data = self.problem.data
        X = add_bias(data.x_train.detach().double().cpu()).numpy()
        y = data.y_train.detach().double().cpu().numpy().reshape(-1)
        exact = self.model.input_dim == 1
        g = torch.Generator().manual_seed(self.seed)
        patterns = pattern_set(X, 0 if exact else self.params["reference_gates"], g,
                               self.model.W.detach().double().cpu().numpy(), exact_1d=exact)
        result = ConvexReLUProblem(X, patterns).solve(y, self.params["beta"], self.params["reference_solver"])
        return {CONVEX_OPTIMUM: result.value, "convex_status": result.status,
                "convex_patterns": result.n_patterns, "convex_time": result.solve_time}


@register_algorithm("relu_convex")
class ReLUConvex(Algorithm):
    """Global training of a :class:`TwoLayerReLU` through the convex group lasso (module docstring).

    Each step builds the pattern set {n_gates fresh Gaussian gates} U {current network's patterns}
    U {patterns active in the last solution} (for 1-D inputs with ``patterns="auto"``: all patterns),
    solves with ``solver`` and installs the balanced recovered network (its width is the number of
    active blocks). Since the previous solution stays feasible, the objective never increases over
    steps. A failed solve leaves the network unchanged, warns, and reports ``solve_ok = 0``.
    After ``max_solves`` solves further steps repeat the last metrics without solving, so the convex
    run can share a config's step budget with GD runs.

    Metrics per step: train_loss (data MSE of the network), objective (F_beta of the network),
    convex_objective (solver value, NaN on failure), n_patterns, n_active, solve_time, solve_ok;
    the solver's status string is in every snapshot.
    """

    PARAMS = dict(
        beta=Param(1e-3, "weight decay beta of F_beta (the group-lasso weight)", at_least(0)),
        n_gates=Param(1000, "Gaussian gate vectors sampled per step", int_at_least(0)),
        patterns=Param("auto", "auto (exact for 1-D inputs, else sampled) | sampled | exact",
                       one_of("auto", "sampled", "exact")),
        network_patterns=Param(True, "add the current network's own patterns"),
        solver=Param("CLARABEL", "any installed cvxpy solver"),
        solver_options=Param({}, "keyword arguments of problem.solve"),
        zero_tol=Param(1e-4, "blocks below zero_tol * max block norm are dropped (interior-point solutions "
                       "leave ~1e-5-relative residue in zero blocks)", at_least(0)),
        max_solves=Param(1, "solves before the run ends as converged (None: solve every step)",
                         optional(int_at_least(1)), number=True),
        formulation=Param("auto", "auto | residual | gram (see ConvexReLUProblem)", one_of(*FORMULATIONS)),
    )
    full_batch = True

    @classmethod
    def check_params(cls, params: dict) -> None:
        check_solver(params["solver"])

    @classmethod
    def check_model(cls, model, params: dict) -> None:
        _needs_two_layer_relu(cls, model)
        if params["patterns"] == "exact" and model.input_dim != 1:
            raise ValueError("patterns='exact' enumerates patterns of 1-D inputs only; use patterns='sampled'")

    def __init__(self, problem, model, seed: int | None = None, **params):
        super().__init__(problem, model, seed=seed, **params)
        params = self.params
        self.solver = check_solver(params["solver"])
        self.exact = params["patterns"] == "exact" or (params["patterns"] == "auto" and model.input_dim == 1)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.active: np.ndarray | None = None  # patterns of the last solution's nonzero blocks
        self.last: ConvexResult | None = None
        self.solves = 0
        self.last_metrics: dict | None = None

    def step(self, x, y):
        p = self.params
        self.solves += 1
        X = add_bias(x.detach()).double().cpu().numpy()
        yy = y.detach().double().cpu().numpy().reshape(-1)
        W = self.model.W.detach().double().cpu().numpy()
        patterns = pattern_set(X, 0 if self.exact else p["n_gates"], self.generator,
                               W if p["network_patterns"] else None, self.active, self.exact)
        result = ConvexReLUProblem(X, patterns, p["formulation"]).solve(yy, p["beta"], self.solver,
                                                                         **p["solver_options"])
        self.last = result
        if result.success:
            V, U = prune(result.V, result.U, p["zero_tol"])
            Wr, ar, block = recover(V, U, p["zero_tol"])
            self.model.set_weights(torch.from_numpy(Wr), torch.from_numpy(ar))
            self.active = patterns[np.unique(block)] if len(block) else None
        with torch.no_grad():
            Xt = add_bias(x)
            loss = objective(self.model.W, self.model.a, Xt, y.reshape(-1))
            reg_obj = objective(self.model.W, self.model.a, Xt, y.reshape(-1), p["beta"])
        self.last_metrics = {"train_loss": loss, "objective": reg_obj, "convex_objective": result.value,
                             "n_patterns": float(result.n_patterns), "n_active": float(self.model.width),
                             "solve_time": result.solve_time, "solve_ok": float(result.success)}
        self._update_converged()
        return self.last_metrics

    def _update_converged(self) -> None:
        """After ``max_solves`` solves further steps change nothing: the runner ends the run."""
        self.converged = self.params["max_solves"] is not None and self.solves >= self.params["max_solves"]

    def snapshot(self):
        """Neurons plus the last solve's status string ("not solved" before the first step)."""
        return {**_neurons(self.model), SOLVER_STATUS: "not solved" if self.last is None else self.last.status}

    def info(self):
        return {"solver": self.solver, "beta": self.params["beta"], "exact_patterns": self.exact,
                **data_for_record(self.problem, self.model)}

    def state_dict(self):
        return {"model": self.model.state_dict(), "generator": self.generator.get_state(),
                "active": None if self.active is None else self.active.copy(), "solves": self.solves,
                "last_metrics": None if self.last_metrics is None else
                {k: float(v) for k, v in self.last_metrics.items()}}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.generator.set_state(state["generator"])
        self.active = state["active"]
        self.solves = state["solves"]
        self.last_metrics = state["last_metrics"]
        self._update_converged()


def inner_optimizer(params: dict) -> type:
    """relu_prox's inner optimizer class: ``inner_optimizer`` names any torch.optim class."""
    return torch_optimizer_class(params["inner_optimizer"], "inner_optimizer")


def inner_optimizer_args(params: dict) -> dict:
    """``momentum=inner_momentum`` for a class that has momentum (SGD, RMSprop), and no weight
    decay for a class that has one (the prox objective carries its own ``beta``)."""
    accepted = inspect.signature(inner_optimizer(params)).parameters
    args = {"momentum": params["inner_momentum"]} if "momentum" in accepted else {}
    if "weight_decay" in accepted:
        args["weight_decay"] = 0.0
    return args


@register_algorithm("relu_prox")
class ReLUProx(Algorithm):
    r"""Proximal point on the first layer of a two-layer ReLU network (see the module docstring).

    F(V) = (1/n) sum_i (f(x_i) - y_i)^2 + (beta/2) sum_j (|v_j|^2 + a_j^2) on the full batch;
    the output weights ``a`` are frozen and define the sign split of the distance. The inner solver
    is ``inner_optimizer``, any torch.optim class by name, with ``inner_momentum`` where the class
    has a momentum and no weight decay (see :func:`inner_optimizer_args`).
    Metrics per outer step: ``train_loss`` (F without the penalty, after the step),
    ``prox_objective``, ``prox_distance``, ``inner_steps``, ``inner_grad_norm``, ``inner_lr``.
    Snapshots: neuron positions ``W`` and ``a``, plus the inner-loop curves of the latest outer
    step (``inner_objective``, ``inner_distance``, ``inner_lr``, ``inner_of_step``), so memory is
    bounded by (number of snapshots) x ``inner_steps``.
    """

    full_batch = True
    PARAMS = dict(
        distance=Param("wasserstein2", "the prox distance: " + " | ".join(DISTANCES), one_of(*DISTANCES)),
        gamma=Param(0.1, "prox step size: F(V) + dist(V, W) / (2 gamma)", positive),
        inner_steps=Param(100, "inner optimizer steps per outer step", int_at_least(1)),
        inner_optimizer=Param("adam", "the inner solver, a torch.optim class name"),
        inner_lr=Param(1e-2, "inner learning rate", positive),
        inner_momentum=Param(0.0, "inner momentum where the class has one, in [0, 1)", in_interval(0, 1, "left")),
        inner_lr_decay=Param(1.0, "inner learning rate factor per inner step, in (0, 1]", in_interval(0, 1, "right")),
        inner_tol=Param(0.0, "stop the inner loop once its gradient norm is below this", at_least(0)),
        reset_inner_state=Param(True, "a fresh inner optimizer state at every outer step"),
        n_projections=Param(128, "directions of the sliced W2", int_at_least(1)),
        assignment_every=Param(1, "inner steps between re-solves of the W2 assignment (1: every step, an exact subgradient)",
                               int_at_least(1)),
        beta=Param(0.0, "weight decay of F, (beta/2) sum(|v|^2 + a^2)", at_least(0)),
    )

    @classmethod
    def check_params(cls, params: dict) -> None:
        """The inner optimizer's name and arguments (its own checks)."""
        inner_optimizer(params)([torch.zeros(1, requires_grad=True)], lr=1.0,
                                **inner_optimizer_args(params))

    @classmethod
    def check_model(cls, model, params: dict) -> None:
        W, _ = _positions_and_outputs(cls, model)
        if not isinstance(W, torch.nn.Parameter):
            raise ValueError("relu_prox needs the model's W to be a torch.nn.Parameter")

    def __init__(self, problem, model, seed: int | None = None, **params):
        super().__init__(problem, model, seed=seed, **params)
        params = self.params
        W, a = model.W, model.a
        if isinstance(a, torch.nn.Parameter):
            a.requires_grad_(False)  # the prox moves positions only; a fixes the sign split
        self.generator = torch.Generator().manual_seed(self.seed % 2**63)
        self._batch = None
        self.prox = ProxPoint(
            W, self._objective, signs=a.detach(), distance=params["distance"], gamma=params["gamma"],
            inner_steps=params["inner_steps"], inner_optimizer=inner_optimizer(params),
            inner_lr=params["inner_lr"], inner_optimizer_args=inner_optimizer_args(params),
            inner_lr_decay=params["inner_lr_decay"], inner_tol=params["inner_tol"],
            reset_inner_state=params["reset_inner_state"], n_projections=params["n_projections"],
            assignment_every=params["assignment_every"], generator=self.generator)
        self.outer_step = 0
        self.last_history = None

    def _objective(self) -> torch.Tensor:
        x, y = self._batch
        F = self.problem.loss(self.model(x), y)
        beta = self.params["beta"]
        return F + regulariser(self.model.W, self.model.a, beta) if beta else F

    def step(self, x, y):
        self._batch = (x, y)
        out = self.prox.step()
        self.outer_step += 1
        self.last_history = out["history"]
        with torch.no_grad():
            loss = self.problem.loss(self.model(x), y)
        self._batch = None
        return {"train_loss": loss.detach(), "prox_objective": out["prox_objective"],
                "prox_distance": out["distance"], "inner_steps": float(out["inner_steps"]),
                "inner_grad_norm": out["grad_norm"], "inner_lr": float(out["history"]["lr"][-1])}

    def snapshot(self):
        hist = self.last_history or {"objective": np.zeros(0), "distance": np.zeros(0), "lr": np.zeros(0)}
        return {**_neurons(self.model), INNER_OBJECTIVE: hist["objective"], INNER_DISTANCE: hist["distance"],
                INNER_LR: hist["lr"], INNER_OF_STEP: self.outer_step if self.last_history else 0}

    def info(self):
        m, D = self.model.W.shape
        gamma = self.params["gamma"]
        return {"distance": self.params["distance"], "gamma": gamma, "n_neurons": int(m), "particle_dim": int(D),
                # V = W - eta grad F(V) in the small-gamma limit (sliced: about D times smaller moves)
                "implicit_lr": gamma * m, "distance_normalisation": "(1/m) sum_j |v_j - w_sigma(j)|^2, split by sign",
                **data_for_record(self.problem, self.model)}

    def state_dict(self):
        return {"model": self.model.state_dict(), "prox": self.prox.state_dict(), "outer_step": self.outer_step,
                "lr": [g["lr"] for g in self.prox.optimizer.param_groups]}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.prox.load_state_dict(state["prox"])
        self.outer_step = state["outer_step"]
        for g, lr in zip(self.prox.optimizer.param_groups, state["lr"]):
            g["lr"] = lr


@register_algorithm("relu_jko")
class ReLUJKO(Algorithm):
    r"""Entropic JKO steps on masses over the model's frozen neurons (module docstring).

    The grid is the model's rows ``W`` (N, D), the signs s = sign(a) (sign 0 counts as +) and the
    initial masses p = |a| (unnormalised). After each step the model's ``a`` is set to s * p, so
    the runner's evaluation sees the current network. Metrics per step: ``train_loss`` (the data
    term of F after the step), ``objective`` (F with beta), ``total_mass``, ``mass_error``
    (sum p - initial mass), ``sinkhorn_iters``, ``residual_p``, ``residual_q``, ``prox_iters``,
    ``transport_cost`` (<C, pi>). Snapshots: masses ``p`` and signed outputs ``a``; the grid
    and signs are in ``info()``.
    """

    full_batch = True
    PARAMS = dict(
        tau=Param(0.1, "JKO step size", positive),
        epsilon=Param(0.01, "entropic regularisation of the transport", positive),
        prox_solver=Param("torch", "the energy's prox: " + " | ".join(PROX_SOLVERS), one_of(*PROX_SOLVERS)),
        max_iter=Param(2000, "Sinkhorn iterations at most per step", int_at_least(1)),
        tol=Param(1e-9, "Sinkhorn stops once both marginal residuals are below this", positive),
        check_every=Param(5, "iterations between residual checks", int_at_least(1)),
        kernel_floor=Param(0.0, "lower bound of the Gibbs kernel's entries, in [0, 1)", in_interval(0, 1, "left")),
        prox_max_iter=Param(None, "iterations of the prox solver at most (None: its default)",
                            optional(positive), number=True),
        prox_tol=Param(None, "tolerance of the prox solver (None: its default)", optional(positive), number=True),
        cvxpy_solver=Param("CLARABEL", "cvxpy solver of prox_solver='cvxpy'"),
        beta=Param(0.0, "weight decay of F", at_least(0)),
        warm_start=Param(True, "start each step's Sinkhorn from the previous step's potentials"),
    )

    @classmethod
    def check_model(cls, model, params: dict) -> None:
        _, a = _positions_and_outputs(cls, model)
        if float(a.detach().abs().sum()) <= 0:
            raise ValueError("relu_jko: the model's output weights have zero total mass")

    def __init__(self, problem, model, seed: int | None = None, **params):
        super().__init__(problem, model, seed=seed, **params)
        params = self.params
        W, a = model.W, model.a
        for p in model.parameters():
            p.requires_grad_(False)
        self.grid = W.detach().to(F64)
        self.signs = torch.where(a.detach() >= 0, 1.0, -1.0).to(F64)
        self.p = a.detach().abs().to(F64)
        self.initial_mass = float(self.p.sum())
        self.cost = cost_matrix(self.grid)
        self.logK = log_kernel(self.cost, params["epsilon"], params["kernel_floor"])
        self.K = torch.exp(self.logK)
        self.g = None
        self.prox = None
        self._data_key = None
        self._prox_last = None

    def _prox_for(self, x, y):
        key = (x.data_ptr(), y.data_ptr(), tuple(x.shape))
        if self.prox is None or key != self._data_key:
            P = self.params
            energy = QuadraticEnergy.from_network(self.grid, self.signs, add_bias(x.to(F64)), y.to(F64), P["beta"])
            options = {}
            if P["prox_max_iter"] is not None:
                options["max_iter"] = P["prox_max_iter"]
            if P["prox_tol"] is not None:
                options["tol"] = P["prox_tol"]
            if P["prox_solver"] == "cvxpy":
                options["solver"] = P["cvxpy_solver"]
            self.prox = make_prox(P["prox_solver"], energy, P["tau"] / P["epsilon"], **options)
            self._data_key = key
            if self._prox_last is not None:
                self.prox._last, self._prox_last = self._prox_last.to(self.grid.device), None
        return self.prox

    def step(self, x, y):
        P = self.params
        prox = self._prox_for(x, y)
        result = jko_step(self.p, self.logK, prox, max_iter=P["max_iter"], tol=P["tol"],
                          check_every=P["check_every"], g0=self.g if P["warm_start"] else None, kernel=self.K)
        self.p = result.p
        self.g = result.g
        with torch.no_grad():
            self.model.a.copy_((self.signs * self.p).to(self.model.a.dtype))
            loss = self.problem.loss(self.model(x), y)
        transport = float((plan(result, self.logK) * self.cost).sum())
        total = float(self.p.sum())
        return {"train_loss": loss.detach(), "objective": float(prox.energy.value(self.p)),
                "total_mass": total, "mass_error": total - self.initial_mass,
                "sinkhorn_iters": float(result.iterations), "residual_p": result.residual_p,
                "residual_q": result.residual_q, "prox_iters": float(result.prox_iterations),
                "transport_cost": transport}

    def snapshot(self):
        return {MASSES: self.p.cpu().numpy().copy(), OUTPUT_WEIGHTS: (self.signs * self.p).cpu().numpy().copy()}

    def info(self):
        grid = self.grid.cpu().numpy().copy()
        return {GRID: grid, SIGNS: self.signs.cpu().numpy().copy(), GRID_KIND: grid_kind(grid),
                "initial_mass": self.initial_mass, "lambda": self.params["tau"] / self.params["epsilon"],
                "cost": "C_kl = |g_k - g_l|^2 / 2", "step": "argmin F(p) + W_eps(p, p_t) / tau",
                **data_for_record(self.problem, self.model)}

    def state_dict(self):
        return {"model": self.model.state_dict(), "p": self.p.clone(), "signs": self.signs.clone(),
                "g": None if self.g is None else self.g.clone(), "initial_mass": self.initial_mass,
                # the prox solver's warm start, so a resumed run repeats the same inner iterates
                "prox_last": None if self.prox is None or self.prox._last is None else self.prox._last.clone()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.p, self.signs = state["p"].to(F64), state["signs"].to(F64)
        self.g = None if state["g"] is None else state["g"].to(F64)
        self.initial_mass = state["initial_mass"]
        self._prox_last = state.get("prox_last")
