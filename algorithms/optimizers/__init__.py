"""Optimizers family: torch.optim-style optimizers usable in any training loop (PersistentSGD, AdEMA,
NewtonSummary). Importing the package imports the library alone; the workbench loads
:data:`WORKBENCH_MODULES` (the registered algorithms ``sgd``, ``adamw``, ``persistent_sgd``,
``adema``, ``newton_summary`` and the ``scaled_mlp`` model) and :data:`PLOT_MODULES`."""
from algorithms.optimizers.adema import AdEMA  # noqa: F401
from algorithms.optimizers.persistent_sgd import PersistentSGD  # noqa: F401
from algorithms.optimizers.newton_summary import (NewtonSummary, compute_Hg, fullbatch_gradient,  # noqa: F401
                                                  nesterov_lrs, partition)

# What the workbench loads for this family, and the names it registers (a test keeps them true).
WORKBENCH_MODULES = ("workbench_algorithms", "newton_summary.workbench_algorithm")
PLOT_MODULES = ("plots",)
REGISTERS = {"algorithms": ("sgd", "adamw", "persistent_sgd", "adema", "newton_summary"),
             "datasets": (), "models": ("scaled_mlp",)}
