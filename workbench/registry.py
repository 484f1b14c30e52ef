"""Name -> object registries for algorithms, datasets and models.

Config files refer to everything by name (``algorithm="adamw"``, ``dataset="mnist"``); a registry
turns the name into the class or factory and answers an unknown name with the list of valid ones
and the closest match.
"""
from __future__ import annotations

from pathlib import Path

from workbench.errors import ConfigError, closest_hint


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
# A family's own figures: algorithm name -> fn(runs: list[dict], out_dir: Path) -> list[Path];
# PLOTTERS are drawn by every plot.py, ANIMATIONS with --animate.
PLOTTERS = Registry("plotter")
ANIMATIONS = Registry("animation")

# What a config can name, by registry: the keys of a family's ``REGISTERS``.
_KINDS = {"algorithms": ALGORITHMS, "datasets": DATASETS, "models": MODELS}


def families() -> dict[str, dict]:
    """Every family package under ``algorithms/`` (found, not listed: the framework knows no family)
    with its manifest, the literal ``WORKBENCH_MODULES``, ``PLOT_MODULES`` and ``REGISTERS`` of its
    ``__init__.py``, read without importing anything of the family. name -> manifest."""
    import ast
    import pkgutil

    import algorithms

    found = {}
    for info in pkgutil.iter_modules(algorithms.__path__):
        if not info.ispkg or info.name.startswith("_"):
            continue
        init = Path(info.module_finder.path) / info.name / "__init__.py"
        manifest = {"WORKBENCH_MODULES": (), "PLOT_MODULES": (), "REGISTERS": {}}
        for node in ast.parse(init.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and getattr(node.targets[0], "id", None) in manifest:
                manifest[node.targets[0].id] = ast.literal_eval(node.value)
        found[info.name] = manifest
    return found


def _load_framework() -> None:
    import workbench.datasets  # noqa: F401  the framework's own datasets and models
    import workbench.models  # noqa: F401


def _load_family(name: str, manifest: dict, plots: bool) -> None:
    import importlib

    modules = tuple(manifest["WORKBENCH_MODULES"]) + (tuple(manifest["PLOT_MODULES"]) if plots else ())
    for module in modules:
        importlib.import_module(f"algorithms.{name}.{module}")


def load_all(plots: bool = False) -> None:
    """Fill the registries with every family (and, with ``plots``, every family's plotters)."""
    _load_framework()
    for name, manifest in families().items():
        _load_family(name, manifest, plots)


def load_for(names: dict[str, list[str]], plots: bool = False) -> None:
    """Load only the families that register one of ``names`` ({"algorithms": [...], "datasets":
    [...], "models": [...]}, as a config names them), from each family's ``REGISTERS``. A name no
    family declares loads every family, so that the error lists every valid name."""
    _load_framework()
    wanted = {kind: {n for n in names.get(kind, ()) if n not in registry}
              for kind, registry in _KINDS.items()}
    found = {kind: set() for kind in _KINDS}
    for name, manifest in families().items():
        declared = manifest["REGISTERS"]
        hits = {kind: wanted[kind] & set(declared.get(kind, ())) for kind in _KINDS}
        if any(hits.values()) or (plots and set(names.get("algorithms", ())) & set(declared.get("algorithms", ()))):
            _load_family(name, manifest, plots)
            for kind in _KINDS:
                found[kind] |= hits[kind]
    if any(wanted[kind] - found[kind] - set(_KINDS[kind]) for kind in _KINDS):
        load_all(plots)


def load_for_config(config) -> None:
    """Fill the registries with the families a config names (and the framework's own entries)."""
    load_for({"algorithms": [entry.get("algorithm") for entry in config["runs"]],
              "datasets": [config["dataset"]], "models": [config["model"]]})
