"""Shallow (two-layer) ReLU networks: the model, data, initialisations and training algorithms.

Importing the package registers the ``two_layer_relu`` model, the family's datasets and algorithms.
cvxpy is imported only inside the convex solver's functions.
"""
from algorithms.shallow import data, init  # noqa: F401  (registers datasets and the model)
from algorithms.shallow.model import (TwoLayerReLU, add_bias, gradients, objective, patterns,  # noqa: F401
                                      predict, regulariser)
from algorithms.shallow.data import (linear, mnist_pair, noise, random_linear, sinus,  # noqa: F401
                                     teacher, teacher_network)
from algorithms.shallow.init import grid, normal, two_layer_relu  # noqa: F401

from algorithms.shallow import convex, indicators, relu_gd  # noqa: F401  (registers relu_convex, relu_gd)
from algorithms.shallow.convex import (ConvexReLUProblem, ConvexResult, ReLUConvex,  # noqa: F401
                                       all_patterns_1d, convex_objective, gate_patterns, pattern_set,
                                       recover, sample_gates, solve_convex, unique_patterns)
from algorithms.shallow.relu_gd import ReLUGD, make_optimizer  # noqa: F401

# -- issue 6 (Wasserstein prox / JKO) exports: appended below by its owner ---------------------
from algorithms.shallow.distances import frobenius, sliced_wasserstein2, wasserstein2  # noqa: F401,E402
from algorithms.shallow.prox import ProxPoint, ReluProx  # noqa: F401,E402  (registers relu_prox)
from algorithms.shallow.jko_prox import (QuadraticEnergy, make_prox, PROX_SOLVERS)  # noqa: F401,E402
from algorithms.shallow.jko import ReluJKO, jko_step, log_kernel, cost_matrix  # noqa: F401,E402  (relu_jko, relu_grid)
from algorithms.shallow import toy  # noqa: F401,E402  (particle_toy dataset and model)
