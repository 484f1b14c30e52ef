"""Name -> object registries for algorithms, datasets and models.

Config files refer to everything by name (``algorithm="adamw"``, ``dataset="mnist"``); a registry
turns the name into the class or factory and answers an unknown name with the list of valid ones
and the closest match.
"""
from __future__ import annotations

import difflib


class ConfigError(ValueError):
    """A config, override or name the workbench cannot use; the message says how to fix it."""


def closest_hint(name: str, candidates) -> str:
    """' Did you mean X?' when a candidate is close to ``name``, else ''."""
    match = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""


class Registry(dict):
    """A dict of name -> object whose failed lookups explain themselves.

    >>> MODELS = Registry("model")
    >>> @MODELS.register("mlp")
    ... def build_mlp(...): ...
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str):
        def decorate(obj):
            if name in self and self[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = obj
            return obj

        return decorate

    def __missing__(self, name):
        valid = ", ".join(sorted(self)) or "(none registered)"
        raise ConfigError(
            f"unknown {self.kind} {name!r}.{closest_hint(name, self)} Valid {self.kind}s: {valid}"
        )

    def get(self, name, default=None):  # dict.get bypasses __missing__; keep that behaviour explicit
        return super().get(name, default)


ALGORITHMS = Registry("algorithm")
DATASETS = Registry("dataset")
MODELS = Registry("model")
# Family-specific plots: algorithm name -> fn(runs: list[dict], out_dir: Path) -> list[Path].
PLOTTERS = Registry("plotter")


def load_all() -> None:
    """Import every module that registers something (the registries fill on import): every family
    package under ``algorithms/`` (found, not listed: the framework knows no family), and the
    framework's own datasets and models."""
    import importlib
    import pkgutil

    import algorithms

    for family in pkgutil.iter_modules(algorithms.__path__):
        if family.ispkg and not family.name.startswith("_"):
            importlib.import_module(f"algorithms.{family.name}")
    import workbench.datasets  # noqa: F401
    import workbench.models  # noqa: F401
