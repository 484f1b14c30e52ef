"""Plot run records.

    python plot.py                      the latest run folder in results/
    python plot.py RUN_DIR              one record: its figures go into its own folder
    python plot.py NAME                 the latest record of experiment NAME (e.g. mnist_tuned)
    python plot.py A B [...]            several records overlaid, into a new folder of results/comparisons/
    python plot.py A B --out DIR        ... into DIR
    python plot.py --labels "AdamW*" "SGD"  only the runs whose label matches (shell-style patterns)
    python plot.py --metrics test_acc train_loss   only those comparison figures
    python plot.py --list               the records in results/: folder, name, note, date, runs, statuses
    python plot.py --watch [SECONDS]    redraw the latest record (or the one given) until it ends
    python plot.py --show               also open the figures in a window
    python plot.py --animate            also write animations (shallow ReLU and JKO runs)
    python plot.py A B --pool           pool the seeds of equal labels of A and B (default: apart)

Writes PNG files and the summary files (summary.txt, summary.csv) and prints the summary table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Plot Gradient Workbench run records.")
    parser.add_argument("run_dirs", nargs="*",
                        help="run folders, or experiment names (their latest record); default: the latest record")
    parser.add_argument("--results", default=str(ROOT / "results"), help="where to look for records")
    parser.add_argument("--out", metavar="DIR", help="where the figures go (default: the record's own folder, or a new "
                                                     "folder of RESULTS/comparisons/ for several records)")
    parser.add_argument("--labels", nargs="+", metavar="PATTERN", help="only the runs whose label matches a pattern")
    parser.add_argument("--metrics", nargs="+", metavar="METRIC",
                        help="only the comparison figures of these metrics (e.g. test_acc train_loss)")
    parser.add_argument("--list", action="store_true", help="list the records in --results and exit")
    parser.add_argument("--watch", nargs="?", type=float, const=30.0, metavar="SECONDS",
                        help="redraw every SECONDS (default 30) until the record ends")
    parser.add_argument("--show", action="store_true", help="open the figures in a window")
    parser.add_argument("--animate", action="store_true", help="write animations (GIF, or MP4 with ffmpeg)")
    parser.add_argument("--pool", action="store_true",
                        help="with several run folders: pool the seeds of equal labels into one band")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (WORKBENCH_DEBUG=1 too)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from workbench.cli import guarded

    return guarded(lambda: plot(args), debug=args.debug, command="python plot.py ...", interrupted="interrupted")


def latest_readable(results: str) -> Path:
    """The latest run folder; if its history is unreadable, an error that names the previous
    readable one."""
    from workbench import record

    candidates = record.run_dirs(results)
    latest = record.latest_run_dir(results)
    try:
        record.load_history(latest)
        return latest
    except record.CorruptRecord as exc:
        for older in reversed(candidates[:-1]):
            try:
                record.load_history(older)
            except record.CorruptRecord:
                continue
            raise record.CorruptRecord(f"the latest run is unreadable: {exc}\nThe previous readable run is {older}: "
                                       f"python plot.py {older}") from None
        raise


def resolve(name: str, results: str) -> Path:
    """A run folder, or the latest record of the experiment ``name``."""
    from workbench.run_folder import latest_named

    path = Path(name)
    if path.exists():
        return path
    found = latest_named(results, name)
    if found is None:
        raise FileNotFoundError(f"{name} is neither a run folder nor the name of an experiment with a record in "
                                f"{Path(results).resolve()}; python plot.py --list shows the records")
    return found


def plot(args: argparse.Namespace) -> int:
    from workbench.errors import ConfigError
    from workbench.run_folder import records_table

    if args.list:
        print(records_table(args.results))
        return 0
    try:
        run_dirs = [resolve(d, args.results) for d in args.run_dirs] or [latest_readable(args.results)]
    except (FileNotFoundError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.watch is not None:
        return watch(args, run_dirs)
    return draw(args, run_dirs)


def draw(args: argparse.Namespace, run_dirs: list[Path], quiet: bool = False) -> int:
    from workbench import record
    from workbench.plots import load_runs, plot_record
    from workbench.run_folder import write_summary
    from workbench.summary import summary_table

    histories, runs = load_runs(run_dirs, args.pool, args.labels)
    if args.show:
        import matplotlib

        window_backend = matplotlib.get_backend()  # resolved before plot_record switches to Agg
    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
    elif len(run_dirs) == 1:
        out_dir = run_dirs[0]
    else:
        names = "_vs_".join(h.get("name", "record") for h in histories)
        out_dir = record.new_run_dir(Path(args.results) / "comparisons", names[:120])
    print(f"records: {', '.join(str(d.resolve()) for d in run_dirs)}" if len(run_dirs) > 1
          else f"run folder: {run_dirs[0].resolve()}")
    one = histories[0] if len(histories) == 1 and not args.labels else {"runs": runs}
    print(summary_table(one))
    try:
        if len(histories) == 1 and not args.labels:
            write_summary(out_dir, histories[0])
        else:
            (out_dir / "summary.txt").write_text(summary_table(one) + "\n", encoding="utf-8")
    except OSError as exc:  # a record in a read-only folder: the table is printed above
        print(f"warning: could not write the summary files in {out_dir} ({exc})", file=sys.stderr)
    paths = plot_record(run_dirs, animate=args.animate, pool=args.pool, out_dir=out_dir, labels=args.labels,
                        metrics=args.metrics)
    if not quiet:
        for path in paths:
            print(f"plot: {path}")
    if args.show:
        import matplotlib.image as mpimg
        import matplotlib.pyplot as plt

        plt.switch_backend(window_backend)

        for path in paths:
            if path.suffix == ".png":
                fig, ax = plt.subplots()
                ax.imshow(mpimg.imread(path))
                ax.set_axis_off()
                ax.set_title(path.name)
        plt.show()
    return 0


def watch(args: argparse.Namespace, run_dirs: list[Path]) -> int:
    """Redraw every ``args.watch`` seconds until every record has ended (its ``finished`` is set,
    or no process trains it any more)."""
    from workbench import record

    while True:
        ended = all(record.load_history(d).get("finished") or not (Path(d) / record.LOCK).exists() for d in run_dirs)
        draw(args, run_dirs, quiet=True)
        print(f"{time.strftime('%H:%M:%S')}: figures redrawn" + ("; the record has ended" if ended else
                                                                   f"; next in {args.watch:g} s (Ctrl-C stops)"),
              flush=True)
        if ended:
            return 0
        time.sleep(args.watch)


if __name__ == "__main__":
    sys.exit(main())
