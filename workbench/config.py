"""Config files: plain Python files of module-level assignments, plus ``key=value`` overrides.

Every standard name is declared once, in :data:`FIELDS` (name, default, accepted types, one line
of help, value check); loading, overrides, type checks, ``main.py --list`` and the README's table
of names (:func:`markdown_table`) all read that table. A config file is run with
:func:`runpy.run_path` in a fresh namespace (UTF-8, never exec'd into our globals); modules,
functions and ``_private`` names are dropped; every remaining name must be a field. Overrides from
the command line are parsed with :func:`ast.literal_eval` (falling back to a plain string). The
result is a :class:`Config`: read-only, every default filled in, checked.
"""
from __future__ import annotations

import ast
import copy
import runpy
import traceback
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from workbench.errors import ConfigError, closest_hint
from workbench.search import NAMES as SEARCH_NAMES
from workbench.search import SAMPLERS, Space

DTYPES = ("float32", "float64")
EXECUTORS = ("local", "ray")
APP_FOLDER = Path(__file__).resolve().parent.parent
NUMBER = (int, float)


# -- value checks: each returns what is wrong with a value, or None ----------------------------

def _positive(value) -> str | None:
    return None if value > 0 else "must be positive"


def _positive_int(value) -> str | None:
    return None if value > 0 else "must be a positive integer"


def _at_least_zero(value) -> str | None:
    return None if value >= 0 else "must be >= 0"


def _one_of(choices: tuple) -> Callable[[Any], str | None]:
    def check(value) -> str | None:
        return None if value in choices else f"must be one of {', '.join(map(repr, choices))}{closest_hint(value, choices)}"
    return check


def _seeds(value) -> str | None:
    if not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        return "must be a non-empty list of integers"
    repeated = sorted({s for s in value if value.count(s) > 1})
    if repeated:
        return (f"repeat {repeated}: a repeated seed trains the same run twice and makes the spread over seeds "
                "look smaller; give distinct seeds")
    return None


def _runs(value) -> str | None:
    for i, run in enumerate(value):
        if not isinstance(run, dict) or "algorithm" not in run:
            return f"runs[{i}] must be a dict with an 'algorithm' key, got {run!r}"
    return None


def _workers(value) -> str | None:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return None
    return ("must be a positive integer (1: in this process) or \"auto\" (one worker per run, up to CPU cores / "
            "threads per run)")


def _resources(value) -> str | None:
    if all(isinstance(k, str) and isinstance(v, NUMBER) and not isinstance(v, bool) and v >= 0
           for k, v in value.items()):
        return None
    return "must map Ray resource names to numbers >= 0, e.g. dict(num_cpus=1, num_gpus=0.25)"


def _augment(value) -> str | None:
    from workbench.augment import problem

    return problem(value)


def _tracker(value) -> str | None:
    from workbench.trackers import available

    return None if value in available() else (f"must be one of {', '.join(map(repr, available()))}"
                                              f"{closest_hint(value, available())} (a new tracker is one file in "
                                              f"workbench/trackers/)")


def _val_split(value) -> str | None:
    if isinstance(value, float):
        return None if 0 < value < 1 else "as a fraction must lie in (0, 1) (or give a number of examples, e.g. 10000)"
    return None if value >= 1 else "as a number of examples must be >= 1 (or give a fraction in (0, 1))"


# The keys of ``tune`` (README "Tuning"): default, meaning.
TUNE_KEYS = {
    "budget": (None, "trials per tuned runs entry, the same for every entry (required)"),
    "metric": (None, "what is maximised (*acc*) or minimised: a validation metric (default val_acc, or val_loss "
                     "for regression) or train_loss; never a test metric"),
    "at": ("last", "which value of the metric's curve counts: last (the last evaluation) or best (over the run)"),
    "sampler": ("sobol", f"how the points are drawn: {' | '.join(SAMPLERS)}"),
    "seeds": ([0], "the seeds every trial trains with (the final runs use `seeds`)"),
    "seed": (0, "the sampler's seed (the same points for every entry with the same space)"),
}


