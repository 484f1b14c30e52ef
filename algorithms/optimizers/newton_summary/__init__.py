"""NewtonSummary (Wolinski 2023): per-subset learning rates from a summary of the loss's second and
third derivatives along a partition of the parameters.

Modules: :mod:`.partition` (canonical / trivial / wb), :mod:`.summaries` (``compute_Hg``),
:mod:`.cubic` (``nesterov_lrs``), :mod:`.optimizer` (``NewtonSummary``), :mod:`.fullbatch`
(``fullbatch_gradient``); the registered workbench algorithm ``newton_summary`` lives in
:mod:`.workbench_algorithm` and the ``scaled_mlp`` model in :mod:`.models`.
"""
from algorithms.optimizers.newton_summary import partition
from algorithms.optimizers.newton_summary.cubic import cubic_model, nesterov_lrs
from algorithms.optimizers.newton_summary.fullbatch import fullbatch_gradient
from algorithms.optimizers.newton_summary.optimizer import NewtonSummary
from algorithms.optimizers.newton_summary.summaries import compute_Hg, compute_Hg_reverse

__all__ = ["NewtonSummary", "partition", "compute_Hg", "compute_Hg_reverse", "nesterov_lrs",
           "cubic_model", "fullbatch_gradient"]
