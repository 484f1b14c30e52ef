"""What makes a run folder describe itself: the resolved config, the summary files, and the listing
of the records in ``results/``.

* ``config_resolved.py`` beside the copy of the config file: every name with the value that ran
  (the file as written, the command-line overrides applied, every default filled in), as a config
  file that ``python main.py`` runs again;
* ``summary.txt`` (the printed table) and ``summary.csv`` (one row per label of the final runs; a
  cell ``mean ± std`` becomes two numeric columns, ``X`` and ``X std``), written when an experiment
  ends (also after an interruption) and by ``plot.py``;
* :func:`records_table`: one line per record of a results folder (``plot.py --list``,
  ``main.py --records``), newest last; :func:`latest_named`: the newest record of an experiment.
"""
from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

from workbench import record
from workbench.files import atomic_write_bytes
from workbench.summary import final_runs, format_table, summary_rows, summary_table

RESOLVED_CONFIG = "config_resolved.py"
SUMMARY_CSV, SUMMARY_TXT = "summary.csv", "summary.txt"


def write_resolved_config(run_dir: Path, config, source: str | None, overrides: list[str] | tuple = ()) -> Path:
    """``config_resolved.py``: the config that ran, one assignment per name (module docstring)."""
    header = [f'"""The config that ran, every default filled in: python main.py {RESOLVED_CONFIG} runs it again."""',
              f"# from {source or 'a config given in Python'}"
              + (f", with the command-line overrides {' '.join(overrides)}" if overrides else "")]
    lines = [f"{key} = {value!r}" for key, value in config.items()]
    path = Path(run_dir) / RESOLVED_CONFIG
    atomic_write_bytes(path, ("\n".join(header + lines) + "\n").encode("utf-8"))
    return path


_CELL = re.compile(r"(?P<value>\S+)(?: ± (?P<std>\S+))?(?: \((?P<note>.*)\))?")


def _split_spread(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Cells ``a ± b (note)`` as columns ``X``, ``X std`` and ``X note``."""
    out = []
    for row in rows:
        new: dict[str, str] = {}
        for key, cell in row.items():
            match = _CELL.fullmatch(cell)
            if match is None:
                new[key] = cell
                continue
            new[key] = match["value"]
            if match["std"]:
                new[f"{key} std"] = match["std"]
            if match["note"]:
                new[f"{key} note"] = match["note"]
        out.append(new)
    columns = list(dict.fromkeys(k for row in out for k in row))
    return [{k: row.get(k, "") for k in columns} for row in out]


def summary_csv(history: dict) -> str:
    """The summary of the final runs as CSV text (module docstring)."""
    config = history.get("config") or {}
    target = (config["target"], config.get("target_metric", "test_acc")) if config.get("target") is not None else None
    runs = final_runs(history["runs"]) or [{**r, "phase": "final"} for r in history["runs"]]
    rows = _split_spread(summary_rows(runs, target, history.get("tuning")))
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_summary(run_dir: Path, history: dict) -> list[Path]:
    """``summary.txt`` and ``summary.csv`` in the run folder."""
    run_dir = Path(run_dir)
    atomic_write_bytes(run_dir / SUMMARY_TXT, (summary_table(history) + "\n").encode("utf-8"))
    atomic_write_bytes(run_dir / SUMMARY_CSV, summary_csv(history).encode("utf-8"))
    return [run_dir / SUMMARY_TXT, run_dir / SUMMARY_CSV]


def _final_per_label(history: dict) -> str:
    """``metric: label value, ...`` over the labels of the final runs: the mean of the summary
    metric at the end of training."""
    rows = [row for row in summary_rows(final_runs(history["runs"])) if row["final"] != "-"]
    metrics = list(dict.fromkeys(row["metric"] for row in rows))
    return "; ".join(f"{metric}: " + ", ".join(f"{row['label']} {row['final'].split(' ')[0]}" for row in rows
                                               if row["metric"] == metric) for metric in metrics)


def records_table(out_dir: str | Path) -> str:
    """One line per record of ``out_dir``, oldest first: folder, name, note, date, runs, statuses,
    the final metric per label (a record that cannot be read says so on its line)."""
    rows = []
    for run_dir in record.run_dirs(out_dir):
        try:
            history = record.load_history(run_dir)
        except Exception as exc:  # noqa: BLE001  one unreadable record must not hide the others
            rows.append({"folder": run_dir.name, "name": "?", "note": f"unreadable: {str(exc)[:80]}", "created": "",
                         "runs": "", "status": "", "final (mean per label)": ""})
            continue
        statuses = Counter(r["status"] for r in history["runs"])
        rows.append({"folder": run_dir.name, "name": str(history.get("name", "")),
                     "note": str((history.get("config") or {}).get("note") or ""),
                     "created": str(history.get("created", ""))[:19].replace("T", " "),
                     "runs": str(len(history["runs"])),
                     "status": ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())),
                     "final (mean per label)": _final_per_label(history)})
    if not rows:
        return f"no records in {Path(out_dir).resolve()}: run python main.py first"
    return f"records in {Path(out_dir).resolve()} (oldest first):\n" + format_table(rows)


def latest_named(out_dir: str | Path, name: str) -> Path | None:
    """The newest record of experiment ``name`` in ``out_dir`` (by folder name), or None."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    matches = [d for d in record.run_dirs(out_dir) if d.name.split("_", 1)[-1] == safe]
    return matches[-1] if matches else None

