"""The second stage of the data path: a config -> the plan of runs.

A planned run is one ``runs`` entry for one seed: ``{"index", "algorithm", "label", "params",
"seed"}``, seeds outermost, every parameter resolved and checked (unknown algorithms, parameters and
values fail here, before any run folder exists). Labels: the entry's ``label``, else the algorithm
and the parameters the entry sets (``sgd lr=0.1``); repeated labels get `` #2``, `` #3``.
"""
from __future__ import annotations

import torch

from workbench.errors import ConfigError
from workbench.registry import ALGORITHMS, load_for_config


def plan_runs(config) -> list[dict]:
    """One entry per (seed, runs entry), seeds outermost, with resolved parameters and a label."""
    load_for_config(config)
    entries = [_resolved_entry(i, entry) for i, entry in enumerate(config["runs"])]
    labels = [label for _, label, _ in entries]
    for k, (name, label, params) in enumerate(entries):
        if labels.count(label) > 1:
            entries[k] = (name, f"{label} #{labels[:k + 1].count(label)}", params)
    plan = [{"algorithm": name, "label": label, "params": params, "seed": seed}
            for seed in config["seeds"] for name, label, params in entries]
    for index, spec in enumerate(plan):
        spec["index"] = index
    return plan


def _resolved_entry(i: int, entry: dict) -> tuple[str, str, dict]:
    """(algorithm, label, parameters) of ``runs[i]``, checked by the algorithm's parameter spec."""
    entry = dict(entry)
    name = entry.pop("algorithm")
    label = entry.pop("label", None)
    try:
        cls = ALGORITHMS[name]
    except ConfigError as exc:
        raise ConfigError(f"runs[{i}]: {exc}") from None
    try:
        params = cls.resolve_params(entry)
        cls.check_params(params)
    except (ConfigError, ValueError, TypeError) as exc:
        raise ConfigError(f"runs[{i}] ({name}): {exc}") from None
    return name, label or default_label(name, entry), params


def default_label(algorithm: str, given: dict) -> str:
    """``algorithm`` plus the parameters the config set explicitly, e.g. ``sgd lr=0.1``."""
    shown = " ".join(f"{k}={v}" for k, v in given.items())
    return f"{algorithm} {shown}".strip()


def check_models(config, plan: list[dict], model: torch.nn.Module) -> None:
    """Every ``runs`` entry of the ``plan`` accepts the config's model (one built model, not trained)."""
    for spec in plan[:len(config["runs"])]:  # the first seed's entries: one per runs entry
        try:
            ALGORITHMS[spec["algorithm"]].check_model(model, spec["params"])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"runs[{spec['index']}] ({spec['algorithm']}) with model {config['model']!r}: {exc}") from None
