"""Choosing each tuned entry's point from its trials, on the validation split only.

A trial's value is its tuning metric (``tune["metric"]``; default ``val_acc``, or ``val_loss``
when the runs report no accuracy) at the last evaluation (``at="last"``) or the best over the run
(``at="best"``); a point's value is the mean over the tuning seeds. A point counts only if all of
its trials finished: a diverged or failed trial never wins. The chosen point is the best value
(highest for an accuracy, lowest otherwise), the first in trial order on a tie, so the choice is a
function of the recorded numbers alone: identical with every executor and after ``--resume``. A
numeric choice at the smallest or largest value tried is reported (the best may lie outside).

:func:`decide` returns the record's ``tuning`` section, one dict per tuned entry::

    {"entry", "label", "space", "metric", "at", "seeds", "budget",
     "trials": [{"trial", "params", "values": {seed: value | None}, "mean": value | None, "runs"}],
     "chosen": point | None, "chosen_trial": k | None, "chosen_value": value | None, "edges": [str]}
"""
from __future__ import annotations

import math

import numpy as np

from workbench.config import tune_settings
from workbench.plan import entries_of
from workbench.summary import column


def higher_is_better(metric: str) -> bool:
    return metric.endswith("acc") or metric.endswith("accuracy")


def tuning_metric(tune: dict, runs: list[dict]) -> str:
    """The metric tuning maximises or minimises: the configured one, else ``val_acc`` where the
    runs report it, else ``val_loss``."""
    if tune["metric"]:
        return tune["metric"]
    return "val_acc" if any(column(r, "val_acc")[1].size for r in runs) else "val_loss"


def trial_value(run: dict, metric: str, at: str) -> float | None:
    """The run's value of ``metric`` (last evaluation, or best over the run); None unless it finished."""
    if run.get("status") != "finished":
        return None
    values = column(run, metric)[1]
    if not values.size:
        return None
    if at == "best":
        return float(values.max() if higher_is_better(metric) else values.min())
    return float(values[-1])


def decide(config, plan: list[dict], runs: list[dict]) -> list[dict]:
    """The ``tuning`` section of the record from the trials of ``plan`` in ``runs`` (module docstring)."""
    tune = tune_settings(config)
    trials = [spec for spec in plan if spec["phase"] == "tune"]
    metric = tuning_metric(tune, [runs[spec["index"]] for spec in trials if spec["index"] < len(runs)])
    sections = []
    for entry in entries_of(config):
        if not entry.spaces:
            continue
        points: dict[int, dict] = {}
        for spec in trials:
            if spec["entry"] != entry.index:
                continue
            point = points.setdefault(spec["trial"], {
                "trial": spec["trial"], "params": {k: spec["params"][k] for k in entry.spaces},
                "values": {}, "mean": None, "runs": []})
            run = runs[spec["index"]] if spec["index"] < len(runs) else {}
            point["values"][spec["seed"]] = trial_value(run, metric, tune["at"])
            point["runs"].append(spec["index"])
        for point in points.values():
            values = list(point["values"].values())
            if values and all(v is not None and math.isfinite(v) for v in values):
                point["mean"] = float(np.mean(values))
        best = _best([p for p in sorted(points.values(), key=lambda p: p["trial"])], metric)
        section = {"entry": entry.index, "label": entry.tuned_label,
                   "space": {k: v.describe() for k, v in entry.spaces.items()},
                   "metric": metric, "at": tune["at"], "seeds": tune["seeds"], "budget": tune["budget"],
                   "trials": sorted(points.values(), key=lambda p: p["trial"]),
                   "chosen": None if best is None else dict(best["params"]),
                   "chosen_trial": None if best is None else best["trial"],
                   "chosen_value": None if best is None else best["mean"]}
        section["edges"] = edge_warnings(section, entry.spaces)
        sections.append(section)
    return sections


def _best(points: list[dict], metric: str) -> dict | None:
    best = None
    sign = 1.0 if higher_is_better(metric) else -1.0
    for point in points:
        if point["mean"] is not None and (best is None or sign * point["mean"] > sign * best["mean"]):
            best = point
    return best


def edge_warnings(section: dict, spaces: dict) -> list[str]:
    """One line per numeric parameter whose chosen value is the smallest or largest one tried
    (:func:`workbench.summary.warning_lines` prefixes the entry's label)."""
    if section["chosen"] is None:
        return []
    lines = []
    for key, space in spaces.items():
        if space.bounds() is None:
            continue
        tried = sorted({p["params"][key] for p in section["trials"]})
        value = section["chosen"][key]
        if len(tried) < 2:
            continue
        side = "largest" if value == tried[-1] else "smallest" if value == tried[0] else None
        if side:
            lines.append(f"{key}={value:.4g} is the {side} value tried ({len(tried)} values in {space!r}); the best "
                         f"may lie outside the space: widen it")
    return lines


def choices_of(tuning: list[dict]) -> dict[int, dict | None]:
    """Entry index -> chosen point (None where no trial finished), for :func:`workbench.plan.plan_runs`."""
    return {section["entry"]: section["chosen"] for section in tuning}


def failure_lines(tuning: list[dict]) -> list[str]:
    """One line per tuned entry none of whose trials finished (it has no final runs)."""
    return [f"{s['label']}: none of its {len(s['trials'])} trials finished, so it has no final runs; see the "
            f"trials' errors in the record" for s in tuning if s["chosen"] is None]
