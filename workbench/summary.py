"""The summary table printed by main.py and plot.py: one row per run label, seeds aggregated."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np


def group_by_label(runs: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run["label"], []).append(run)
    return groups


def column(run: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``key`` in a run's metrics, rows where it was not measured or was not
    finite (a diverged run's last row) removed."""
    metrics = run.get("metrics") or {}
    if key not in metrics or "step" not in metrics:
        return np.zeros(0), np.zeros(0)
    x = np.asarray(metrics["step"], dtype=float)
    y = np.asarray(metrics[key], dtype=float)
    keep = np.isfinite(y)
    return x[keep], y[keep]


def diverged_at(run: dict) -> int | None:
    """The step of a diverged run's non-finite row (its last), else None."""
    if run.get("status") != "diverged":
        return None
    steps = (run.get("metrics") or {}).get("step")
    return int(steps[-1]) if steps is not None and len(steps) else None


def mean_and_spread(values: list[float]) -> tuple[float, float | None] | None:
    """(mean, sample standard deviation with ddof=1) of the finite ``values`` (spread None for one value)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def _mean_std(values: list[float], fmt: str) -> str:
    summary = mean_and_spread(values)
    if summary is None:
        return "-"
    mean, spread = summary
    return format(mean, fmt) if spread is None else f"{format(mean, fmt)} ± {format(spread, fmt)}"


# What the "final" column shows, first one the runs report: the test split's accuracy or loss,
# else (a dataset without a test split) the same on the whole training set.
SUMMARY_METRICS = ("test_acc", "test_loss", "full_train_acc", "full_train_loss")
SPREAD_NOTE = ("a ± b: mean ± standard deviation over the finished seeds (ddof=1); final: the last evaluation of "
               "each run")


def _summary_metric(group: list[dict], keys=SUMMARY_METRICS) -> str | None:
    for key in keys:
        if any(column(r, key)[1].size for r in group):
            return key
    return None


def _last(run: dict, key: str) -> float | None:
    values = column(run, key)[1]
    return float(values[-1]) if values.size else None


def split_by_status(group: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the runs a label's mean is taken over, the others): the finished runs, or while none has
    finished the running ones; stopped, diverged and failed runs are never averaged with them."""
    finished = [r for r in group if r.get("status") == "finished"]
    averaged = finished or [r for r in group if r.get("status") == "running"]
    return averaged, [r for r in group if r not in averaged]


def final_runs(runs: list[dict]) -> list[dict]:
    """The runs of the final phase (every run of a record without tuning)."""
    return [r for r in runs if r.get("phase", "final") != "tune"]


def summary_rows(runs: list[dict], target: tuple[float, str] | None = None,
                 tuning: list[dict] | None = None) -> list[dict[str, str]]:
    """One row per label of the final runs: the test metric at the end of training (``final``;
    never a maximum over time, which would be a selection on the test set), the validation metric
    at the end and its best over the run when there is a validation split, the wall time, the
    chosen point of a tuned label, and with ``target`` = (value, metric) the steps and seconds to
    reach it (median over the seeds that did, and how many never did)."""
    chosen = {s["label"]: s for s in tuning or []}
    rows = []
    for label, group in group_by_label(final_runs(runs)).items():
        key = _summary_metric(group) or "test_loss"
        accuracy = key.endswith("_acc")
        fmt = ".2f" if accuracy else ".4g"
        averaged, apart = split_by_status(group)
        final = _mean_std([_last(r, key) for r in (averaged or group)], fmt)
        diverged = [diverged_at(r) for r in group if r.get("status") == "diverged"]
        if len(diverged) == 1 and len(group) == 1:
            final += f" (last finite; diverged at step {diverged[0]})"
        elif apart and averaged:
            counts = Counter(r["status"] for r in apart)
            final += f" (not averaged: {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})"
        elif diverged:
            final += f" ({len(diverged)} of {len(group)} diverged: their last finite values)"
        row = {"label": label, "seeds": str(len(group)), "metric": key, "final": final}
        val_key = _summary_metric(group, ("val_acc", "val_loss"))
        if val_key:
            val_fmt = ".2f" if val_key.endswith("_acc") else ".4g"
            best = np.max if val_key.endswith("_acc") else np.min
            row[f"final {val_key}"] = _mean_std([_last(r, val_key) for r in group], val_fmt)
            row[f"best {val_key}"] = _mean_std([float(best(v)) if (v := column(r, val_key)[1]).size else None
                                                for r in group], val_fmt)
        row["time [s]"] = _mean_std([_last(r, "time") for r in group], ".3g")
        if label in chosen:
            section = chosen[label]
            row["tuned"] = _point(section["chosen"])
            row["trials"] = f"{len(section['trials'])} x {len(section['seeds'])} seed{'s' * (len(section['seeds']) > 1)}"
        if target is not None:
            row.update(time_to_target(group, *target))
        row.update(summary_facts(group[0]))
        row["status"] = ", ".join(f"{k} {v}" for k, v in sorted(Counter(r["status"] for r in group).items()))
        rows.append(row)
    columns = [k for k in dict.fromkeys(k for row in rows for k in row) if k != "status"] + ["status"]
    return [{k: row.get(k, "-") for k in columns} for row in rows]


