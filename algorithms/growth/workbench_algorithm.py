"""The workbench's ``growth`` algorithm, the ``growing_mlp`` model and two synthetic datasets.

Between growths the model trains with an ordinary torch.optim optimizer on the runner's batches,
with no statistics collected: a training step costs a plain step (the reference's call sequence
collects TINY's statistics on every batch, about 2.5x a plain step on MNIST; ``bench/growth.py``
prints both). Statistics are collected only when a growth is due: every ``grow_every`` steps (or
epochs) the algorithm

1. draws ``statistics_samples`` training examples with its own generator and accumulates the
   growth statistics on them (sum-reduced loss of the problem: cross-entropy, or
   F = (1/n) sum |f(x) - y|^2, so every statistic is a per-sample average);
2. computes a proposal per eligible hidden layer (width below ``target_width``) with TINY, GradMax
   or random outgoing directions, and picks a layer (largest first-order improvement / gradient
   norm, or round robin);
3. chooses the amplitude: TINY by a line search over ``gamma_grid`` on the same samples (the growth
   is skipped when no gamma > 0 lowers the loss, so gamma = 0 is never committed); GradMax and random
   by the norm rule (outgoing columns = ``gradmax_scale`` x the mean existing outgoing norm,
   gamma = 1; a loss line search is refused for them because every gamma gives the same loss);
4. commits the change and carries the optimizer state over (old entries keep their momentum /
   moments, new entries start from zero).

Metrics per step: ``n_params``, ``width_<i>``; at growth steps (NaN elsewhere):
``growth_predicted_change`` (first-order prediction -gamma^2 D, kappa included),
``growth_observed_change`` (loss after - loss before on the statistics samples), ``growth_gamma``,
``growth_layer``, ``growth_added``, ``growth_d_delta``, ``growth_new_neurons`` and ``growth_kappa``
(the parts of D), and ``growth_prediction_exact`` (1 when the activation is differentiable at 0, so
the prediction is exact to first order; 0 at a kink such as ReLU or SELU, see
:mod:`algorithms.growth.activations`). A growth step always gets a metrics row of its own
(``wants_row``), whatever ``log_every``; the snapshots also carry the full list of growth events.
"""
from __future__ import annotations

import math
import warnings

import torch

from algorithms.growth.activations import ReLUDerivativeOneAtZero
from algorithms.growth.growing_mlp import GrowingMLP
from algorithms.growth.optimizer_state import carry_optimizer_state
from workbench.algorithm import Algorithm, register_algorithm, torch_optimizer_class
from workbench.params import Param, at_least, int_at_least, list_of, one_of, positive
from workbench.models import ACTIVATIONS, make_activation
from workbench.problem import DataSplit
from workbench.registry import DATASETS, MODELS

# Snapshot keys (read by .plots): the widths, the parameter count, and the growth events so far.
WIDTHS, N_PARAMS, EVENTS = "widths", "n_params", "events"
EVENT_KEYS = ("step", "layer", "added", "gamma", "predicted_change", "observed_change", "d_delta",
              "new_neurons", "kappa", "prediction_exact", "loss_before")
NAN = float("nan")


ACTIVATIONS.register("relu1")(ReLUDerivativeOneAtZero)  # a name for configs, next to the workbench's


@MODELS.register("growing_mlp")
def growing_mlp(input_shape, n_outputs, hidden_size=4, number_hidden_layers=1, activation="relu1",
                bias=True) -> GrowingMLP:
    """GrowingMLP(prod(input_shape) -> hidden_size x number_hidden_layers -> n_outputs).

    ``activation`` is any name of the workbench's activations (:data:`workbench.models.ACTIVATIONS`);
    ``"relu1"`` is ReLU with derivative 1 at 0 (needed by GradMax). Activity storage is off until
    the growth algorithm collects statistics."""
    return GrowingMLP(math.prod(input_shape), n_outputs, hidden_size, number_hidden_layers,
                      activation=make_activation(activation), use_bias=bias, store_activity=False)


