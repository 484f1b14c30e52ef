"""Names a config may use without registering anything: any torch optimizer, any torchvision model,
and a user's own optimizer or model class in a Python file.

    algorithm = "torch.optim.RMSprop"        # any torch.optim.Optimizer; its keyword arguments
                                             # (lr, alpha, momentum, ...) are the entry's parameters
    algorithm = "lion.py:Lion"               # a torch.optim.Optimizer subclass in a file
    model = "torchvision.resnet18"           # torchvision.models.get_model(..., num_classes=n)
    model = "nets.py:WideNet"                # an nn.Module subclass in a file, built from model_args

Resolved on first lookup (``ALGORITHMS[name]``, ``MODELS[name]``), in every process that trains, so
worker processes, Ray tasks and ``--resume`` load them the same way. An optimizer's parameters come
from its constructor's signature (a parameter without a default must be given), are checked by
building it once, and get the ``schedule`` parameter of every optimizer algorithm. A file path is
relative to the config file, else to the app folder (``load_config`` makes it absolute); the run
folder keeps a copy of the file and its SHA-256 (:func:`keep_copies`), and the record runs from
the copy. Loading a file runs its code, as running a config does: ``--resume`` of a record runs the
copy in its folder.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
import shutil
import sys
from pathlib import Path

import torch

from workbench.algorithm import OptimizerAlgorithm
from workbench.errors import ConfigError
from workbench.params import Param
from workbench.registry import ALGORITHMS, MODELS

TORCH_OPTIM = "torch.optim."
TORCHVISION = "torchvision."
_FILE_SPEC = re.compile(r"^(?P<path>.+\.py):(?P<name>[A-Za-z_]\w*)$")
_REQUIRED = "<required>"


def is_file_spec(name) -> bool:
    return isinstance(name, str) and _FILE_SPEC.match(name) is not None


def display_name(name: str) -> str:
    """A plugin's short name for labels: ``Lion`` for ``/path/lion.py:Lion``."""
    match = _FILE_SPEC.match(name) if isinstance(name, str) else None
    return match["name"] if match else name


def load_class(spec: str):
    """The class ``NAME`` of ``path.py:NAME`` (the file imported once per process and content)."""
    match = _FILE_SPEC.match(spec)
    path = Path(match["path"])
    if not path.is_file():
        raise ConfigError(f"{spec}: the file {path} does not exist (a relative path is relative to the config file, "
                          f"else to the app folder)")
    source = path.read_bytes()
    module_name = f"workbench_plugin_{hashlib.sha256(source).hexdigest()[:16]}"
    module = sys.modules.get(module_name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001  the user's file
            del sys.modules[module_name]
            raise ConfigError(f"{spec}: importing {path} failed: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, match["name"], None)
    if cls is None:
        names = [n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == module_name]
        raise ConfigError(f"{spec}: {path} has no class {match['name']!r}; its classes: {', '.join(names) or '(none)'}")
    return cls


def optimizer_algorithm(name: str, optimizer_class: type) -> type[OptimizerAlgorithm]:
    """An algorithm that trains with ``optimizer_class``; its parameters are the constructor's."""
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, torch.optim.Optimizer)):
        raise ConfigError(f"algorithm {name!r}: {optimizer_class!r} is not a torch.optim.Optimizer subclass")
    signature = inspect.signature(optimizer_class.__init__)
    accepted = [p for p in list(signature.parameters.values())[2:]  # self, params
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    params = {p.name: Param(_REQUIRED if p.default is p.empty else p.default,
                            f"{optimizer_class.__name__}'s {p.name}" + (" (required)" if p.default is p.empty else ""),
                            _required if p.default is p.empty else None)
              for p in accepted}

    class PluginOptimizer(OptimizerAlgorithm):
        PARAMS = params
        __doc__ = f"{optimizer_class.__module__}.{optimizer_class.__qualname__} (its constructor's arguments)"

        @classmethod
        def build_optimizer(cls, parameters, **kwargs):
            return optimizer_class(parameters, **kwargs)

    PluginOptimizer.__name__ = PluginOptimizer.__qualname__ = f"Plugin_{optimizer_class.__name__}"
    PluginOptimizer.registered_name = name
    return PluginOptimizer


def _required(value) -> str | None:
    return "must be given (the optimizer has no default for it)" if value == _REQUIRED else None


def resolve_algorithm(name: str):
    if name.startswith(TORCH_OPTIM):
        cls = getattr(torch.optim, name[len(TORCH_OPTIM):], None)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)) or cls is torch.optim.Optimizer:
            valid = sorted(k for k in dir(torch.optim) if isinstance(getattr(torch.optim, k), type)
                           and issubclass(getattr(torch.optim, k), torch.optim.Optimizer) and k != "Optimizer")
            raise ConfigError(f"unknown algorithm {name!r}: torch.optim has no optimizer "
                              f"{name[len(TORCH_OPTIM):]!r}; valid: {', '.join(TORCH_OPTIM + k for k in valid)}")
        return optimizer_algorithm(name, cls)
    if is_file_spec(name):
        return optimizer_algorithm(name, load_class(name))
    return None


