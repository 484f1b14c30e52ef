"""Algorithm families. Importing this package registers every algorithm in
``workbench.registry.ALGORITHMS``; heavy optional dependencies (cvxpy) load only when used."""
from algorithms import optimizers  # noqa: F401
