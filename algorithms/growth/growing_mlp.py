"""GrowingMLP: an MLP whose hidden layers grow with TINY or GradMax.

Layers: ``layers[0]`` maps in_features -> h_0, ``layers[j]`` maps h_{j-1} -> h_j, and the last
maps h_{L-1} -> out_features; the activation follows every layer but the last. Growing hidden
layer i adds rows to ``layers[i]`` (the producer) and columns to ``layers[i+1]`` (the consumer).

Call sequence (the reference's)::

    model.init_computation()                # zero statistics, start storing activity
    for x, y in loader:
        loss = loss_fn(model(x), y)         # reduction="sum" (or "mean" + loss_reduction="mean")
        loss.backward()
        model.update_computation()          # adds this forward's batch once
    model.compute_optimal_updates(maximum_added_neurons=2, initialization_method="tiny")
    model.reset_computation()
    model.select_best_update()              # or select_update(i) / dummy_select_update()
    model.set_scaling_factor(gamma)         # gamma^2 on Delta, gamma on each extension
    y_preview = model.extended_forward(x)   # nothing committed
    model.apply_change()                    # plain forward now equals the preview

Statistics are per-sample averages (see :mod:`algorithms.growth.statistics`); the solvers run in
float64 (:mod:`~algorithms.growth.tiny`, :mod:`~algorithms.growth.gradmax`). ``store_activity``
is on at construction so that ``update_computation`` works without an explicit
``init_computation``; ``reset_computation`` switches it off (set it back for the next round).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from algorithms.growth.activations import at_zero, make_activation
from algorithms.growth.gradmax import gradmax_added_parameters, gradmax_normalize
from algorithms.growth.linalg import optimal_delta
from algorithms.growth.proposal import Proposal
from algorithms.growth.statistics import GrowthStatistics, with_ones
from algorithms.growth.tiny import projected_residual, tiny_added_parameters

@dataclass
class _Recorded:
    """Activity of the last forward: layer inputs (detached) and consumer output gradients."""

    inputs: dict = field(default_factory=dict)
    grads: dict = field(default_factory=dict)
    updated: bool = False


class GrowingMLP(nn.Module):
    """MLP with growable hidden layers (TINY / GradMax / random outgoing directions).

    Parameters
    ----------
    in_features, out_features : int
    hidden_size : int, or a list of the widths of each hidden layer
    number_hidden_layers : int >= 1
    activation : nn.Module (e.g. ``nn.Tanh()``, or :class:`ReLUDerivativeOneAtZero` = ReLU with
        derivative 1 at 0); default SELU as in the reference. GradMax needs sigma(0) = 0 and
        sigma'(0) != 0 under autograd (ReLUDerivativeOneAtZero, Tanh, SELU; not ``nn.ReLU``).
    use_bias : bool
    flatten : flatten inputs to (n, in_features)
    store_activity : store layer inputs and output gradients on every forward with grad enabled
    """

    def __init__(self, in_features: int, out_features: int, hidden_size, number_hidden_layers: int,
                 activation=None, use_bias: bool = True, flatten: bool = True,
                 store_activity: bool = True, device=None, dtype=None):
        super().__init__()
        if number_hidden_layers < 1:
            raise ValueError(f"number_hidden_layers must be >= 1, got {number_hidden_layers}")
        widths = [hidden_size] * number_hidden_layers if isinstance(hidden_size, int) else list(hidden_size)
        if len(widths) != number_hidden_layers or any(not isinstance(h, int) or h < 1 for h in widths):
            raise ValueError(f"hidden_size must be a positive int or {number_hidden_layers} positive ints, got {hidden_size!r}")
        self.in_features, self.out_features = in_features, out_features
        self.number_hidden_layers = number_hidden_layers
        self.use_bias, self.flatten = use_bias, flatten
        self.activation = make_activation(activation)
        self.at_zero = at_zero(self.activation)
        self.sigma_prime = self.at_zero.right  # the slope TINY's first-order prediction uses
        self._warned_kink = False
        if abs(self.at_zero.value) > 1e-12:
            warnings.warn("activation with sigma(0) != 0: new neurons change the function at order gamma "
                          "and the predicted improvement is not valid", RuntimeWarning, stacklevel=2)
        sizes = [in_features, *widths, out_features]
        self.layers = nn.ModuleList(
            nn.Linear(sizes[j], sizes[j + 1], bias=use_bias, device=device, dtype=dtype)
            for j in range(len(sizes) - 1))
        self.store_activity = store_activity
        self.growing_layers = list(range(number_hidden_layers))
        self._sequential_next = 0
        self._stats: dict[int, GrowthStatistics] = {}
        self._m2_only = False
        self._record: _Recorded | None = None
        self._proposals: dict[int, Proposal] = {}
        self.currently_updated_layer_index: int | None = None

    # -- shapes ----------------------------------------------------------------------------------
    @property
    def hidden_sizes(self) -> list[int]:
        return [layer.out_features for layer in self.layers[:-1]]

    def number_of_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def resize(self, hidden_sizes: list[int]) -> None:
        """Rebuild the layers with the given hidden widths (weights re-initialised; for loading)."""
        if len(hidden_sizes) != self.number_hidden_layers:
            raise ValueError(f"expected {self.number_hidden_layers} widths, got {hidden_sizes}")
        ref = self.layers[0].weight
        sizes = [self.in_features, *hidden_sizes, self.out_features]
        for j, layer in enumerate(self.layers):
            if (layer.in_features, layer.out_features) != (sizes[j], sizes[j + 1]):
                self.layers[j] = nn.Linear(sizes[j], sizes[j + 1], bias=self.use_bias,
                                           device=ref.device, dtype=ref.dtype)
        self.delete_update()
        self._stats, self._record = {}, None

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Like nn.Module's, after resizing to the hidden widths found in ``state_dict``."""
        widths = [state_dict[f"layers.{j}.weight"].shape[0] for j in range(self.number_hidden_layers)]
        if widths != self.hidden_sizes:
            self.resize(widths)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- forward ---------------------------------------------------------------------------------
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) if self.flatten else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        record = None
        if self.store_activity and self.growing_layers and torch.is_grad_enabled():
            record = _Recorded()
            producers = set(self.growing_layers)
            consumers = {i + 1 for i in self.growing_layers}
        last = len(self.layers) - 1
        for j, layer in enumerate(self.layers):
            if record is not None and (j in producers or j in consumers):
                record.inputs[j] = x.detach()
            pre = layer(x)
            if record is not None and j in consumers and pre.requires_grad:
                pre.register_hook(_saver(record.grads, j))
            x = self.activation(pre) if j < last else pre
        if record is not None:
            self._record = record
        return x

    # -- statistics ------------------------------------------------------------------------------
    def set_growing_layers(self, scheduling_method: str = "all", index: int | None = None) -> list[int]:
        """Choose the hidden layers that collect statistics and get proposals.

        ``index`` picks one layer; otherwise ``"all"`` (every hidden layer) or ``"sequential"``
        (one layer per call, round robin)."""
        if index is not None:
            if not 0 <= index < self.number_hidden_layers:
                raise ValueError(f"growing layer index must be in 0..{self.number_hidden_layers - 1}, got {index}")
            self.growing_layers = [index]
        elif scheduling_method == "all":
            self.growing_layers = list(range(self.number_hidden_layers))
        elif scheduling_method == "sequential":
            self.growing_layers = [self._sequential_next]
            self._sequential_next = (self._sequential_next + 1) % self.number_hidden_layers
        else:
            raise ValueError(f"scheduling_method must be 'all' or 'sequential', got {scheduling_method!r}")
        self._stats, self._record = {}, None
        return self.growing_layers

    def init_computation(self, initialization_method: str = "tiny") -> None:
        """Zero the statistics of the growing layers and start storing activity.

        With ``initialization_method`` "gradmax" or "random" only M2 is accumulated (all they need)."""
        if initialization_method not in ("tiny", "gradmax", "random"):
            raise ValueError(f"initialization_method must be 'tiny', 'gradmax' or 'random', got {initialization_method!r}")
        self._m2_only = initialization_method != "tiny"
        self.store_activity = True
        self._record = None
        self._stats = {i: self._new_statistics(i) for i in self.growing_layers}

    def _new_statistics(self, i: int) -> GrowthStatistics:
        producer, consumer = self.layers[i], self.layers[i + 1]
        extra = 1 if self.use_bias else 0
        return GrowthStatistics(r=producer.in_features + extra, p=consumer.in_features + extra,
                                q=consumer.out_features, device=producer.weight.device,
                                m2_only=self._m2_only)

    def update_computation(self, loss_reduction: str = "sum") -> None:
        """Add the last forward's batch to the statistics (once per forward).

        Call after ``loss.backward()``. With ``loss_reduction="sum"`` the gradients are the
        per-sample ones; with ``"mean"`` they are multiplied back by the batch size."""
        if loss_reduction not in ("sum", "mean"):
            raise ValueError(f"loss_reduction must be 'sum' or 'mean', got {loss_reduction!r}")
        record = self._record
        if record is None or record.updated:
            return
        for i in self.growing_layers:
            if (i + 1) not in record.grads:
                raise RuntimeError("no gradient stored for the last forward: call loss.backward() "
                                   "before update_computation()")
        for i in self.growing_layers:
            stats = self._stats.get(i)
            if stats is None:
                stats = self._stats[i] = self._new_statistics(i)
            g = record.grads[i + 1]
            if loss_reduction == "mean":
                g = g * g.shape[0]
            stats.update(with_ones(record.inputs[i], self.use_bias),
                         with_ones(record.inputs[i + 1], self.use_bias), g)
        record.updated = True
        self._record = None

    def reset_computation(self) -> None:
        """Drop the statistics and stop storing activity (the proposals are kept)."""
        self._stats, self._record = {}, None
        self._m2_only = False
        self.store_activity = False

    def statistics(self, index: int) -> GrowthStatistics:
        return self._stats[index]

    # -- proposals -------------------------------------------------------------------------------
    def compute_optimal_updates(self, maximum_added_neurons: int | None = None,
                                initialization_method: str = "tiny", statistical_threshold: float = 1e-3,
                                numerical_threshold: float = 1e-6, gradmax_scale: float | None = 0.5,
                                use_projection: bool | None = None, compute_delta: bool | None = None,
                                generator: torch.Generator | None = None,
                                whitening: str = "auto") -> dict[int, Proposal]:
        """Compute a :class:`Proposal` for each growing layer with statistics.

        initialization_method : ``"tiny"`` (Delta, projection, S2 metric, sqrt(lambda) split),
            ``"gradmax"`` (alpha = 0, omega = top right singular vectors of M2, norm rule with
            ``gradmax_scale``; None keeps unit columns) or ``"random"`` (alpha = 0, random unit
            outgoing directions scaled by the same norm rule; a baseline).
        use_projection, compute_delta : override the TINY defaults (both True).
        whitening : how TINY applies S2^{-1/2} (see :mod:`algorithms.growth.tiny`): "auto" /
            "cholesky" (fast q x q route when S2 is invertible, else eigh), "ridge", "eigh".
        Scalings start at 0 (a preview equals the current network) until set_scaling_factor."""
        if initialization_method not in ("tiny", "gradmax", "random"):
            raise ValueError(f"initialization_method must be 'tiny', 'gradmax' or 'random', got {initialization_method!r}")
        if not self._stats:
            raise RuntimeError("no statistics: run init_computation / forward / backward / update_computation first")
        self.delete_update()
        for i, stats in self._stats.items():
            self._proposals[i] = self._propose(i, stats, initialization_method, maximum_added_neurons,
                                               statistical_threshold, numerical_threshold, gradmax_scale,
                                               use_projection, compute_delta, generator, whitening)
        return dict(self._proposals)

    def _propose(self, i, stats, method, maximum_added_neurons, statistical_threshold,
                 numerical_threshold, gradmax_scale, use_projection, compute_delta, generator,
                 whitening) -> Proposal:
        M2 = stats.M2
        consumer_w = self.layers[i + 1].weight
        if method == "tiny":
            project = True if use_projection is None else use_projection
            apply_delta = True if compute_delta is None else compute_delta
            delta = d_delta = None
            if project or apply_delta:
                delta, d_delta = optimal_delta(stats.S, stats.M)
            N = projected_residual(M2, stats.P if project else None, delta)
            alpha, omega, lam = tiny_added_parameters(stats.S2, N, statistical_threshold,
                                                      maximum_added_neurons, numerical_threshold,
                                                      whitening=whitening, constant_inputs=stats.constant_inputs)
            proposal = Proposal(i, method, alpha, omega, lam, self.sigma_prime, m2=M2, n=N,
                                delta=delta if apply_delta else None,
                                d_delta=d_delta if apply_delta else 0.0,
                                first_order_exact=self.at_zero.smooth)
            self._warn_kink_once()
        else:
            if method == "gradmax":
                alpha, omega, lam = gradmax_added_parameters(M2, statistical_threshold, maximum_added_neurons)
            else:
                k = maximum_added_neurons or 1
                omega = torch.randn(consumer_w.shape[0], k, generator=generator, dtype=torch.float64,
                                    device="cpu" if generator is None else generator.device).to(M2.device)
                omega = omega / omega.norm(dim=0, keepdim=True)
                alpha = torch.zeros(k, M2.shape[0], dtype=torch.float64, device=M2.device)
                lam = (omega.T @ -M2.T).norm(dim=1)
            if gradmax_scale is not None:
                omega = gradmax_normalize(omega, consumer_w, gradmax_scale)
            proposal = Proposal(i, method, alpha, omega, lam, self.sigma_prime, m2=M2, n=-M2,
                                ignore_singular_values=True)
        # at alpha = 0 the new neurons see sigma'(0) exactly as autograd computes it
        proposal.gradient_norm_squared = (self.at_zero.derivative ** 2
                                          * float((proposal.omega.T @ M2.T).pow(2).sum()))
        return proposal

    def _warn_kink_once(self) -> None:
        if self.at_zero.smooth or self._warned_kink:
            return
        self._warned_kink = True
        a = self.at_zero
        warnings.warn(f"{type(self.activation).__name__} has a kink at 0 (sigma'(0-) = {a.left:.6g}, "
                      f"sigma'(0+) = {a.right:.6g}): TINY's first-order improvement uses sigma'(0+) and "
                      "is not exact to first order (proposal.first_order_exact is False); use a smooth "
                      "activation (tanh, gelu, silu, elu) for an exact prediction",
                      RuntimeWarning, stacklevel=4)

    @property
    def proposals(self) -> dict[int, Proposal]:
        return dict(self._proposals)

    def _selected(self) -> Proposal:
        if self.currently_updated_layer_index is not None:
            return self._proposals[self.currently_updated_layer_index]
        if len(self._proposals) == 1:
            return next(iter(self._proposals.values()))
        raise RuntimeError("no update selected: call select_best_update(), select_update(i) or dummy_select_update()"
                           if self._proposals else "no proposal: call compute_optimal_updates() first")

    def select_update(self, index: int) -> int:
        """Keep only the proposal of hidden layer ``index``."""
        if index not in self._proposals:
            raise ValueError(f"no proposal for layer {index}; proposals exist for {sorted(self._proposals)}")
        self._proposals = {index: self._proposals[index]}
        self.currently_updated_layer_index = index
        return index

    def select_best_update(self) -> int:
        """Keep the proposal with the largest first-order improvement (GradMax / random: the
        largest gradient norm of the new weights)."""
        if not self._proposals:
            raise RuntimeError("no proposal: call compute_optimal_updates() first")
        best = max(self._proposals, key=lambda i: self._proposals[i].selection_score())
        return self.select_update(best)

    def dummy_select_update(self) -> int:
        """Select the first growing layer's proposal (the reference's index 0)."""
        if not self._proposals:
            raise RuntimeError("no proposal: call compute_optimal_updates() first")
        return self.select_update(min(self._proposals))

    def delete_update(self) -> None:
        self._proposals = {}
        self.currently_updated_layer_index = None

    def set_scaling_factor(self, factor: float) -> None:
        """Legacy coupling on every pending proposal: gamma^2 on Delta, gamma on both extensions."""
        self.set_scalings(factor ** 2, factor, factor)

    def set_scalings(self, gamma_delta: float, gamma_in: float, gamma_out: float) -> None:
        """Decoupled scales: -gamma_delta Delta, gamma_in Omega (outgoing), gamma_out alpha (incoming)."""
        for p in self._proposals.values():
            p.gamma_delta, p.gamma_in, p.gamma_out = float(gamma_delta), float(gamma_in), float(gamma_out)

    @property
    def first_order_improvement(self) -> float:
        """D of the selected proposal (the best pending one if none is selected), kappa included."""
        if self.currently_updated_layer_index is None and len(self._proposals) > 1:
            return max(p.first_order_improvement for p in self._proposals.values())
        return self._selected().first_order_improvement

    # -- preview and commit ----------------------------------------------------------------------
    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        ref = self.layers[0].weight
        return t.to(device=ref.device, dtype=ref.dtype)

    def _split(self, t: torch.Tensor, bias: bool):
        return (t[:, :-1], t[:, -1]) if bias else (t, None)

    def extended_forward(self, x: torch.Tensor | None, index: int | None = None,
                         cached: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The output the network would have after ``apply_change()``, without committing.

        ``cached`` = :meth:`extension_inputs` of the same x and proposal: the layers up to the
        producer are then not run again (x may be None), and the output is the same, bit for bit."""
        if not self._proposals:
            return self.forward(x)
        p = self._proposals[index] if index is not None else self._selected()
        if cached is None:
            cached = self.extension_inputs(x, index)
        h, z = cached
        omega = self._cast(p.omega)
        ext = self.activation(p.gamma_out * z)
        x = h
        last = len(self.layers) - 1
        for j in range(p.index + 1, len(self.layers)):
            pre = self.layers[j](x)
            if j == p.index + 1:
                if p.delta is not None:
                    delta_w, delta_b = self._split(self._cast(p.delta), self.use_bias)
                    pre = pre - p.gamma_delta * (x @ delta_w.T + (delta_b if delta_b is not None else 0))
                pre = pre + p.gamma_in * (ext @ omega.T)
            x = self.activation(pre) if j < last else pre
        return x

    def extension_inputs(self, x: torch.Tensor, index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, z) of the selected (or ``index``) proposal on x: the producer layer's current output
        h (batch, width) and the new neurons' pre-activation z = alpha c (batch, k), before
        gamma_out. Neither depends on the scalings, so a line search over gamma passes them to
        :meth:`extended_forward` and pays the layers up to the producer once."""
        p = self._proposals[index] if index is not None else self._selected()
        x = self._prepare(x)
        for j in range(p.index):
            x = self.activation(self.layers[j](x))
        alpha_w, alpha_b = self._split(self._cast(p.alpha), self.use_bias)
        z = x @ alpha_w.T + (alpha_b if alpha_b is not None else 0)
        return self.activation(self.layers[p.index](x)), z

    @torch.no_grad()
    def apply_change(self) -> list[tuple[nn.Parameter, nn.Parameter, tuple]]:
        """Commit the selected proposal at its scalings; return the parameter replacements.

        W2 <- [W2 - gamma_delta Delta | gamma_in Omega],  W1 <- [W1 ; gamma_out alpha].
        Returns (old, new, index) triples for :func:`carry_optimizer_state`. The statistics are
        cleared (their shapes changed)."""
        p = self._selected()
        if p.gamma_in == 0.0:
            warnings.warn("committing new neurons with gamma_in = 0: their outgoing weights are zero",
                          RuntimeWarning, stacklevel=2)
        producer, consumer = self.layers[p.index], self.layers[p.index + 1]
        h, k = producer.out_features, p.n_neurons
        replacements = []
        w2 = consumer.weight.detach().clone()
        if p.delta is not None:
            delta_w, delta_b = self._split(self._cast(p.delta), self.use_bias)
            w2 -= p.gamma_delta * delta_w
            if delta_b is not None:
                consumer.bias.sub_(p.gamma_delta * delta_b)
        new_w2 = nn.Parameter(torch.cat([w2, p.gamma_in * self._cast(p.omega)], dim=1))
        replacements.append((consumer.weight, new_w2, (slice(None), slice(0, h))))
        consumer.weight, consumer.in_features = new_w2, h + k
        alpha_w, alpha_b = self._split(self._cast(p.alpha), self.use_bias)
        new_w1 = nn.Parameter(torch.cat([producer.weight.detach(), p.gamma_out * alpha_w], dim=0))
        replacements.append((producer.weight, new_w1, (slice(0, h), slice(None))))
        producer.weight, producer.out_features = new_w1, h + k
        if alpha_b is not None:
            new_b1 = nn.Parameter(torch.cat([producer.bias.detach(), p.gamma_out * alpha_b]))
            replacements.append((producer.bias, new_b1, (slice(0, h),)))
            producer.bias = new_b1
        self.delete_update()
        self._stats, self._record = {}, None
        return replacements


def _saver(store: dict, key: int):
    def hook(grad):
        store[key] = grad.detach()
    return hook