@DATASETS.register("student_teacher")
def student_teacher(data_dir=None, n=1000, n_test=1000, d_in=10, hidden=10, d_out=10,
                    noise=0.0, seed=0) -> DataSplit:
    """GradMax's student-teacher regression: y = W2 relu(W1 x) (+ noise), no biases,
    W1 (hidden, d_in), W2 (d_out, hidden) ~ U[-1, 1], x ~ N(0, I_{d_in})."""
    g = torch.Generator().manual_seed(seed)
    W1 = torch.rand(hidden, d_in, generator=g) * 2 - 1
    W2 = torch.rand(d_out, hidden, generator=g) * 2 - 1

    def sample(count):
        x = torch.randn(count, d_in, generator=g)
        return x, torch.relu(x @ W1.T) @ W2.T + noise * torch.randn(count, d_out, generator=g)

    x_train, y_train = sample(n)
    x_test, y_test = sample(n_test)
    return DataSplit(x_train, y_train, x_test, y_test, task="regression", n_outputs=d_out,
                     extras={"teacher": (W1, W2)})


@DATASETS.register("multi_sin")
def multi_sin(data_dir=None, n=10000, n_test=1000, d_in=10, d_out=3, seed=0) -> DataSplit:
    """The GroMo tutorial's target: y_d = sum_i sin((i+1) x_i + d), x ~ N(0, I_{d_in}), d < d_out."""
    g = torch.Generator().manual_seed(seed)
    freq = torch.arange(1, d_in + 1, dtype=torch.float32)
    shift = torch.arange(d_out, dtype=torch.float32)

    def sample(count):
        x = torch.randn(count, d_in, generator=g)
        return x, torch.sin(x[:, :, None] * freq[None, :, None] + shift[None, None, :]).sum(dim=1)

    x_train, y_train = sample(n)
    x_test, y_test = sample(n_test)
    return DataSplit(x_train, y_train, x_test, y_test, task="regression", n_outputs=d_out)


