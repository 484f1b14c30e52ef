r"""Proximal point (Wasserstein / Frobenius) steps on the first layer of a two-layer ReLU network.

One outer step, with ``dist`` one of :mod:`algorithms.shallow.distances` (all normalised as
(1/m) x sum of squared displacements under the coupling, split by output sign):

.. math::  W_{t+1} \approx \operatorname*{argmin}_V\; F(V) + \frac{1}{2\gamma}\,\mathrm{dist}(V, W_t)

solved by ``inner_steps`` steps of a torch optimizer on V, warm-started at :math:`W_t`. The output
weights ``a`` stay fixed (they only define the sign split), as in the reference.

Small-gamma limit: the optimality condition of the Frobenius prox is
:math:`V = W_t - \gamma m \nabla F(V)`, an implicit Euler step of gradient flow with learning rate
:math:`\eta = \gamma m`; W2 gives the same V as long as no particles cross. The sliced prox moves
like the W2 prox with :math:`D\gamma` for small isotropic moves (D = particle dimension).

W2 inner steps use a subgradient: the optimal assignment between the current V and the fixed
:math:`W_t` is re-solved every ``assignment_every`` inner steps and the cost is differentiated
through it, so a warm-started inner descent is a *local* solver of the (nonconvex) prox problem:
it follows the assignment as particles cross (two-particle toy of the notes), while the global
minimiser may be a different permutation.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from algorithms.shallow.distances import DISTANCES, optimal_assignment, random_projections

__all__ = ["ProxPoint"]


class ProxPoint:
    r"""Outer proximal-point steps on a parameter ``V`` (m, D), each solved by an inner optimizer.

    Parameters
    ----------
    V : torch.nn.Parameter (m, D)
        The particles; updated in place (it is the warm start of every inner solve).
    objective : callable () -> 0-d tensor
        F evaluated at the current value of ``V`` (autograd must reach ``V``).
    signs : (m,) tensor or None
        Output weights or their signs, for the sign split of the W2 / sliced distances.
    distance : "frobenius" | "wasserstein2" | "sliced_wasserstein2"
    gamma : float > 0
        Prox parameter of ``F(V) + dist(V, W_t) / (2 gamma)``.
    inner_steps : int >= 1
        Maximum number of inner optimizer steps per outer step.
    inner_optimizer : a ``torch.optim.Optimizer`` class (default Adam), built as
        ``inner_optimizer([V], lr=inner_lr, **inner_optimizer_args)``; inner_lr > 0
    inner_lr_decay : float in (0, 1]
        Multiply the inner lr by this whenever the inner prox objective did not decrease.
    inner_tol : float >= 0
        Stop the inner loop once the gradient norm of the prox objective is <= inner_tol
        (0: always run ``inner_steps``; a positive value costs one host sync per inner step).
    reset_inner_state : bool
        True: each outer step starts with fresh optimizer state (moments) and lr = inner_lr.
        False: optimizer state and the decayed lr carry over from one outer step to the next.
    n_projections : int
        Directions of the sliced distance, drawn once per outer step from ``generator``.
    assignment_every : int >= 1
        Inner steps between re-solves of the W2 assignment (1: every step, an exact subgradient).
    """

    def __init__(self, V: torch.nn.Parameter, objective: Callable[[], torch.Tensor], *, signs=None,
                 distance: str = "frobenius", gamma: float = 0.1, inner_steps: int = 100,
                 inner_optimizer: type = torch.optim.Adam, inner_lr: float = 1e-2,
                 inner_optimizer_args: dict | None = None,
                 inner_lr_decay: float = 1.0, inner_tol: float = 0.0, reset_inner_state: bool = True,
                 n_projections: int = 128, assignment_every: int = 1,
                 generator: torch.Generator | None = None):
        if distance not in DISTANCES:
            raise ValueError(f"unknown distance {distance!r}; valid: {', '.join(DISTANCES)}")
        if not (isinstance(inner_optimizer, type) and issubclass(inner_optimizer, torch.optim.Optimizer)):
            raise ValueError(f"inner_optimizer must be a torch.optim.Optimizer class, got {inner_optimizer!r}")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        if int(inner_steps) < 1:
            raise ValueError(f"inner_steps must be >= 1, got {inner_steps}")
        if not inner_lr > 0:
            raise ValueError(f"inner_lr must be > 0, got {inner_lr}")
        if not 0.0 < inner_lr_decay <= 1.0:
            raise ValueError(f"inner_lr_decay must be in (0, 1], got {inner_lr_decay}")
        if inner_tol < 0:
            raise ValueError(f"inner_tol must be >= 0, got {inner_tol}")
        if int(n_projections) < 1 or int(assignment_every) < 1:
            raise ValueError("n_projections and assignment_every must be >= 1")
        if V.dim() != 2:
            raise ValueError(f"V must be an (m, D) parameter, got shape {tuple(V.shape)}")
        self.V, self.objective, self.signs = V, objective, signs
        self.distance, self.gamma = distance, float(gamma)
        self.inner_steps, self.inner_lr = int(inner_steps), float(inner_lr)
        self.inner_lr_decay, self.inner_tol = float(inner_lr_decay), float(inner_tol)
        self.reset_inner_state = bool(reset_inner_state)
        self.n_projections, self.assignment_every = int(n_projections), int(assignment_every)
        self.generator = generator
        self.optimizer = inner_optimizer([V], lr=self.inner_lr, **(inner_optimizer_args or {}))

    def _distance(self, W_prev, projections, assignment):
        if self.distance == "frobenius":
            return DISTANCES["frobenius"](self.V, W_prev)
        if self.distance == "wasserstein2":
            return DISTANCES["wasserstein2"](self.V, W_prev, self.signs, assignment=assignment)
        return DISTANCES["sliced_wasserstein2"](self.V, W_prev, self.signs, projections=projections)

    def step(self) -> dict[str, Any]:
        """One outer step. Returns the final ``objective``, ``distance``, ``prox_objective``,
        ``grad_norm`` (0-d tensors), ``inner_steps`` (int) and the inner ``history``: numpy arrays
        ``objective``, ``distance``, ``lr`` with one entry per inner step plus the final point."""
        V = self.V
        W_prev = V.detach().clone()
        projections = None
        if self.distance == "sliced_wasserstein2":
            projections = random_projections(self.n_projections, V.shape[1], self.generator,
                                             V.dtype, "cpu").to(V.device)
        if self.reset_inner_state:
            self.optimizer.state.clear()
            for group in self.optimizer.param_groups:
                group["lr"] = self.inner_lr
        group = self.optimizer.param_groups[0]
        objs, dists, lrs = [], [], []
        assignment, previous_total, grad_norm, done = None, math.inf, None, 0
        for k in range(self.inner_steps + 1):
            self.optimizer.zero_grad(set_to_none=True)
            if self.distance == "wasserstein2" and (k % self.assignment_every == 0 or k == self.inner_steps):
                assignment = optimal_assignment(V, W_prev, self.signs)
            F = self.objective()
            D = self._distance(W_prev, projections, assignment)
            total = F + D / (2.0 * self.gamma)
            objs.append(F.detach())
            dists.append(D.detach())
            lrs.append(group["lr"])
            total.backward()
            grad_norm = V.grad.norm()
            if k == self.inner_steps:
                break  # the last pass only measures the final point
            if self.inner_tol > 0 and grad_norm.item() <= self.inner_tol:
                break
            if self.inner_lr_decay < 1.0:
                value = total.item()
                if value >= previous_total:
                    for g in self.optimizer.param_groups:
                        g["lr"] *= self.inner_lr_decay
                previous_total = value
            self.optimizer.step()
            done += 1
        self.optimizer.zero_grad(set_to_none=True)
        history = {
            "objective": torch.stack(objs).cpu().numpy(),
            "distance": torch.stack(dists).cpu().numpy(),
            "lr": np.asarray(lrs, dtype=np.float64),
        }
        return {"objective": objs[-1], "distance": dists[-1], "prox_objective": objs[-1] + dists[-1] / (2 * self.gamma),
                "grad_norm": grad_norm.detach(), "inner_steps": done, "history": history}

    def state_dict(self) -> dict[str, Any]:
        state = {"optimizer": self.optimizer.state_dict()}
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])
