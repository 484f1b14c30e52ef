"""A 10^6-row record: RAM per row, file size, time of a periodic save, time to plot.

    .venv/bin/python bench/long_record.py            # 10^6 rows (about a minute)
    .venv/bin/python bench/long_record.py --rows 100000

Rows look like a ``log_every=1`` run (step, time, epoch, train_loss every row; test_loss and
test_acc every 1000th) and are saved every ``--save-rows`` rows, as ``save_every`` would.

* workbench: :class:`workbench.record.MetricTable` (float64 buffers) and
  :class:`workbench.history_file.HistoryFile` (appends what changed), plots thinned by
  :func:`workbench.plots.common.thin`;
* reference style (this project before): lists of Python floats, every save one whole
  ``pickle.dumps`` and atomic rewrite, every point drawn.
"""
from __future__ import annotations

import argparse
import math
import pickle
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from workbench import record  # noqa: E402
from workbench.history_file import HistoryFile  # noqa: E402
from workbench.plots import common  # noqa: E402


def rows(n: int):
    rng = np.random.default_rng(0)
    noise = rng.normal(size=n)
    for i in range(n):
        row = {"step": i, "time": i * 1e-3, "epoch": i / 469, "train_loss": math.exp(-i / n) + 0.01 * noise[i]}
        if i % 1000 == 0:
            row.update(test_loss=row["train_loss"] * 1.1, test_acc=100 * (1 - math.exp(-i / n)))
        yield row


class ListTable:
    """The reference style: a list of Python floats per column."""

    def __init__(self):
        self.columns: dict[str, list] = {}
        self.n = 0

    def add_row(self, row):
        for key in row:
            if key not in self.columns:
                self.columns[key] = [math.nan] * self.n
        for key, column in self.columns.items():
            column.append(float(row.get(key, math.nan)))
        self.n += 1


def fill(table, n: int, save=None, save_rows: int = 0) -> float:
    """Add the rows (saving every ``save_rows``); returns the bytes held per row afterwards (the
    table, and for the workbench the writer's references)."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i, row in enumerate(rows(n), 1):
        table.add_row(row)
        if save is not None and i % save_rows == 0:
            save()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return held / n


def history_of(metrics) -> dict:
    return {"name": "long", "config": {}, "runs": [{"label": "sgd", "algorithm": "sgd", "seed": 0, "status": "running",
                                                    "metrics": metrics, "snapshots": {}}]}


def plot_time(runs, thinned: bool) -> float:
    fig, ax = plt.subplots(figsize=(8, 5))
    start = time.perf_counter()
    if thinned:
        common.plot_metric(runs, "train_loss", "step", "training loss", True, ax)
    else:
        m = runs[0]["metrics"]
        ax.plot(m["step"], m["train_loss"])
        ax.set_yscale("log")
    with tempfile.TemporaryDirectory() as d:
        fig.savefig(Path(d) / "p.png", dpi=120)
    plt.close(fig)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--save-rows", type=int, default=10_000)
    args = parser.parse_args()
    n = args.rows
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        # workbench
        table, writer = record.MetricTable(), HistoryFile(folder / "history.pkl")
        history = history_of({})

        rewrites = [0]

        def save():
            writer.save(history, [table])
            rewrites[0] += writer.last_save == "rewrite"
        ram_ours = fill(table, n, save, args.save_rows)
        writer_rewrites = rewrites[0]
        kinds = set()
        for _ in range(3):  # a periodic save at this length: the rows since the last one
            for row in rows(args.save_rows):
                row["step"] += n
                table.add_row(row)
            start = time.perf_counter()
            save()
            periodic_ours = time.perf_counter() - start
            kinds.add(writer.last_save)
        start = time.perf_counter()
        writer._start_over()  # the end of a run, or a resume: one whole rewrite
        save()
        rewrite_ours = time.perf_counter() - start
        size_ours = writer.path.stat().st_size
        start = time.perf_counter()
        loaded = record.load_history(folder)
        load_ours = time.perf_counter() - start
        plot_ours = plot_time(loaded["runs"], thinned=True)
        # reference style
        ref = ListTable()
        ram_ref = fill(ref, n)
        ref_history = history_of(ref.columns)
        start = time.perf_counter()
        record.atomic_write_bytes(folder / "ref.pkl", pickle.dumps(ref_history, protocol=4))
        save_ref = time.perf_counter() - start
        size_ref = (folder / "ref.pkl").stat().st_size
        plot_ref = plot_time(ref_history["runs"], thinned=False)

    print(f"{n} rows, 6 columns, saves every {args.save_rows} rows (workbench: {writer_rewrites} of "
          f"{n // args.save_rows} saves rewrote the file)")
    print("| measure | workbench | reference style | workbench / reference |")
    print("| --- | --- | --- | --- |")
    print(f"| RAM per row | {ram_ours:.0f} B | {ram_ref:.0f} B | {ram_ours / ram_ref:.2f} |")
    print(f"| history.pkl size | {size_ours / 1e6:.1f} MB | {size_ref / 1e6:.1f} MB | {size_ours / size_ref:.2f} |")
    print(f"| periodic save at {n} rows ({args.save_rows} new rows; {'/'.join(sorted(kinds))}) | "
          f"{periodic_ours * 1e3:.1f} ms | {save_ref * 1e3:.0f} ms | {periodic_ours / save_ref:.3f} |")
    print(f"| whole rewrite (the reference's every save) | {rewrite_ours * 1e3:.0f} ms | {save_ref * 1e3:.0f} ms | "
          f"{rewrite_ours / save_ref:.2f} |")
    print(f"| plot train_loss (draw + PNG) | {plot_ours:.2f} s | {plot_ref:.2f} s | {plot_ours / plot_ref:.2f} |")
    print(f"| load_history | {load_ours * 1e3:.0f} ms | | |")


if __name__ == "__main__":
    main()
