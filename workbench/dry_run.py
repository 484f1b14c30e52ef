"""``main.py --dry-run``: the plan of a config as a table, without creating anything.

One line per planned run (index, phase, seed, label, algorithm, the parameters its entry sets,
planned steps), then the counts: runs, tuning trials, final runs and planned steps. The final runs
of a tuned entry are listed with their parameters "chosen by tuning". Steps come from the dataset's
size (it is read, not copied anywhere); a dataset that cannot be read leaves them unknown.
"""
from __future__ import annotations

from workbench.config import tune_settings
from workbench.errors import ConfigError
from workbench.plan import entries_of, plan_runs
from workbench.problem import load_data, planned_steps
from workbench.registry import ALGORITHMS
from workbench.summary import format_table


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe_plan(config) -> str:
    entries = entries_of(config)
    plan = plan_runs(config)
    tune = tune_settings(config)
    try:
        data = load_data(config, quiet=True)
        n_train, missing = len(data.x_train), None
        if data.x_val is not None:
            missing = f"validation split: {len(data.x_val)} examples held out of the training set, {n_train} left"
    except ConfigError as exc:
        n_train, missing = None, f"planned steps unknown: {exc}"

    def steps(algorithm: str):
        if n_train is None:
            return None
        return planned_steps(config, n_train, ALGORITHMS[algorithm].full_batch)

    rows = []
    for spec in plan:
        entry = entries[spec["entry"]]
        shown = {k: spec["params"][k] for k in entry.given}
        rows.append((str(spec["index"]), spec["phase"], str(spec["seed"]), spec["label"], spec["algorithm"],
                     " ".join(f"{k}={_shown(v)}" for k, v in shown.items()), steps(spec["algorithm"])))
    if tune is not None:  # the final runs, planned once the trials have ended
        for seed in config["seeds"]:
            for e in entries:
                shown = {k: ("chosen by tuning" if k in e.spaces else _shown(v)) for k, v in e.given.items()}
                rows.append((str(len(rows)), "final", str(seed), e.tuned_label, e.algorithm,
                             " ".join(f"{k}={v}" for k, v in shown.items()), steps(e.algorithm)))
    headers = ("#", "phase", "seed", "label", "algorithm", "parameters set", "steps")
    lines = format_table([dict(zip(headers, (*row[:6], "?" if n_train is None else
                                             "time-limited" if row[6] is None else str(row[6]))))
                          for row in rows]).splitlines()
    trials = sum(spec["phase"] == "tune" for spec in plan)
    finals = len(rows) - trials
    known = [r[6] for r in rows if r[6] is not None]
    total_steps = f"{sum(known)} planned steps" if n_train is not None and len(known) == len(rows) else (
        "planned steps: some runs are limited by max_time only" if n_train is not None else "planned steps unknown")
    head = f"dry run of {config['name']!r}: {len(rows)} runs"
    if tune is not None:
        head += (f" ({trials} tuning trials: {tune['budget']} per tuned entry x {len(tune['seeds'])} tuning seed(s), "
                 f"sampler {tune['sampler']}; then {finals} final runs at the chosen points)")
    lines += ["", f"{head}; {total_steps}. Nothing was created."]
    if missing:
        lines.append(missing)
    return "\n".join(lines)