def resolve_model(name: str):
    if name.startswith(TORCHVISION):
        import torchvision

        model_name = name[len(TORCHVISION):]
        if model_name not in torchvision.models.list_models():
            raise ConfigError(f"unknown model {name!r}: torchvision has no model {model_name!r}; e.g. "
                              f"{', '.join(TORCHVISION + m for m in sorted(torchvision.models.list_models())[:8])}, ...")

        def build(input_shape, n_outputs, **model_args):
            """torchvision.models.get_model(NAME, weights=None, num_classes=n, **model_args)."""
            return torchvision.models.get_model(model_name, weights=None, num_classes=n_outputs, **model_args)
        return build
    if is_file_spec(name):
        cls = load_class(name)
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
            raise ConfigError(f"model {name!r}: {cls!r} is not a torch.nn.Module subclass")
        takes = inspect.signature(cls.__init__).parameters

        def build(input_shape, n_outputs, **model_args):
            """A user's model: ``cls(**model_args)``, plus input_shape / n_outputs if it takes them."""
            extra = {k: v for k, v in (("input_shape", tuple(input_shape)), ("n_outputs", n_outputs)) if k in takes}
            return cls(**extra, **model_args)
        build.__wrapped__ = cls
        return build
    return None


ALGORITHMS.resolvers.append((lambda n: n.startswith(TORCH_OPTIM) or is_file_spec(n), resolve_algorithm))
MODELS.resolvers.append((lambda n: n.startswith(TORCHVISION) or is_file_spec(n), resolve_model))


def plugin_files(config) -> list[str]:
    """The file specs (``path.py:Name``) a config's algorithms and model name."""
    names = [entry.get("algorithm") for entry in config["runs"]] + [config["model"]]
    return list(dict.fromkeys(n for n in names if is_file_spec(n)))


def keep_copies(config, run_dir: Path) -> tuple[dict, list[dict]]:
    """Copy every plugin file into ``run_dir/plugins/`` and return (the config's values with the
    specs pointing at the copies, what the record says: original path, copy, SHA-256)."""
    copies, kept = {}, []
    for spec in plugin_files(config):
        match = _FILE_SPEC.match(spec)
        source = Path(match["path"])
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        target = Path(run_dir) / "plugins" / f"{source.stem}_{digest[:12]}.py"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(source, target)
        copies[spec] = f"{target.resolve()}:{match['name']}"
        kept.append({"spec": spec, "copy": str(target.relative_to(run_dir)), "sha256": digest})
    if not copies:
        return config, []
    runs = [{**e, "algorithm": copies.get(e.get("algorithm"), e.get("algorithm"))} for e in config["runs"]]
    return config.replace(runs=runs, model=copies.get(config["model"], config["model"])), kept
