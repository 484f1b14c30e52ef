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


def _mean_std(values: list[float], fmt: str) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(float(np.mean(values)), fmt)} ± {format(float(np.std(values)), fmt)}"


# What the "final" and "best" columns show, first one the runs report: the test split's accuracy
# or loss, else (a dataset without a test split) the same on the whole training set.
SUMMARY_METRICS = ("test_acc", "test_loss", "full_train_acc", "full_train_loss")


def _summary_metric(group: list[dict]) -> str:
    for key in SUMMARY_METRICS:
        if any(column(r, key)[1].size for r in group):
            return key
    return "test_loss"


def summary_rows(runs: list[dict]) -> list[dict[str, str]]:
    rows = []
    for label, group in group_by_label(runs).items():
        key = _summary_metric(group)
        accuracy = key.endswith("_acc")
        best = np.max if accuracy else np.min
        finals, bests, times = [], [], []
        for run in group:
            values = column(run, key)[1]
            finals.append(float(values[-1]) if values.size else None)
            bests.append(float(best(values)) if values.size else None)
            times.append(column(run, "time")[1][-1] if column(run, "time")[1].size else None)
        statuses = Counter(r["status"] for r in group)
        fmt = ".2f" if accuracy else ".4g"
        final = _mean_std(finals, fmt)
        diverged = [diverged_at(r) for r in group if r.get("status") == "diverged"]
        if len(diverged) == 1 and len(group) == 1:
            final += f" (last finite; diverged at step {diverged[0]})"
        elif diverged:
            final += f" ({len(diverged)} of {len(group)} diverged: their last finite values)"
        rows.append({
            "label": label,
            "seeds": str(len(group)),
            "metric": key,
            "final": final,
            "best": _mean_std(bests, fmt),
            "time [s]": _mean_std(times, ".3g"),
            **summary_facts(group[0]),
            "status": ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())),
        })
    columns = [k for k in dict.fromkeys(k for row in rows for k in row) if k != "status"] + ["status"]
    return [{k: row.get(k, "-") for k in columns} for row in rows]


def summary_facts(run: dict) -> dict[str, str]:
    """The run's ``summary_facts`` (its algorithm's :meth:`~workbench.algorithm.Algorithm.summary_facts`),
    formatted; records written before the facts existed keep their effective step size."""
    facts = run.get("summary_facts")
    if facts is None:
        step = (run.get("info") or {}).get("effective_step_size", "absent")
        facts = {} if step == "absent" else {"eff. step": step}
    return {k: "-" if v is None else (f"{v:.3g}" if isinstance(v, (int, float)) else str(v)) for k, v in facts.items()}


def summary_table(history_or_runs) -> str:
    runs = history_or_runs["runs"] if isinstance(history_or_runs, dict) else history_or_runs
    rows = summary_rows(runs)
    if not rows:
        return "(no runs recorded)"
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
    line = "  ".join(h.ljust(widths[h]) for h in headers)
    out = [line, "  ".join("-" * widths[h] for h in headers)]
    out += ["  ".join(r[h].ljust(widths[h]) for h in headers) for r in rows]
    return "\n".join(out)