def _point(point: dict | None) -> str:
    if point is None:
        return "-"
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())


def reached_at(run: dict, value: float, metric: str) -> tuple[float, float] | None:
    """(step, seconds) of the first row where ``metric`` reaches ``value`` (>= for accuracies,
    <= otherwise), None if it never did."""
    metrics = run.get("metrics") or {}
    if metric not in metrics:
        return None
    y = np.asarray(metrics[metric], dtype=float)
    hit = (y >= value) if metric.endswith("acc") or metric.endswith("accuracy") else (y <= value)
    hit &= np.isfinite(y)
    if not hit.any():
        return None
    first = int(np.argmax(hit))
    return float(metrics["step"][first]), float(metrics["time"][first])


def time_to_target(group: list[dict], value: float, metric: str) -> dict[str, str]:
    """Median steps and seconds to reach the target over the seeds that did; how many never did."""
    reached = [at for at in (reached_at(r, value, metric) for r in group) if at is not None]
    never = len(group) - len(reached)
    note = f" ({never} of {len(group)} never)" if never else ""
    if not reached:
        return {"steps to target": f"never ({len(group)} of {len(group)})", "s to target": "-"}
    steps, seconds = np.median([a[0] for a in reached]), np.median([a[1] for a in reached])
    return {"steps to target": f"{steps:g}{note}", "s to target": f"{seconds:.3g}"}


def tuning_rows(tuning: list[dict]) -> list[dict[str, str]]:
    """One row per tuned label: trials, seeds, the chosen point, its validation value, and whether
    it lies on the edge of the space."""
    rows = []
    for s in tuning:
        finished = sum(p["mean"] is not None for p in s["trials"])
        value = "-" if s["chosen_value"] is None else format(s["chosen_value"], ".2f" if s["metric"].endswith("acc")
                                                               else ".4g")
        rows.append({"label": s["label"], "trials": f"{len(s['trials'])} ({finished} finished)",
                     "tuning seeds": ", ".join(map(str, s["seeds"])), "chosen": _point(s["chosen"]),
                     f"{s['metric']} ({s['at']})": value,
                     "edge": "; ".join(w.split(" (")[0] for w in s["edges"]) or "-"})
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return [{k: row.get(k, "-") for k in columns} for row in rows]


def summary_facts(run: dict) -> dict[str, str]:
    """The run's ``summary_facts`` (its algorithm's :meth:`~workbench.algorithm.Algorithm.summary_facts`),
    formatted; records written before the facts existed keep their effective step size."""
    facts = run.get("summary_facts")
    if facts is None:
        step = (run.get("info") or {}).get("effective_step_size", "absent")
        facts = {} if step == "absent" else {"eff. step": step}
    return {k: "-" if v is None else (f"{v:.3g}" if isinstance(v, (int, float)) else str(v)) for k, v in facts.items()}


def warning_lines(tuning: list[dict]) -> list[str]:
    """The edge warnings of every tuned entry of a record's ``tuning``, each with its label."""
    return [f"{s['label']}: {w}" for s in tuning for w in s["edges"]]


def format_table(rows: list[dict[str, str]]) -> str:
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
    out = ["  ".join(h.ljust(widths[h]) for h in headers), "  ".join("-" * widths[h] for h in headers)]
    out += ["  ".join(r[h].ljust(widths[h]) for h in headers) for r in rows]
    return "\n".join(line.rstrip() for line in out)


def summary_table(history_or_runs) -> str:
    """The summary of a history (with its tuning and ``target``) or of a list of runs: the final
    runs' table, the tuning table and the edge warnings. A record interrupted while tuning shows
    its trials."""
    history = history_or_runs if isinstance(history_or_runs, dict) else {"runs": history_or_runs}
    runs, tuning = history["runs"], history.get("tuning") or []
    config = history.get("config") or {}
    target = (config["target"], config.get("target_metric", "test_acc")) if config.get("target") is not None else None
    if not runs:
        return "(no runs recorded)"
    parts = []
    if final_runs(runs):
        parts += [format_table(summary_rows(runs, target, tuning)), SPREAD_NOTE]
    else:
        trials = [{**r, "phase": "final"} for r in runs]
        parts += ["tuning trials (the final runs train once every trial has ended):",
                  format_table(summary_rows(trials))]
    if tuning:
        first = tuning[0]
        parts += ["", f"tuning: {first['metric']} at the {first['at']} evaluation on the validation split, mean over "
                      f"the tuning seeds; {first['budget']} trials per entry",
                  format_table(tuning_rows(tuning))]
        parts += [f"warning: {line}" for line in warning_lines(tuning)]
    return "\n".join(parts)
