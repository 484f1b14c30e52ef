"""Config files: plain Python files of module-level assignments, plus ``key=value`` overrides.

A config file is run with :func:`runpy.run_path` in a fresh namespace (UTF-8, never exec'd into our
globals); modules, functions and ``_private`` names are dropped; every remaining name must be one of
:data:`DEFAULTS`. Overrides from the command line are parsed with :func:`ast.literal_eval` (falling
back to a plain string) and type-checked against the default. Unknown names suggest the closest one.
"""
from __future__ import annotations

import ast
import copy
import runpy
import traceback
import types
from pathlib import Path
from typing import Any

from workbench.registry import ConfigError, closest_hint

# Every name a config understands, with its default and what it means.
DEFAULTS: dict[str, Any] = {
    "name": "experiment",        # run folder suffix; defaults to the config file's stem
    "dataset": "mnist",          # a registered dataset (python main.py --list)
    "dataset_args": {},          # keyword arguments of the dataset (n, d, seed, ... for generators)
    "data_dir": "data",          # where fetched datasets live (a relative path is relative to the app folder)
    "subset": None,              # use only the first N training examples
    "model": "mlp",              # a registered model
    "model_args": {},            # keyword arguments of the model (hidden=[256], activation="relu", ...)
    "batch_size": 64,            # None: full batch
    "epochs": 1,                 # passes over the training set (None: no epoch limit)
    "max_steps": None,           # stop after this many steps
    "max_time": None,            # stop a run after this many seconds
    "target": None,              # stop a run once target_metric reaches this value
    "target_metric": "test_acc",  # test_acc / *_acc stop at >= target, losses at <= target
    "seeds": [0],                # one run of every entry of `runs` per seed
    "device": "auto",            # auto | cpu | cuda | cuda:N
    "threads": 1,                # CPU threads for torch per run (None: torch's default, all cores); see README
    "flush_denormal": True,      # CPU arithmetic flushes subnormal floats to zero (x86 computes them ~100x slower); see README
    "dtype": "float32",          # float32 | float64
    "runs": [],                  # list of dict(algorithm=..., label=..., **parameters)
    "log_every": 50,             # steps between training-loss rows (mean over the steps since the last row)
    "eval_every": None,          # steps between test evaluations (None: at each epoch end)
    "snapshot_every": 0,         # steps between algorithm snapshots (0: only at start and end)
    "save_every": 60.0,          # seconds between checkpoints of a run (each writes history.pkl first)
    "checkpoint": True,          # keep resumable checkpoints (model, optimizer, RNG states) in the run folder
    "out_dir": "results",        # parent folder of the run folders (relative to the app folder)
    "progress": True,            # tqdm progress bars
    "workers": "auto",           # runs training at the same time: "auto" (one per run up to CPU cores / threads; 1 run: in this process), 1 (in this process) or N
    "executor": "local",         # local (worker processes on this machine) | ray (one Ray task per run)
    "ray_address": None,         # executor="ray": None starts a local Ray; "auto" / "ray://host:port" joins a cluster
    "run_resources": {},         # what one run asks Ray for, e.g. dict(num_cpus=1, num_gpus=0.25)
}

# Names whose value is not of the default's type: the accepted types.
_TYPES = {"workers": (int, str), "ray_address": (str,)}