def _tune(value) -> str | None:
    unknown = [k for k in value if k not in TUNE_KEYS]
    if unknown:
        return f"has no key {unknown[0]!r}.{closest_hint(unknown[0], TUNE_KEYS)} Its keys: {', '.join(TUNE_KEYS)}"
    budget = value.get("budget")
    if not (isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1):
        return "needs budget=N, a positive number of trials per tuned entry (e.g. tune=dict(budget=8))"
    metric = value.get("metric")
    if metric is not None and (not isinstance(metric, str) or metric.startswith(("test_", "full_train_"))):
        return ("metric must name a validation metric (val_acc, val_loss) or train_loss: tuning never reads the test "
                "set")
    if value.get("at", "last") not in ("last", "best"):
        return "at must be \"last\" (the last evaluation) or \"best\" (the best over the run)"
    if value.get("sampler", "sobol") not in SAMPLERS:
        return f"sampler must be one of {', '.join(SAMPLERS)}{closest_hint(value.get('sampler'), SAMPLERS)}"
    seeds = value.get("seeds", [0])
    if not isinstance(seeds, (list, tuple)) or _seeds(list(seeds)):
        return "seeds must be a non-empty list of distinct integers"
    seed = value.get("seed", 0)
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        return "seed must be an integer >= 0"
    return None


def tune_settings(config) -> dict | None:
    """``tune`` with every key filled in (None without tuning)."""
    if config["tune"] is None:
        return None
    settings = {k: default for k, (default, _) in TUNE_KEYS.items()}
    settings.update(config["tune"])
    settings["seeds"] = list(settings["seeds"])
    return settings


@dataclass(frozen=True)
class Field:
    """One standard config name. ``types``: the accepted Python types (an int stands for a float
    where float is accepted, a bool never for a number); ``optional``: None is accepted too;
    ``check(value)``: what is wrong with a value of the right type, or None."""

    name: str
    default: Any
    types: tuple
    help: str
    optional: bool = False
    check: Callable[[Any], str | None] | None = None

    def coerce(self, value: Any, source: str) -> Any:
        """``value`` type-checked and normalised (tuples to lists, ints to floats for float fields)."""
        if isinstance(value, Space):
            raise ConfigError(f"{self.name}={value!r} (in {source}): search spaces are values of algorithm parameters, "
                              f"inside a runs entry (e.g. runs=[dict(algorithm=\"sgd\", lr=grid([0.01, 0.1]))])")
        if value is None:
            if not self.optional:
                raise ConfigError(f"{self.name} cannot be None (in {source})")
            return None
        if self.name == "seeds" and isinstance(value, int) and not isinstance(value, bool):
            raise ConfigError(f"seeds must be a list of seeds (in {source}), got the number {value}: "
                              f"seeds=[{value}] runs seed {value}, seeds=list(range({value})) runs {value} seeds")
        if self.name == "runs" and isinstance(value, dict):
            value = [value]
        if isinstance(value, tuple) and list in self.types:
            value = list(value)
        if not isinstance(value, self.types) or (isinstance(value, bool) and bool not in self.types):
            names = " or ".join(t.__name__ for t in self.types) + (" or None" if self.optional else "")
            raise ConfigError(f"{self.name} must be {names} (in {source}), got {type(value).__name__} {value!r}")
        if isinstance(self.default, float) and isinstance(value, int):
            value = float(value)
        problem = self.check(value) if self.check else None
        if problem:
            raise ConfigError(f"{self.name} {problem}, got {value!r} (in {source})")
        return value


def _field(name, default, types_, help_, optional=False, check=None) -> Field:
    return Field(name, default, types_ if isinstance(types_, tuple) else (types_,), help_, optional, check)


