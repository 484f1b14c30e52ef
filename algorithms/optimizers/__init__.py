"""Optimizers family: torch.optim-style optimizers usable in any training loop, and their registered
workbench algorithms (``sgd``, ``adamw``, ``persistent_sgd``, ``adema``, ...)."""
from algorithms.optimizers.adema import AdEMA
from algorithms.optimizers.persistent_sgd import PersistentSGD
from algorithms.optimizers.step_size import effective_step_size
from algorithms.optimizers import workbench_algorithms  # noqa: F401  registers the algorithms
from algorithms.optimizers.newton_summary import (NewtonSummary, compute_Hg, fullbatch_gradient,
                                                  nesterov_lrs, partition)
from algorithms.optimizers.newton_summary import workbench_algorithm  # noqa: F401  registers newton_summary, scaled_mlp
