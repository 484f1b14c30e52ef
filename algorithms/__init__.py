"""Algorithm families. Importing this package registers every algorithm (and the family's datasets,
models and plotters) in ``workbench.registry``; heavy optional dependencies such as cvxpy load only
when an algorithm that needs them runs."""
from algorithms import growth, optimizers, shallow  # noqa: F401