# Every name a config understands, in the order --list and the README show them.
FIELDS: tuple[Field, ...] = (
    _field("name", "experiment", str, "run folder suffix; defaults to the config file's stem"),
    _field("note", None, str, "a line about this experiment, shown by python plot.py --list", True),
    _field("dataset", "mnist", str, "a registered dataset (python main.py --list)"),
    _field("dataset_args", {}, dict, "keyword arguments of the dataset (n, d, seed, ... for generators)"),
    _field("data_dir", "data", str, "where fetched datasets live (a relative path is relative to the app folder)"),
    _field("data_path", None, str, "the file or folder of dataset=\"npz\" / \"image_folder\" (relative to the config "
           "file, else to the app folder)", True),
    _field("subset", None, int, "use only the first N training examples", True, _positive_int),
    _field("val_split", None, NUMBER, "hold out this fraction (or number) of the training examples as a validation "
           "split, the same for every run (None: none); see README", True, _val_split),
    _field("augment", None, dict, "data augmentation of image batches on the device: dict(crop=4, flip=True) "
           "(random crop with zero padding, horizontal flips); see README", True, _augment),
    _field("model", "mlp", str, "a registered model, torchvision.NAME, or file.py:Class (README \"Bring your own\")"),
    _field("model_args", {}, dict, "keyword arguments of the model (hidden=[256], activation=\"relu\", ...)"),
    _field("batch_size", 64, int, "examples per step (None: full batch)", True, _positive_int),
    _field("epochs", 1, int, "passes over the training set (None: no epoch limit)", True, _positive_int),
    _field("max_steps", None, int, "stop after this many steps", True, _positive_int),
    _field("max_time", None, NUMBER, "stop a run after this many seconds", True, _positive),
    _field("target", None, NUMBER, "stop a run once target_metric reaches this value", True),
    _field("target_metric", "test_acc", str, "test_acc / *_acc stop at >= target, losses at <= target"),
    _field("seeds", [0], list, "one run of every entry of `runs` per seed", False, _seeds),
    _field("device", "auto", str, "auto | cpu | cuda | cuda:N"),
    _field("threads", 1, int, "CPU threads for torch per run (None: torch's default, all cores); see README",
           True, _positive_int),
    _field("flush_denormal", True, bool, "CPU arithmetic flushes subnormal floats to zero (x86 computes them "
           "~100x slower); see README"),
    _field("dtype", "float32", str, "float32 | float64", False, _one_of(DTYPES)),
    _field("runs", [], list, "list of dict(algorithm=..., label=..., **parameters); a parameter may be a search "
           "space: grid([...]), and with tune choice([...]), uniform(lo, hi), loguniform(lo, hi)", False, _runs),
    _field("tune", None, dict, "tune the search spaces on the validation split, the same budget per entry: "
           "dict(budget=8, metric=\"val_acc\", sampler=\"sobol\", seeds=[0]); see README", True, _tune),
    _field("stack", False, bool, "train runs of one algorithm that differ only in seed and parameter values as one "
           "stacked model (README \"Stacked training\"; runs that cannot be stacked train alone)"),
    _field("stack_size", None, int, "most runs in one stack (None: all of a group)", True, _positive_int),
    _field("log_every", 50, int, "steps between training-loss rows (mean over the steps since the last row)",
           False, _positive_int),
    _field("eval_every", None, int, "steps between evaluations (None: at each epoch end, and at least 10 per run: every 1/10 of a run of fewer than 10 epochs)", True, _positive_int),
    _field("snapshot_every", 0, int, "steps between algorithm snapshots (0: only at start and end)", False,
           _at_least_zero),
    _field("save_every", 60.0, NUMBER, "seconds between checkpoints of a run (each writes history.pkl first)",
           False, _positive),
    _field("record_every", 10.0, NUMBER, "seconds between appends of the new rows to history.pkl while runs train (a "
           "plot.py of a running experiment shows rows this old)", False, _positive),
    _field("checkpoint", True, bool, "keep resumable checkpoints (model, optimizer, RNG states) in the run folder"),
    _field("out_dir", "results", str, "parent folder of the run folders (relative to the app folder)"),
    _field("progress", True, bool, "tqdm progress bars"),
    _field("tracker", None, str, "also send every metrics row to a tracker as it arrives: \"tensorboard\" (event "
           "files in the run folder's tensorboard/); see README", True, _tracker),
    _field("workers", "auto", (int, str), "runs training at the same time: \"auto\" (one per run up to CPU cores / "
           "threads; 1 run: in this process), 1 (in this process) or N", False, _workers),
    _field("executor", "local", str, "local (worker processes on this machine) | ray (one Ray task per run)", False,
           _one_of(EXECUTORS)),
    _field("ray_address", None, str, "executor=\"ray\": None starts a local Ray; \"auto\" / \"ray://host:port\" "
           "joins a cluster", True),
    _field("run_resources", {}, dict, "what one run asks Ray for, e.g. dict(num_cpus=1, num_gpus=0.25)", False,
           _resources),
)
FIELD = {f.name: f for f in FIELDS}
DEFAULTS: dict[str, Any] = {f.name: f.default for f in FIELDS}


