"""``main.py --dry-run``: the plan of a config as a table, without creating anything.

One line per planned run (index, phase, seed, label, algorithm, the parameters its entry sets,
planned steps; with ``stack = True``, the stack it trains in), then the counts: runs, tuning trials,
final runs and planned steps, and which runs share stacks and why the others train alone. The final runs
of a tuned entry are listed with their parameters "chosen by tuning". Steps come from the dataset's
size (it is read, not copied anywhere); a dataset that cannot be read leaves them unknown.
"""
from __future__ import annotations

import torch

from workbench.config import tune_settings
from workbench.errors import ConfigError
from workbench.plan import entries_of, plan_runs
from workbench.problem import build_problem, load_data, planned_steps
from workbench.registry import ALGORITHMS
from workbench.stacking import stack_units, why_model_cannot_stack, why_not_stackable
from workbench.summary import format_table


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe_plan(config) -> str:
    entries = entries_of(config)
    plan = plan_runs(config)
    tune = tune_settings(config)
    data = None
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
    table = [dict(zip(headers, (*row[:6], "?" if n_train is None else "time-limited" if row[6] is None else str(row[6]))))
             for row in rows]
    stacking = _stacking(config, plan, data) if config["stack"] else None
    if stacking is not None:
        for row in table:
            row["stack"] = stacking[0].get(int(row["#"]), "-" if int(row["#"]) < len(plan) else "?")
    lines = format_table(table).splitlines()
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
    if stacking is not None:
        lines.append(stacking[1])
    if missing:
        lines.append(missing)
    return "\n".join(lines)


def _stacking(config, plan: list[dict], data) -> tuple[dict[int, str], str]:
    """The stack number of each run that shares one, and a line: how many stacks, why the others
    train alone (the final runs of a tuned config stack the same way, once they are planned)."""
    refused = None
    if data is not None:
        problem = build_problem(config, torch.device("cpu"), data=data)
        refused = why_model_cannot_stack(problem.build_model(), problem)
    if refused:
        return {}, f"stack=True, but the model cannot train stacked ({refused}): every run trains alone"
    units = stack_units(plan, list(range(len(plan))), config["stack_size"])
    stacks = [unit for unit in units if len(unit) > 1]
    number = {index: str(n) for n, unit in enumerate(stacks, 1) for index in unit}
    alone = [unit[0] for unit in units if len(unit) == 1]
    reasons: dict[str, int] = {}
    for index in alone:
        why = why_not_stackable(plan[index]) or "no other run of its algorithm to stack with" + (
            f" (stack_size={config['stack_size']})" if config["stack_size"] else "")
        key = f"{plan[index]['algorithm']}: {why}"
        reasons[key] = reasons.get(key, 0) + 1
    line = (f"stack=True: {sum(map(len, stacks))} runs in {len(stacks)} stack{'s' * (len(stacks) != 1)} "
            f"({', '.join(str(len(u)) for u in stacks) or 'none'} runs)")
    if alone:
        line += f", {len(alone)} runs alone (" + "; ".join(f"{n} {key}" for key, n in reasons.items()) + ")"
    return number, line
