"""A proposed growth of one hidden layer: the update of existing weights and the new neurons."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Proposal:
    """Everything the growth of hidden layer ``index`` changes, in float64.

    Shapes (q = consumer outputs, p = consumer inputs incl. bias column, r = producer inputs incl.
    bias column, k = number of new neurons):

    * ``delta`` (q, p) or None: the consumer moves by -gamma_delta * Delta (last column: bias).
    * ``alpha`` (k, r): new incoming weights (last column: the new neurons' bias if the producer has one).
    * ``omega`` (q, k): new outgoing weights (the consumer's extension has no bias).
    * ``singular_values`` (k,): the lambda_i kept by the solver.

    The committed change at scalings (gamma_delta, gamma_in, gamma_out) is

    .. math:: a'(x) = W_2 b - \\gamma_\\delta \\Delta b + \\gamma_{in}\\, \\Omega\\, \\sigma(\\gamma_{out} \\alpha c)

    and, if sigma(0) = 0 and sigma is differentiable at 0 (``first_order_exact``), the mean loss
    changes to first order by minus
    ``gamma_delta * d_delta + gamma_in * gamma_out * new_neurons_improvement`` with
    ``new_neurons_improvement = sigma'(0) * (-tr(Omega alpha M2)) = sigma'(0) (lambda_term + kappa)``,
    ``lambda_term = tr(Omega alpha N)`` (= sum lambda_i^2 for TINY) and the cross term
    ``kappa = -tr(Omega alpha P Delta^T)``. At a kink (ReLU, SELU) the new neurons' inputs
    gamma_out alpha c take both signs and each sample sees one side of it; ``sigma_prime`` is then
    sigma'(0+) and the prediction is only an approximation (``first_order_exact`` False).
    """

    index: int
    method: str
    alpha: torch.Tensor
    omega: torch.Tensor
    singular_values: torch.Tensor
    sigma_prime: float
    m2: torch.Tensor = field(repr=False)  # (r, q) E[c g^T], kept for the predicted improvement
    n: torch.Tensor = field(repr=False)   # (r, q) the residual the neurons were fitted to
    delta: torch.Tensor | None = None
    d_delta: float = 0.0
    ignore_singular_values: bool = False
    gradient_norm_squared: float = 0.0  # GradMax objective ||d L / d alpha||_F^2 at alpha = 0
    first_order_exact: bool = True      # sigma differentiable at 0: the first-order terms are exact
    gamma_delta: float = 0.0
    gamma_in: float = 0.0
    gamma_out: float = 0.0

    @property
    def n_neurons(self) -> int:
        return self.alpha.shape[0]

    @property
    def lambda_term(self) -> float:
        return float(torch.trace(self.omega @ self.alpha @ self.n))

    @property
    def kappa(self) -> float:
        """Cross term -tr(Omega alpha P Delta^T) = tr(Omega alpha (-M2 - N))."""
        return float(torch.trace(self.omega @ self.alpha @ (-self.m2 - self.n)))

    @property
    def new_neurons_improvement(self) -> float:
        """sigma'(0) * (-tr(Omega alpha M2)): the new neurons' decrease per unit gamma_in * gamma_out."""
        return self.sigma_prime * float(-torch.trace(self.omega @ self.alpha @ self.m2))

    @property
    def first_order_improvement(self) -> float:
        """D: the loss decrease per gamma^2 with the coupling (gamma^2, gamma, gamma), kappa included.

        For GradMax (alpha = 0, no Delta) it is 0: the function is unchanged at insertion."""
        return (self.d_delta if self.delta is not None else 0.0) + self.new_neurons_improvement

    def predicted_decrease(self) -> float:
        """First-order loss decrease at the current scalings."""
        d = self.gamma_delta * self.d_delta if self.delta is not None else 0.0
        return d + self.gamma_in * self.gamma_out * self.new_neurons_improvement

    def selection_score(self) -> float:
        """What ``select_best_update`` maximises: D, or the gradient norm for function-preserving methods."""
        return self.gradient_norm_squared if self.method in ("gradmax", "random") else self.first_order_improvement

    def sub_select(self, keep_neurons: int) -> None:
        """Keep the first ``keep_neurons`` new neurons (the largest singular values)."""
        if not 0 < keep_neurons <= self.n_neurons:
            raise ValueError(f"keep_neurons must be in 1..{self.n_neurons}, got {keep_neurons}")
        self.alpha = self.alpha[:keep_neurons]
        self.omega = self.omega[:, :keep_neurons]
        self.singular_values = self.singular_values[:keep_neurons]

    def scale_extensions(self, s_in: float, s_out: float) -> None:
        """omega *= s_in, alpha *= s_out; the singular values follow (sqrt(s_in s_out), or
        s_in s_out with ``ignore_singular_values``) so that the predictions stay consistent."""
        self.omega = self.omega * s_in
        self.alpha = self.alpha * s_out
        factor = s_in * s_out if self.ignore_singular_values else abs(s_in * s_out) ** 0.5
        self.singular_values = self.singular_values * factor
