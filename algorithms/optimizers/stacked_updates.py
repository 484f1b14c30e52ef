"""The stacked updates of the family's optimizers (``stack = True``, :mod:`workbench.stacking`):
M members' PersistentSGD or AdEMA steps at once on ``[M, *S]`` parameters, each member with its own
hyperparameters (``[M, 1, ..., 1]`` columns), in the optimizer's own state format."""
from __future__ import annotations

import torch

from algorithms.optimizers.adema import AdEMA
from algorithms.optimizers.persistent_sgd import PersistentSGD
from workbench.stacking import StackedUpdate, stacked_update


@stacked_update(PersistentSGD)
class StackedPersistentSGD(StackedUpdate):
    r""":math:`b \leftarrow \text{decay}\, b + g`, :math:`p \leftarrow p - \text{lr}\, b` (:math:`b_0 = 0`)."""

    hyperparameters = ("lr", "decay")
    state_keys = (PersistentSGD.buffer_name,)

    def init_state(self, p):
        return {PersistentSGD.buffer_name: torch.zeros_like(p)}

    def update(self, p, g, state):
        buf = state[PersistentSGD.buffer_name]
        buf.mul_(self.value("decay", p)).add_(g)
        p.sub_(self.value("lr", p) * buf)


@stacked_update(AdEMA)
class StackedAdEMA(StackedUpdate):
    r""":math:`m \leftarrow \beta m + (1-\beta) g`, :math:`p \leftarrow p - \text{lr}(1-\text{decay})\, m`
    (:math:`m_0 = 0`)."""

    hyperparameters = ("lr", "beta", "decay")
    state_keys = (AdEMA.buffer_name,)

    def init_state(self, p):
        return {AdEMA.buffer_name: torch.zeros_like(p)}

    def update(self, p, g, state):
        m = state[AdEMA.buffer_name]
        beta = self.value("beta", p)
        m.mul_(beta).add_((1 - beta) * g)
        p.sub_((self.value("lr", p) * (1 - self.value("decay", p))) * m)