DTYPES = ("float32", "float64")
APP_FOLDER = Path(__file__).resolve().parent.parent


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Resolved config: defaults, then the file's names, then ``key=value`` overrides.

    Raises ConfigError naming the problem (unknown name with the closest known one, a value of
    the wrong type, a malformed override).
    """
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(_missing_file_message(path))
        config["name"] = path.stem
        try:
            namespace = runpy.run_path(str(path), run_name="__config__")
        except Exception as exc:  # noqa: BLE001  any error of the user's file
            raise ConfigError(f"config file {path} failed to run: {_where_in(path, exc)}{type(exc).__name__}: "
                              f"{exc} (a config is a file of plain Python assignments)") from None
        for key, value in namespace.items():
            if key.startswith("_") or isinstance(value, (types.ModuleType, types.FunctionType, type)):
                continue
            _check_name(key, path)
            config[key] = coerce(key, value, source=str(path))
    for arg in overrides:
        key, sep, raw = arg.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"override {arg!r} is not of the form key=value (e.g. epochs=3)")
        _check_name(key, "the command line")
        config[key] = coerce(key, parse_value(raw), source="the command line")
    validate(config)
    return config


def parse_value(raw: str) -> Any:
    """``ast.literal_eval`` of ``raw``, or ``raw`` itself when it is not a Python literal."""
    try:
        return ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        return raw


def validate(config: dict[str, Any]) -> None:
    """Checks that need more than a type: numbers in range, a usable ``runs`` list."""
    if config["dtype"] not in DTYPES:
        raise ConfigError(f"dtype must be one of {DTYPES}, got {config['dtype']!r}")
    for key in ("epochs", "max_steps", "batch_size", "subset", "log_every", "eval_every", "threads"):
        value = config[key]
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise ConfigError(f"{key} must be a positive integer or None, got {value!r}")
    for key in ("max_time", "save_every"):
        if config[key] is not None and config[key] <= 0:
            raise ConfigError(f"{key} must be positive (seconds), got {config[key]!r}")
    if config["snapshot_every"] < 0:
        raise ConfigError(f"snapshot_every must be >= 0, got {config['snapshot_every']!r}")
    if not config["seeds"] or not all(isinstance(s, int) and not isinstance(s, bool) for s in config["seeds"]):
        raise ConfigError(f"seeds must be a non-empty list of integers, got {config['seeds']!r}")
    repeated = sorted({s for s in config["seeds"] if config["seeds"].count(s) > 1})
    if repeated:
        raise ConfigError(f"seeds {config['seeds']!r} repeat {repeated}: a repeated seed trains the same run twice "
                          f"and makes the spread over seeds look smaller; give distinct seeds")
    if config["epochs"] is None and config["max_steps"] is None and config["max_time"] is None:
        raise ConfigError("nothing would stop the runs: set epochs, max_steps or max_time")
    if not config["runs"]:
        raise ConfigError("`runs` is empty: add at least one dict(algorithm=...) entry")
    validate_execution(config)
    for i, run in enumerate(config["runs"]):
        if not isinstance(run, dict) or "algorithm" not in run:
            raise ConfigError(f"runs[{i}] must be a dict with an 'algorithm' key, got {run!r}")


def validate_execution(config: dict[str, Any]) -> None:
    """``workers``, ``executor``, ``ray_address`` and ``run_resources``."""
    from workbench.executors import EXECUTORS

    workers = config["workers"]
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be a positive integer (1: in this process) or \"auto\" (CPU cores / "
                          f"threads per run), got {workers!r}")
    if config["executor"] not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(map(repr, EXECUTORS))}, got {config['executor']!r}"
                          f"{closest_hint(config['executor'], EXECUTORS)}")
    resources = config["run_resources"]
    if not all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
               for k, v in resources.items()):
        raise ConfigError(f"run_resources must map Ray resource names to numbers >= 0, e.g. "
                          f"dict(num_cpus=1, num_gpus=0.25); got {resources!r}")


def _check_name(key: str, where) -> None:
    if key in DEFAULTS:
        return
    hint = closest_hint(key, DEFAULTS)
    if key in _algorithm_parameters():
        raise ConfigError(
            f"{key!r} (in {where}) is a parameter of an algorithm, and algorithm parameters live inside `runs`, "
            f"one dict per run: in the config file runs=[dict(algorithm=\"sgd\", {key}=...)], on the command "
            f"line 'runs=[{{\"algorithm\": \"sgd\", \"{key}\": ...}}]'")
    raise ConfigError(f"unknown config name {key!r} in {where}.{hint} Known names: {', '.join(DEFAULTS)}")


def _algorithm_parameters() -> set[str]:
    from workbench.registry import ALGORITHMS, load_all

    load_all()
    return {name for cls in ALGORITHMS.values() for name in getattr(cls, "defaults", {})}


def _where_in(path: Path, exc: BaseException) -> str:
    """'line N: ' of the config file where ``exc`` was raised (or its syntax error lies)."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"line {exc.lineno}: "
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == path.resolve()]
    return f"line {frames[-1].lineno} ({frames[-1].line}): " if frames else ""


def app_path(path: str | Path) -> Path:
    """A config path (``data_dir``, ``out_dir``): relative ones are relative to the app folder,
    not to the working directory."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else APP_FOLDER / path


def coerce(key: str, value: Any, source: str) -> Any:
    """``value`` checked against the type of the default of ``key`` (an int may stand for a float,
    a bool never stands for a number, None is allowed where the default is None or optional)."""
    default = DEFAULTS[key]
    if value is None:
        if key in ("name", "dataset", "model", "device", "dtype", "runs", "seeds", "out_dir", "data_dir"):
            raise ConfigError(f"{key} cannot be None (in {source})")
        return None
    if key == "seeds" and isinstance(value, int) and not isinstance(value, bool):
        raise ConfigError(f"seeds must be a list of seeds (in {source}), got the number {value}: "
                          f"seeds=[{value}] runs seed {value}, seeds=list(range({value})) runs {value} seeds")
    if key in ("runs",) and isinstance(value, dict):
        return [value]
    if key in _TYPES:
        expected = _TYPES[key]
    elif default is None:  # optional numeric settings
        expected = (int, float) if key in ("max_time", "target") else (int,)
    elif isinstance(default, bool):
        expected = (bool,)
    elif isinstance(default, float):
        expected = (int, float)
    elif isinstance(default, (list, tuple)):
        expected = (list, tuple)
    else:
        expected = (type(default),)
    if key == "batch_size":
        expected = (int,)
    ok = isinstance(value, expected) and not (isinstance(value, bool) and bool not in expected)
    if not ok:
        names = " or ".join(t.__name__ for t in expected)
        raise ConfigError(
            f"{key} must be {names} (in {source}), got {type(value).__name__} {value!r}"
        )
    if isinstance(default, float) and isinstance(value, int):
        value = float(value)
    if isinstance(value, tuple):
        value = list(value)
    return value


def _missing_file_message(path: Path) -> str:
    folder = path.parent if str(path.parent) not in ("", ".") else Path("experiments")
    known = sorted(p.name for p in folder.glob("*.py")) if folder.is_dir() else []
    hint = closest_hint(path.name, known)
    listing = f" Configs in {folder}: {', '.join(known)}" if known else ""
    return f"config file {path} does not exist.{hint}{listing}"
