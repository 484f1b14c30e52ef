"""Shallow (two-layer) ReLU networks: the model, data, initialisations, the convex reformulation,
Wasserstein proximal point and JKO steps.

Importing the package imports the library alone (no workbench, no registry; cvxpy only inside the
convex solver's functions). The workbench loads :data:`WORKBENCH_MODULES`, which register the
family's algorithms, datasets and models (the workbench reads their names off the decorators), and,
for ``plot.py``, :data:`PLOT_MODULES`.
"""
from algorithms.shallow.model import (TwoLayerReLU, add_bias, gradients, objective, patterns,  # noqa: F401
                                      predict, regulariser, value_and_gradients)
from algorithms.shallow.data import (linear, mnist_pair, noise, random_linear, sinus,  # noqa: F401
                                     teacher, teacher_network)
from algorithms.shallow.init import grid, normal  # noqa: F401
from algorithms.shallow.convex import (ConvexReLUProblem, ConvexResult, all_patterns_1d,  # noqa: F401
                                       convex_objective, gate_patterns, pattern_set, recover, sample_gates,
                                       solve_convex, unique_patterns)
from algorithms.shallow.distances import frobenius, sliced_wasserstein2, wasserstein2  # noqa: F401
from algorithms.shallow.prox import ProxPoint  # noqa: F401
from algorithms.shallow.relu_gd import gd_step  # noqa: F401
from algorithms.shallow.jko_prox import PROX_SOLVERS, QuadraticEnergy, make_prox  # noqa: F401
from algorithms.shallow.jko import cost_matrix, jko_step, log_kernel  # noqa: F401

# What the workbench loads for this family (only when a config names one of the names its modules
# register, read off their decorators).
WORKBENCH_MODULES = ("workbench_data", "workbench_algorithms")
PLOT_MODULES = ("plots", "plots_wasserstein")
