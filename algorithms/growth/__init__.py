"""Progressive growth of MLPs with TINY and GradMax (see ``shared/notes/growth_tiny_gradmax.md``).

Library API: :class:`GrowingMLP` with the reference's call sequence, the pure solvers
(:func:`optimal_delta`, :func:`tiny_added_parameters`, :func:`gradmax_added_parameters`), and
:func:`carry_optimizer_state` for continuing training after a growth. Importing the package imports
the library alone; the workbench loads :data:`WORKBENCH_MODULES` (the ``growth`` algorithm, the
``growing_mlp`` model, the ``student_teacher`` and ``multi_sin`` datasets) and :data:`PLOT_MODULES`.
"""
from algorithms.growth.activations import AtZero, ReLUDerivativeOneAtZero, at_zero, derivative_at_zero, make_activation
from algorithms.growth.gradmax import gradmax_added_parameters, gradmax_normalize
from algorithms.growth.growing_mlp import GrowingMLP
from algorithms.growth.linalg import optimal_delta, sqrt_inverse_psd
from algorithms.growth.optimizer_state import carry_optimizer_state
from algorithms.growth.proposal import Proposal
from algorithms.growth.statistics import GrowthStatistics
from algorithms.growth.tiny import orient_neurons, projected_residual, tiny_added_parameters

__all__ = [
    "AtZero", "GrowingMLP", "GrowthStatistics", "Proposal", "ReLUDerivativeOneAtZero", "at_zero",
    "carry_optimizer_state", "orient_neurons",
    "derivative_at_zero", "gradmax_added_parameters", "gradmax_normalize", "make_activation",
    "optimal_delta", "projected_residual", "sqrt_inverse_psd", "tiny_added_parameters",
]

# What the workbench loads for this family (the names it registers are read off their decorators).
WORKBENCH_MODULES = ("workbench_algorithm",)
PLOT_MODULES = ("plots",)
