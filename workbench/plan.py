"""The second stage of the data path: a config -> the plan of runs.

A planned run is one ``runs`` entry, at one point of its search spaces, for one seed::

    {"index", "algorithm", "label", "params", "seed", "phase", "entry"}   (+ "trial" for a trial)

every parameter resolved and checked (unknown algorithms, parameters and values fail here, before
any run folder exists; a search space is checked at its ends or at each of its values).

* Without ``tune``, a ``grid([...])`` value expands the entry into one run per value (several
  grids: their product, the first one outermost); every run is in the ``"final"`` phase.
* With ``tune``, each entry with a search space first trains ``budget`` trials on each of the
  tuning seeds (phase ``"tune"``, points drawn by :func:`workbench.search.sample`); its final runs,
  one per seed of ``seeds`` at the chosen point, are planned once the trials have ended
  (``choices``, :mod:`workbench.tuning`). The trials come first in the plan, then the final runs.

Seeds are outermost within a phase. Labels: the entry's ``label``, else the algorithm and the
parameters the entry sets (``sgd lr=0.1``), plus the values of a grid point (``sgd lr=0.1``,
``mine lr=0.1``); a trial's label says its number (``adamw [trial 3/8] lr=0.003162``). Repeated
labels get `` #2``, `` #3``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench.config import tune_settings
from workbench.errors import ConfigError
from workbench.registry import ALGORITHMS, load_for_config
from workbench.plugins import display_name  # (and its resolvers: torch.optim.NAME, torchvision.NAME, file.py:Class)
from workbench.search import Grid, Space, grid_product, nested_space, sample, spaces_in


@dataclass
class Entry:
    """A checked ``runs`` entry: what it sets (``given``, search spaces included) and its spaces."""

    index: int
    algorithm: str
    label: str | None
    given: dict
    spaces: dict[str, Space] = field(default_factory=dict)

    @property
    def tuned_label(self) -> str:
        """The label of the entry's final runs after tuning: its own, or the algorithm and the
        parameters it sets outside its spaces."""
        return self.label or default_label(self.algorithm, {k: v for k, v in self.given.items()
                                                            if k not in self.spaces})


def entries_of(config) -> list[Entry]:
    """The config's ``runs`` entries, each checked with its algorithm's parameter spec."""
    load_for_config(config)
    return [_checked_entry(i, entry) for i, entry in enumerate(config["runs"])]


def _checked_entry(i: int, raw: dict) -> Entry:
    given = dict(raw)
    name = given.pop("algorithm")
    label = given.pop("label", None)
    if isinstance(name, Space) or isinstance(label, Space):
        raise ConfigError(f"runs[{i}]: algorithm and label cannot be search spaces; write one entry per algorithm")
    where = f"runs[{i}] ({name})"
    try:
        cls = ALGORITHMS[name]
    except ConfigError as exc:
        raise ConfigError(f"runs[{i}]: {exc}") from None
    for key, value in given.items():
        if nested_space(value):
            raise ConfigError(f"{where}: {key}={value!r} has a search space inside: a search space must be a "
                              f"parameter's whole value (e.g. {key}=grid([...]) with every value written out)")
    spaces = spaces_in(given)
    base = {k: (v.candidates()[0] if isinstance(v, Space) else v) for k, v in given.items()}
    _resolved(cls, where, base)
    for key, space in spaces.items():
        for value in space.candidates():
            try:
                _resolved(cls, where, {**base, key: value})
            except ConfigError as exc:
                raise ConfigError(f"{where}: {key}={space!r}: the value {value!r}: "
                                  f"{str(exc).removeprefix(where + ': ')}") from None
    return Entry(i, name, label, given, spaces)


def _resolved(cls, where: str, given: dict) -> dict:
    try:
        params = cls.resolve_params(given)
        cls.check_params(params)
    except (ConfigError, ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return params


def trial_points(config, entries: list[Entry] | None = None) -> dict[int, list[dict]]:
    """Entry index -> the ``budget`` points its trials train at (only entries with a search
    space; empty without ``tune``)."""
    tune = tune_settings(config)
    if tune is None:
        return {}
    entries = entries if entries is not None else entries_of(config)
    return {e.index: sample(e.spaces, tune["budget"], tune["sampler"], tune["seed"]) for e in entries if e.spaces}


def first_trial_points(config) -> dict[int, dict]:
    """Entry index -> its first trial's point: stands for the chosen point where a whole plan is
    needed before tuning (checking every entry with the model)."""
    return {index: points[0] for index, points in trial_points(config).items()}


def plan_runs(config, choices: dict[int, dict | None] | None = None) -> list[dict]:
    """The planned runs (module docstring). With ``tune``, the final runs are planned only once
    ``choices`` (entry index -> the chosen point, None where no trial succeeded) is given."""
    entries = entries_of(config)
    tune = tune_settings(config)
    if tune is None:
        for e in entries:
            for key, space in e.spaces.items():
                if not isinstance(space, Grid):
                    raise ConfigError(
                        f"runs[{e.index}] ({e.algorithm}): {key}={space!r} is a tuning space: set tune=dict(budget=N) "
                        f"and val_split to choose it on a validation split, or write {key}=grid([...]) to train "
                        f"every value")
        units = [(e, point) for e in entries for point in (grid_product(e.spaces) if e.spaces else [{}])]
        return _numbered(_final_runs(config, units, [_point_label(e, p) for e, p in units]))
    if not any(e.spaces for e in entries):
        raise ConfigError("tune is set but no runs entry has a search space to tune: give a parameter a space, e.g. "
                          "runs=[dict(algorithm=\"adamw\", lr=loguniform(1e-4, 1e-1))]")
    points = trial_points(config, entries)
    trials = []
    labels = _distinct([e.tuned_label for e in entries])
    for seed in tune["seeds"]:
        for e, label in zip(entries, labels):
            for k, point in enumerate(points.get(e.index, [])):
                trials.append(_spec(e, point, seed, "tune", f"{label} [trial {k + 1}/{tune['budget']}] "
                                                            f"{_shown(point, '.4g')}", trial=k))
    if choices is None:
        return _numbered(trials)
    units = [(e, choices.get(e.index) if e.spaces else {}) for e in entries]
    kept = [(k, unit) for k, unit in enumerate(units) if unit[1] is not None]
    finals = _final_runs(config, [unit for _, unit in kept], [labels[k] for k, _ in kept])
    return _numbered(trials + finals)


def planned_final_count(config) -> int:
    """How many final runs the config plans (with ``tune``: one per seed and entry)."""
    entries = entries_of(config)
    per_seed = sum(1 if (config["tune"] is not None or not e.spaces) else len(grid_product(e.spaces))
                   for e in entries)
    return per_seed * len(config["seeds"])


def run_count(config) -> int:
    """Every run the config plans: the trials and the final runs."""
    tune = tune_settings(config)
    trials = 0 if tune is None else sum(bool(e.spaces) for e in entries_of(config)) * tune["budget"] * len(tune["seeds"])
    return trials + planned_final_count(config)


def _final_runs(config, units: list[tuple[Entry, dict]], labels: list[str]) -> list[dict]:
    labels = _distinct(labels)
    return [_spec(e, point, seed, "final", label)
            for seed in config["seeds"] for (e, point), label in zip(units, labels)]


def _spec(entry: Entry, point: dict, seed: int, phase: str, label: str, trial: int | None = None) -> dict:
    given = {k: v for k, v in entry.given.items() if k not in entry.spaces}
    params = _resolved(ALGORITHMS[entry.algorithm], f"runs[{entry.index}] ({entry.algorithm})", {**given, **point})
    spec = {"algorithm": entry.algorithm, "label": label, "params": params, "seed": seed, "phase": phase,
            "entry": entry.index}
    if trial is not None:
        spec["trial"] = trial
    return spec


def _point_label(entry: Entry, point: dict) -> str:
    if entry.label:
        return f"{entry.label} {_shown(point)}".strip()
    return default_label(entry.algorithm, {k: point.get(k, v) for k, v in entry.given.items()})


def _shown(point: dict, number_format: str | None = None) -> str:
    def value(v):
        return format(v, number_format) if number_format and isinstance(v, float) else v
    return " ".join(f"{k}={value(v)}" for k, v in point.items())


def _distinct(labels: list[str]) -> list[str]:
    return [f"{label} #{labels[:k + 1].count(label)}" if labels.count(label) > 1 else label
            for k, label in enumerate(labels)]


def _numbered(plan: list[dict]) -> list[dict]:
    for index, spec in enumerate(plan):
        spec["index"] = index
    return plan


def default_label(algorithm: str, given: dict) -> str:
    """``algorithm`` plus the parameters the config set explicitly, e.g. ``sgd lr=0.1`` (a class in
    a file by its class name: ``Lion lr=0.0001``)."""
    shown = " ".join(f"{k}={v}" for k, v in given.items())
    return f"{display_name(algorithm)} {shown}".strip()


def check_models(config, plan: list[dict], model: torch.nn.Module) -> None:
    """Every ``runs`` entry of the ``plan`` accepts the config's model (one built model, not trained)."""
    first_of_entry = {}
    for spec in plan:
        first_of_entry.setdefault(spec["entry"], spec)
    for spec in first_of_entry.values():
        try:
            ALGORITHMS[spec["algorithm"]].check_model(model, spec["params"])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"runs[{spec['entry']}] ({spec['algorithm']}) with model {config['model']!r}: {exc}") from None
