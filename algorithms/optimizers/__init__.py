"""Optimizers family: torch.optim-style optimizers usable in any training loop (PersistentSGD, AdEMA,
NewtonSummary). Importing the package imports the library alone; the workbench loads
:data:`WORKBENCH_MODULES` (the registered algorithms ``sgd``, ``adamw``, ``persistent_sgd``,
``adema``, ``newton_summary`` and the ``scaled_mlp`` model) and :data:`PLOT_MODULES`."""
from algorithms.optimizers.adema import AdEMA  # noqa: F401
from algorithms.optimizers.persistent_sgd import PersistentSGD  # noqa: F401
from algorithms.optimizers.newton_summary import (NewtonSummary, compute_Hg, fullbatch_gradient,  # noqa: F401
                                                  nesterov_lrs, partition)

# What the workbench loads for this family (the names it registers are read off their decorators).
WORKBENCH_MODULES = ("workbench_algorithms", "newton_summary.workbench_algorithm")
PLOT_MODULES = ("plots",)
