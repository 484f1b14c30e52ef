"""Records as tidy tables, for pandas, R or a spreadsheet.

    python -m workbench.export RUN_DIR [RUN_DIR ...] [--format csv|parquet] [--out FILE] [--runs]

* the **long** table (default): one row per (run, step, metric) where the metric was measured:
  ``record, run, label, algorithm, seed, phase, status``, every run parameter as a column (a
  parameter whose name collides with one of these gets a ``param_`` prefix), then ``step, epoch,
  time, metric, value``;
* the **runs** table (``--runs``): one row per run with its parameters, status, the facts its
  algorithm reports for the summary (``fact: eff. step``, ...) and ``final_<metric>``, the last
  measured value of each metric.

In Python, :func:`long_table` and :func:`runs_table` return a pandas DataFrame when pandas is
installed (it is optional: ``pip install pandas``), else a list of dicts; :func:`long_rows` and
:func:`runs_rows` always return the dicts. Parquet needs pandas and pyarrow. The default output is
``metrics.csv`` (``runs.csv``) in the first run folder. :func:`runs_from_tables` turns the two
tables back into runs: the summary table of the exported runs equals the record's (a test).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

import numpy as np

from workbench import record
from workbench.errors import ConfigError

RUN_COLUMNS = ("record", "run", "label", "algorithm", "seed", "phase", "status")
POINT_COLUMNS = ("step", "epoch", "time")
FACT_PREFIX = "fact: "


def _plain(value: Any) -> Any:
    """A cell: numbers and strings as they are, anything else (lists, dicts, spaces) as its repr."""
    return value if isinstance(value, (int, float, str, bool)) or value is None else repr(value)


def _parameter_columns(run: dict) -> dict[str, Any]:
    reserved = set(RUN_COLUMNS) | set(POINT_COLUMNS) | {"metric", "value"}
    return {(f"param_{k}" if k in reserved else k): _plain(v) for k, v in (run.get("params") or {}).items()}


def _histories(sources) -> list[tuple[str, dict]]:
    """(record name, history) for run folders, histories, or a mix."""
    out = []
    for source in sources if isinstance(sources, (list, tuple)) else [sources]:
        history = source if isinstance(source, dict) else record.load_history(source)
        out.append((str(history.get("name") or Path(str(source)).name), history))
    return out


def _run_columns(name: str, index: int, run: dict) -> dict[str, Any]:
    """The columns that say which run a row belongs to: record, run, label, ..., its parameters."""
    return {"record": name, "run": index, "label": run["label"], "algorithm": run["algorithm"], "seed": run["seed"],
            "phase": run.get("phase", "final"), "status": run["status"], **_parameter_columns(run)}


def long_rows(sources) -> list[dict[str, Any]]:
    """The long table as dicts (module docstring); ``sources``: run folders or histories."""
    rows = []
    for name, history in _histories(sources):
        for index, run in enumerate(history["runs"]):
            head = _run_columns(name, index, run)
            metrics = {k: np.asarray(v, dtype=float) for k, v in (run.get("metrics") or {}).items()}
            for metric, values in metrics.items():
                if metric in POINT_COLUMNS:
                    continue
                for i in np.flatnonzero(~np.isnan(values)):
                    point = {k: float(metrics[k][i]) if k in metrics else None for k in POINT_COLUMNS}
                    point["step"] = int(metrics["step"][i])
                    rows.append({**head, **point, "metric": metric, "value": float(values[i])})
    return rows


def runs_rows(sources) -> list[dict[str, Any]]:
    """The runs table as dicts (module docstring)."""
    rows = []
    for name, history in _histories(sources):
        for index, run in enumerate(history["runs"]):
            row = _run_columns(name, index, run)
            row.update({f"{FACT_PREFIX}{k}": _plain(v) for k, v in (run.get("summary_facts") or {}).items()})
            for metric, values in (run.get("metrics") or {}).items():
                measured = np.asarray(values, dtype=float)
                measured = measured[~np.isnan(measured)]
                if metric != "step" and measured.size:
                    row[f"final_{metric}"] = float(measured[-1])
            rows.append(row)
    return rows


def _frame(rows: list[dict]):
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)


def long_table(sources):
    """The long table: a pandas DataFrame with pandas installed, else a list of dicts."""
    return _frame(long_rows(sources))


def runs_table(sources):
    """The runs table: a pandas DataFrame with pandas installed, else a list of dicts."""
    return _frame(runs_rows(sources))


def runs_from_tables(long: list[dict], runs: list[dict]) -> list[dict]:
    """Runs (label, seed, phase, status, params, summary facts, metric columns with NaN where not
    measured) rebuilt from the two tables' rows: what the summary table reads."""
    rebuilt = {}
    for row in runs:
        facts = {k[len(FACT_PREFIX):]: v for k, v in row.items() if k.startswith(FACT_PREFIX)}
        rebuilt[(row["record"], row["run"])] = {"label": row["label"], "algorithm": row["algorithm"],
                                                "seed": row["seed"], "phase": row["phase"], "status": row["status"],
                                                "summary_facts": facts, "points": {}}
    for row in long:
        run = rebuilt[(row["record"], row["run"])]
        point = run["points"].setdefault(row["step"], {"step": row["step"], "epoch": row["epoch"], "time": row["time"]})
        point[row["metric"]] = row["value"]
    out = []
    for run in rebuilt.values():
        by_step = run.pop("points")
        points = [by_step[s] for s in sorted(by_step)]
        keys = list(dict.fromkeys(k for p in points for k in p))
        run["metrics"] = {k: np.array([p.get(k, np.nan) for p in points], dtype=float) for k in keys}
        out.append(run)
    return out


def write(rows: list[dict], path: Path, fmt: str) -> None:
    """``rows`` as CSV (every column of any row; empty cells where a row lacks one) or parquet."""
    if fmt == "parquet":
        try:
            import pandas as pd
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("--format parquet needs pandas and pyarrow: .venv/bin/python -m pip install pandas "
                              "pyarrow (or --format csv)") from None
        pd.DataFrame(rows).to_parquet(path, index=False)
        return
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", help="run folders (results/<YYYYmmdd-HHMMSS>_<name>)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--out", help="the file to write (default: metrics.csv or runs.csv in the first run folder)")
    parser.add_argument("--runs", action="store_true", help="the runs table instead of the long one")
    args = parser.parse_args(argv)
    from workbench.cli import guarded

    def run() -> int:
        try:
            rows = (runs_rows if args.runs else long_rows)([Path(d) for d in args.run_dirs])
        except (ConfigError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        out = Path(args.out) if args.out else Path(args.run_dirs[0]) / f"{'runs' if args.runs else 'metrics'}.{args.format}"
        try:
            write(rows, out, args.format)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{len(rows)} rows -> {out}")
        return 0

    return guarded(run, debug=False, command="python -m workbench.export ...", interrupted="interrupted")


if __name__ == "__main__":
    sys.exit(main())