class Config(Mapping):
    """A resolved config: every name of :data:`FIELDS`, read-only. Read as ``config.epochs`` (or
    ``config["epochs"]``); :meth:`replace` gives a changed copy, checked again."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    @classmethod
    def of(cls, values: Mapping[str, Any], source: str = "the config") -> "Config":
        """Defaults overlaid with ``values``, every value coerced and checked (:func:`validate`)."""
        if isinstance(values, Config):
            return values
        resolved = copy.deepcopy(DEFAULTS)
        for key, value in values.items():
            _check_name(key, source)
            resolved[key] = FIELD[key].coerce(value, source)
        config = cls(resolved)
        validate(config)
        return config

    def replace(self, **changes) -> "Config":
        return Config.of({**self._values, **changes}, source="a change of the config")

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no config name {name!r}.{closest_hint(name, DEFAULTS)}") from None

    def __setattr__(self, name, value):
        raise AttributeError(f"a Config is read-only: use config.replace({name}=...)")

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __reduce__(self):
        return Config, (self._values,)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Resolved config: defaults, then the file's names, then ``key=value`` overrides.

    Raises ConfigError naming the problem (unknown name with the closest known one, a value of
    the wrong type, a malformed override).
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(_missing_file_message(path))
        values["name"] = path.stem
        for key, value in _file_names(path).items():
            _check_name(key, path)
            values[key] = FIELD[key].coerce(value, str(path))
    parameter_overrides = []
    for arg in overrides:
        key, sep, raw = arg.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"override {arg!r} is not of the form key=value (e.g. epochs=3, adamw.lr=3e-3)")
        if "." in key:
            field_name, _, inner = key.partition(".")
            if field_name in FIELD and dict in FIELD[field_name].types and inner:
                current = values.get(field_name, DEFAULTS[field_name]) or {}
                values[field_name] = FIELD[field_name].coerce({**current, inner: parse_value(raw)}, "the command line")
            else:
                parameter_overrides.append((key, parse_value(raw)))
            continue
        _check_name(key, "the command line")
        values[key] = FIELD[key].coerce(parse_value(raw), "the command line")
    if parameter_overrides:
        runs = FIELD["runs"].coerce(values.get("runs", DEFAULTS["runs"]), "the command line")
        values["runs"] = with_parameters(runs, parameter_overrides)
    return Config.of(_files_found(values, path.parent if path is not None else None))


def _found(name, folder: Path | None):
    """A ``file.py:Class`` or a data file relative to ``folder`` (the config file's), else to the
    app folder, as an absolute path (a name that is neither stays as it is)."""
    if not isinstance(name, str):
        return name
    file, sep, rest = name.partition(".py:") if ".py:" in name else (name, "", "")
    file = file + ".py" if sep else file
    if Path(file).is_absolute() or not (sep or name.endswith((".npz", ".npy")) or "/" in name or "\\" in name):
        return name
    for base in ([folder] if folder is not None else []) + [APP_FOLDER]:
        if (base / file).exists():
            return str((base / file).resolve()) + (f":{rest}" if sep else "")
    return name


def _files_found(values: dict, folder: Path | None) -> dict:
    """Plugin files (algorithm, model) and ``data_path`` as absolute paths (:func:`_found`)."""
    values = dict(values)
    if "runs" in values:
        values["runs"] = [{**e, "algorithm": _found(e.get("algorithm"), folder)} if isinstance(e, dict) else e
                          for e in values["runs"]]
    for key in ("model", "data_path"):
        if key in values:
            values[key] = _found(values[key], folder)
    return values


def with_parameters(runs: list[dict], overrides: list[tuple[str, Any]]) -> list[dict]:
    """``runs`` with each ``ALGO.PARAM`` of ``overrides`` set in every entry of algorithm ALGO."""
    runs = [dict(entry) for entry in runs]
    for key, value in overrides:
        algorithm, _, parameter = key.rpartition(".")
        if not algorithm or not parameter or parameter in ("algorithm", "label"):
            raise ConfigError(f"override {key}=...: a dotted name is ALGORITHM.PARAMETER, e.g. adamw.lr=3e-3")
        entries = [entry for entry in runs if entry["algorithm"] == algorithm]
        if not entries:
            present = sorted({entry["algorithm"] for entry in runs})
            raise ConfigError(f"override {key}=...: no runs entry has algorithm {algorithm!r}."
                              f"{closest_hint(algorithm, present)} The runs' algorithms: {', '.join(present) or '(none)'}")
        for entry in entries:
            entry[parameter] = value
    return runs


def _file_names(path: Path) -> dict[str, Any]:
    """The names a config file assigns (modules, functions, classes and ``_private`` names dropped)."""
    try:
        namespace = runpy.run_path(str(path), init_globals=dict(SEARCH_NAMES), run_name="__config__")
    except Exception as exc:  # noqa: BLE001  any error of the user's file
        raise ConfigError(f"config file {path} failed to run: {_where_in(path, exc)}{type(exc).__name__}: "
                          f"{exc} (a config is a file of plain Python assignments)") from None
    return {key: value for key, value in namespace.items()
            if not key.startswith("_") and not isinstance(value, (types.ModuleType, types.FunctionType, type))}


def parse_value(raw: str) -> Any:
    """``ast.literal_eval`` of ``raw`` (where search spaces may stand for values, e.g.
    ``grid([1e-3, 1e-2])``, and ``dict(budget=8)`` for ``{"budget": 8}``), or ``raw`` itself when
    it is not such an expression."""
    try:
        return ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        pass
    try:
        tree = ast.parse(raw.strip(), mode="eval")
    except SyntaxError:
        return raw
    if not any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _CALLABLE
               for n in ast.walk(tree)):
        return raw
    try:
        return _literal_with_spaces(tree.body)
    except (ValueError, TypeError, SyntaxError) as exc:
        raise ConfigError(f"cannot read the value {raw!r}: {exc} (a value is a Python literal, or a search space "
                          f"such as grid([1e-3, 1e-2]) or loguniform(1e-4, 1.0))") from None


# What a command-line value may call: the search spaces, and dict(key=value, ...) as in a config file.
_CALLABLE = {**SEARCH_NAMES, "dict": dict}


def _literal_with_spaces(node: ast.AST) -> Any:
    """A literal whose parts may be calls of the search-space names with literal arguments."""
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in _CALLABLE):
            raise ValueError(f"only {', '.join(_CALLABLE)} may be called")
        args = [_literal_with_spaces(a) for a in node.args]
        kwargs = {k.arg: _literal_with_spaces(k.value) for k in node.keywords}
        return _CALLABLE[node.func.id](*args, **kwargs)
    if isinstance(node, ast.List):
        return [_literal_with_spaces(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal_with_spaces(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return {_literal_with_spaces(k): _literal_with_spaces(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


def coerce(key: str, value: Any, source: str) -> Any:
    """``value`` checked against the field ``key`` (:meth:`Field.coerce`)."""
    return FIELD[key].coerce(value, source)


def validate(config: Mapping[str, Any]) -> None:
    """What needs more than one field: something that stops the runs, a non-empty ``runs``."""
    if config["epochs"] is None and config["max_steps"] is None and config["max_time"] is None:
        raise ConfigError("nothing would stop the runs: set epochs, max_steps or max_time")
    if not config["runs"]:
        raise ConfigError("`runs` is empty: add at least one dict(algorithm=...) entry")
    if config["tune"] is not None and config["val_split"] is None:
        raise ConfigError("tune needs a validation split to choose on (tuning never reads the test set): set "
                          "val_split, e.g. val_split=0.1 (a tenth of the training set) or val_split=10000")


def _check_name(key: str, where) -> None:
    if key in FIELD:
        return
    hint = closest_hint(key, DEFAULTS)
    if key in _algorithm_parameters():
        raise ConfigError(
            f"{key!r} (in {where}) is a parameter of an algorithm, and algorithm parameters live inside `runs`, "
            f"one dict per run: in the config file runs=[dict(algorithm=\"sgd\", {key}=...)], on the command "
            f"line ALGORITHM.{key}=VALUE sets it in every runs entry of that algorithm (e.g. sgd.{key}=...)")
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


def _missing_file_message(path: Path) -> str:
    folder = path.parent if str(path.parent) not in ("", ".") else Path("experiments")
    known = sorted(p.name for p in folder.glob("*.py")) if folder.is_dir() else []
    hint = closest_hint(path.name, known)
    listing = f" Configs in {folder}: {', '.join(known)}" if known else ""
    return f"config file {path} does not exist.{hint}{listing}"


def markdown_table() -> str:
    """The README's table of config names, from :data:`FIELDS` (``python -m workbench.config``)."""
    lines = ["| name | default | meaning |", "| --- | --- | --- |"]
    for f in FIELDS:
        meaning = f.help.replace("|", "\\|")
        lines.append(f"| `{f.name}` | `{f.default!r}` | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