@register_algorithm("growth")
class Growth(Algorithm):
    """Train a ``growing_mlp`` and grow its hidden layers with TINY, GradMax or random neurons
    (parameters: ``PARAMS``)."""

    PARAMS = dict(
        method=Param("tiny", "tiny | gradmax | random | none (no growth: a fixed-size baseline)",
                     one_of("tiny", "gradmax", "random", "none")),
        grow_every=Param(100, "growth interval (0: never), in grow_unit", int_at_least(0)),
        grow_unit=Param("steps", "steps | epochs", one_of("steps", "epochs")),
        neurons_per_growth=Param(2, "at most this many neurons per growth (TINY / GradMax also keep only singular "
                                 "values >= min(statistical_threshold, lambda_max), and k <= min(r, q))",
                                 int_at_least(1)),
        target_width=Param(64, "int, or one int per hidden layer: a layer stops growing there", number=True),
        start_width=Param(None, "None (the model's widths) or int / list: rebuild the model at these widths "
                          "before training (a fixed-size baseline's width within one config)", number=True),
        layer_choice=Param("best", "best (largest D, or gradient norm for GradMax / random) | round_robin",
                           one_of("best", "round_robin")),
        amplitude=Param("auto", "auto (TINY: line_search, GradMax / random: norm) | line_search | norm | unit "
                        "(gamma = 1 as solved)", one_of("auto", "line_search", "norm", "unit")),
        gamma_grid=Param([1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0], "candidate gammas of the line "
                         "search; when the largest is best, gamma keeps doubling (at most gamma_expand times) "
                         "while the loss still decreases", list_of(positive), number=True),
        gamma_expand=Param(6, "doublings of gamma beyond the grid", int_at_least(0)),
        gradmax_scale=Param(0.5, "norm rule factor for GradMax / random outgoing weights", positive),
        statistics_samples=Param(1024, "training examples used for the statistics and the line search",
                                 int_at_least(1)),
        statistical_threshold=Param(1e-3, "TINY / GradMax singular value threshold", at_least(0)),
        whitening=Param("auto", "TINY's S2^{-1/2}: auto (Cholesky if S2 is invertible, else the pseudo-inverse) "
                        "| cholesky | ridge (S2 + 1e-6 I) | eigh", one_of("auto", "cholesky", "ridge", "eigh")),
        optimizer=Param("SGD", "torch.optim class name (case-insensitive)"),
        optimizer_args=Param({"lr": 0.01}, "keyword arguments of the optimizer"),
    )

    @classmethod
    def check_params(cls, params: dict) -> None:
        method = params["method"]
        amplitude = cls._amplitude_rule(method, params["amplitude"])
        if method in ("gradmax", "random") and amplitude == "line_search":
            raise ValueError(f"{method} neurons preserve the function: every gamma gives the same loss, "
                             "so a line search cannot set their amplitude; use amplitude='norm'")
        if method == "tiny" and amplitude == "norm":
            raise ValueError("amplitude='norm' is GradMax's rule; TINY uses 'line_search' or 'unit'")
        torch_optimizer_class(params["optimizer"])(torch.nn.Linear(1, 1).parameters(), **params["optimizer_args"])

    @staticmethod
    def _amplitude_rule(method: str, amplitude: str) -> str:
        if amplitude == "auto":
            return "line_search" if method == "tiny" else "norm"
        return amplitude

    @classmethod
    def check_model(cls, model, params: dict) -> None:
        if not isinstance(model, GrowingMLP):
            raise ValueError(f"the growth algorithm needs model='growing_mlp', got {type(model).__name__}")
        target = params["target_width"]
        if not isinstance(target, int) and len(target) != model.number_hidden_layers:
            raise ValueError(f"target_width needs {model.number_hidden_layers} widths, got {target!r}")

    def __init__(self, problem, model, seed: int | None = None, **params):
        super().__init__(problem, model, seed=seed, **params)
        p = self.params
        self.amplitude = self._amplitude_rule(p["method"], p["amplitude"])
        n_layers = model.number_hidden_layers
        if p["start_width"] is not None:
            start = p["start_width"]
            model.resize([start] * n_layers if isinstance(start, int) else list(start))
        target = p["target_width"]
        self.target = [target] * n_layers if isinstance(target, int) else list(target)
        model.store_activity = False
        bs = problem.batch_size
        steps_per_epoch = 1 if bs is None else math.ceil(problem.n_train / bs)
        self.interval = p["grow_every"] * (steps_per_epoch if p["grow_unit"] == "epochs" else 1)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.step_count = 0
        self.round_robin = 0
        self.events = {key: [] for key in EVENT_KEYS}
        self.optimizer = torch_optimizer_class(p["optimizer"])(model.parameters(), **p["optimizer_args"])

    # -- training ------------------------------------------------------------------------------
    def step(self, x, y):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.problem.loss(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        self.step_count += 1
        metrics = {"train_loss": loss.detach()}
        event = None
        if self.params["method"] != "none" and self.interval and self.step_count % self.interval == 0:
            event = self.grow()
        metrics.update(self._width_metrics())
        for key in EVENT_KEYS[1:-1]:
            metrics[f"growth_{key}"] = NAN if event is None else event[key]
        self.wants_row = event is not None  # every growth gets its row, whatever log_every
        return metrics

    def _width_metrics(self) -> dict:
        out = {f"width_{i}": float(h) for i, h in enumerate(self.model.hidden_sizes)}
        out["n_params"] = float(self.model.number_of_parameters())
        return out

    def _eligible(self) -> list[int]:
        return [i for i, h in enumerate(self.model.hidden_sizes) if h < self.target[i]]

    def _sample(self):
        data = self.problem.data
        n = data.x_train.shape[0]
        k = min(self.params["statistics_samples"], n)
        idx = torch.randperm(n, generator=self.generator)[:k].to(data.x_train.device)
        return self.problem.inputs(data.x_train[idx]), data.y_train[idx]

    def _chunks(self, x, y):
        size = self.problem.eval_batch_size
        for start in range(0, x.shape[0], size):
            yield x[start:start + size], y[start:start + size]

    @torch.no_grad()
    def _loss_on(self, x, y, forward) -> float:
        return self._mean_loss(((forward(xb), yb) for xb, yb in self._chunks(x, y)), x.shape[0])

    def _mean_loss(self, outputs_and_targets, n: int) -> float:
        """The mean loss over n samples given as (output, target) chunks."""
        return sum(float(self.problem.loss(out, yb, reduction="sum")) for out, yb in outputs_and_targets) / n

    def grow(self) -> dict | None:
        """One growth (statistics, proposal, amplitude, commit); returns the event or None."""
        layers = self._layers_to_grow()
        if not layers:
            return None
        model = self.model
        x, y = self._sample()
        was_training = model.training
        loss_before = self._collect_statistics(layers, x, y)
        layer = self._best_proposal()
        proposal = model.proposals[layer]
        gamma = self._amplitude(x, y, loss_before) if self.amplitude == "line_search" else 1.0
        if gamma is None:  # no gamma > 0 helps: skip rather than commit gamma = 0
            model.delete_update()
            warnings.warn(f"growth at step {self.step_count} skipped: no gamma in the grid lowers the loss",
                          RuntimeWarning, stacklevel=2)
            return None
        model.set_scaling_factor(gamma)
        event = self._event(layer, proposal, gamma, loss_before)
        carry_optimizer_state(self.optimizer, model.apply_change())
        model.train(was_training)
        event["observed_change"] = self._loss_on(x, y, model) - loss_before
        for key in EVENT_KEYS:
            self.events[key].append(event[key])
        return event

    def _layers_to_grow(self) -> list[int]:
        """The layers below their target; with ``layer_choice="round_robin"`` the next one only."""
        eligible = self._eligible()
        if not eligible or self.params["layer_choice"] != "round_robin":
            return eligible
        n = self.model.number_hidden_layers
        layer = sorted(eligible, key=lambda i: (i - self.round_robin) % n)[0]
        self.round_robin = (layer + 1) % n
        return [layer]

    def _collect_statistics(self, layers: list[int], x, y) -> float:
        """TINY / GradMax statistics of ``layers`` on the sample (x, y), summed over chunks, and the
        proposals they give (``model.proposals``); returns the mean loss on the sample, which
        their forward passes computed (the same number as ``_loss_on``)."""
        p, model = self.params, self.model
        model.growing_layers = layers
        model.init_computation(initialization_method=p["method"])
        # the statistics need gradients at the consumers' pre-activations only: the layers up to
        # the lowest producer are frozen meanwhile, so backward skips their weight gradients
        frozen = [q for layer in model.layers[:min(layers) + 1] for q in layer.parameters() if q.requires_grad]
        total = 0.0
        try:
            for q in frozen:
                q.requires_grad_(False)
            for xb, yb in self._chunks(x, y):
                model.zero_grad(set_to_none=True)
                loss = self.problem.loss(model(xb), yb, reduction="sum")
                loss.backward()
                total += float(loss.detach())
                model.update_computation()
        finally:
            for q in frozen:
                q.requires_grad_(True)
        model.zero_grad(set_to_none=True)
        model.compute_optimal_updates(
            maximum_added_neurons=p["neurons_per_growth"], initialization_method=p["method"],
            statistical_threshold=p["statistical_threshold"],
            gradmax_scale=p["gradmax_scale"] if self.amplitude == "norm" else None,
            generator=self.generator, whitening=p["whitening"])
        model.reset_computation()
        model.growing_layers = list(range(model.number_hidden_layers))
        return total / x.shape[0]

    def _best_proposal(self) -> int:
        """The layer whose proposal (cut to the room left below the target) is best."""
        model = self.model
        for i, proposal in model.proposals.items():
            room = self.target[i] - model.hidden_sizes[i]
            if proposal.n_neurons > room:
                proposal.sub_select(room)
        return model.select_best_update()

    @torch.no_grad()
    def _amplitude(self, x, y, loss_before: float) -> float | None:
        """The gamma of ``gamma_grid`` (doubled up to ``gamma_expand`` times past its top while
        that still helps) with the lowest loss on (x, y); None if none is below ``loss_before``.
        The layers up to the grown one run once (:meth:`GrowingMLP.extension_inputs`)."""
        p, model = self.params, self.model
        chunks = [(model.extension_inputs(xb), yb) for xb, yb in self._chunks(x, y)]

        def loss_at(gamma: float) -> float:
            model.set_scaling_factor(gamma)
            return self._mean_loss(((model.extended_forward(None, cached=c), yb) for c, yb in chunks), x.shape[0])

        best_gamma, best_loss = None, loss_before
        grid = sorted(p["gamma_grid"])
        for g in grid:
            loss = loss_at(g)
            if math.isfinite(loss) and loss < best_loss:
                best_gamma, best_loss = g, loss
        for _ in range(p["gamma_expand"] if best_gamma == grid[-1] else 0):
            loss = loss_at(2 * best_gamma)
            if not (math.isfinite(loss) and loss < best_loss):
                break
            best_gamma, best_loss = 2 * best_gamma, loss
        return best_gamma

    def _event(self, layer: int, proposal, gamma: float, loss_before: float) -> dict:
        """The growth's record, before its observed change: the first-order prediction and its terms."""
        return {"step": self.step_count, "layer": float(layer), "added": float(proposal.n_neurons),
                "gamma": gamma, "predicted_change": -proposal.predicted_decrease(),
                "d_delta": 0.0 if proposal.delta is None else gamma ** 2 * proposal.d_delta,
                "new_neurons": gamma ** 2 * proposal.sigma_prime * proposal.lambda_term,
                "kappa": gamma ** 2 * proposal.sigma_prime * proposal.kappa,
                "prediction_exact": float(proposal.first_order_exact), "loss_before": loss_before}

    # -- records -------------------------------------------------------------------------------
    def snapshot(self):
        """{WIDTHS: hidden sizes, N_PARAMS: parameter count, EVENTS: every committed growth so far,
        {key: list} with the keys of EVENT_KEYS}."""
        return {WIDTHS: list(self.model.hidden_sizes), N_PARAMS: self.model.number_of_parameters(),
                EVENTS: {k: list(v) for k, v in self.events.items()}}

    def info(self):
        return {"method": self.params["method"], "amplitude": self.amplitude,
                "initial_widths": list(self.model.hidden_sizes), "target_width": list(self.target),
                "growth_interval_steps": self.interval, "sigma_prime": self.model.sigma_prime,
                "sigma_prime_autograd": self.model.at_zero.derivative,
                "activation": type(self.model.activation).__name__}

    def state_dict(self):
        return {"model": self.model.state_dict(), "widths": list(self.model.hidden_sizes),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "step_count": self.step_count, "round_robin": self.round_robin,
                "events": {k: list(v) for k, v in self.events.items()}}

    def load_state_dict(self, state):
        self.model.resize(state["widths"])
        self.model.load_state_dict(state["model"])
        self.optimizer = torch_optimizer_class(self.params["optimizer"])(
            self.model.parameters(), **self.params["optimizer_args"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step_count, self.round_robin = state["step_count"], state["round_robin"]
        self.events = {k: list(v) for k, v in state["events"].items()}
