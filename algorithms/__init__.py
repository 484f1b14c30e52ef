"""Algorithm families, one subpackage each. Importing a family registers its algorithms (and its
datasets, models and plotters) in ``workbench.registry``; importing this package imports no
family, so ``import algorithms.optimizers`` loads the optimizers alone.
:func:`workbench.registry.load_all` imports every family found here."""
