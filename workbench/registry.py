"""Name -> object registries for algorithms, datasets and models.

Config files refer to everything by name (``algorithm="adamw"``, ``dataset="mnist"``); a registry
turns the name into the class or factory and answers an unknown name with the list of valid ones
and the closest match.
"""
from __future__ import annotations

import functools
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
        # (handles(name) -> bool, resolve(name) -> object): names made on first lookup, not
        # registered (workbench.plugins: "torch.optim.NAME", "file.py:Class", ...)
        self.resolvers: list[tuple] = []

    def resolvable(self, name) -> bool:
        return isinstance(name, str) and any(handles(name) for handles, _ in self.resolvers)

    def register(self, name: str):
        def decorate(obj):
            if name in self and self[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = obj
            return obj

        return decorate

    def __missing__(self, name):
        for handles, resolve in self.resolvers:
            if isinstance(name, str) and handles(name):
                obj = resolve(name)
                if obj is not None:
                    self[name] = obj
                    return obj
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

# What a config can name, by registry: what a family's modules register.
_KINDS = {"algorithms": ALGORITHMS, "datasets": DATASETS, "models": MODELS}
# The decorators that register a name, by what they are called: ``@register_algorithm("sgd")``,
# ``@DATASETS.register("mnist")``, ``@MODELS.register("mlp")``.
_REGISTERING = {"register_algorithm": "algorithms", "ALGORITHMS": "algorithms", "DATASETS": "datasets",
                "MODELS": "models"}
FRAMEWORK = "workbench"  # the framework's own datasets and models, loaded like a family's
_FRAMEWORK_MODULES = ("datasets", "models")


@functools.lru_cache(maxsize=1)
def families() -> dict[str, dict]:
    """Every family package under ``algorithms/`` (found, not listed: the framework knows no family),
    and the framework's own entries, with their manifests: ``package``, the literal
    ``WORKBENCH_MODULES`` and ``PLOT_MODULES`` of the family's ``__init__.py``, and ``REGISTERS``,
    the names its workbench modules register (read off their decorators). Nothing of a family is
    imported; read once per process. name -> manifest."""
    import ast
    import pkgutil

    import algorithms

    found = {FRAMEWORK: _manifest(FRAMEWORK, Path(__file__).resolve().parent, _FRAMEWORK_MODULES, ())}
    for info in pkgutil.iter_modules(algorithms.__path__):
        if not info.ispkg or info.name.startswith("_"):
            continue
        folder = Path(info.module_finder.path) / info.name
        lists = {"WORKBENCH_MODULES": (), "PLOT_MODULES": ()}
        for node in ast.parse((folder / "__init__.py").read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and getattr(node.targets[0], "id", None) in lists:
                lists[node.targets[0].id] = ast.literal_eval(node.value)
        found[info.name] = _manifest(f"algorithms.{info.name}", folder, lists["WORKBENCH_MODULES"],
                                     lists["PLOT_MODULES"])
    return found


def _manifest(package: str, folder: Path, modules: tuple, plot_modules: tuple) -> dict:
    registers: dict[str, list[str]] = {kind: [] for kind in _KINDS}
    for module in modules:
        source = (folder / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")
        for kind, name in _registered_names(source):
            registers[kind].append(name)
    return {"package": package, "WORKBENCH_MODULES": tuple(modules), "PLOT_MODULES": tuple(plot_modules),
            "REGISTERS": {kind: tuple(names) for kind, names in registers.items()}}


def _registered_names(source: str):
    """(kind, name) of every ``register_algorithm("name")`` / ``KIND.register("name")``, as a
    decorator or called (``DATASETS.register("noise")(factory)``), with the name written out."""
    import ast

    for call in ast.walk(ast.parse(source)):
        if not (isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[0].value, str)):
            continue
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr == "register" and isinstance(func.value, ast.Name):
            caller = func.value.id
        elif isinstance(func, ast.Name):
            caller = func.id
        else:
            continue
        if caller in _REGISTERING:
            yield _REGISTERING[caller], call.args[0].value


def _load_family(manifest: dict, plots: bool) -> None:
    import importlib

    modules = tuple(manifest["WORKBENCH_MODULES"]) + (tuple(manifest["PLOT_MODULES"]) if plots else ())
    for module in modules:
        importlib.import_module(f"{manifest['package']}.{module}")


def load_all(plots: bool = False) -> None:
    """Fill the registries with every family (and, with ``plots``, every family's plotters)."""
    for manifest in families().values():
        _load_family(manifest, plots)


def load_for(names: dict[str, list[str]], plots: bool = False) -> None:
    """Load only the families that register one of ``names`` ({"algorithms": [...], "datasets":
    [...], "models": [...]}, as a config names them), from each family's ``REGISTERS``. A name no
    family declares loads every family, so that the error lists every valid name."""
    wanted = {kind: {n for n in names.get(kind, ()) if n not in registry and not registry.resolvable(n)}
              for kind, registry in _KINDS.items()}
    if not any(wanted.values()) and not plots:
        return
    found = {kind: set() for kind in _KINDS}
    for manifest in families().values():
        declared = manifest["REGISTERS"]
        hits = {kind: wanted[kind] & set(declared.get(kind, ())) for kind in _KINDS}
        if any(hits.values()) or (plots and set(names.get("algorithms", ())) & set(declared.get("algorithms", ()))):
            _load_family(manifest, plots)
            for kind in _KINDS:
                found[kind] |= hits[kind]
    if any(wanted[kind] - found[kind] - set(_KINDS[kind]) for kind in _KINDS):
        load_all(plots)


def load_for_config(config) -> None:
    """Fill the registries with the families a config names (and the framework's own entries)."""
    load_for({"algorithms": [entry.get("algorithm") for entry in config["runs"]],
              "datasets": [config["dataset"]], "models": [config["model"]]})
