"""Plot run records.

    python plot.py                      the latest run folder in results/
    python plot.py RUN_DIR [RUN_DIR..]  one or several run folders, overlaid (plots go to the first)
    python plot.py --show               also open the figures in a window
    python plot.py --animate            also write animations (shallow ReLU and JKO runs)
    python plot.py A B --pool           pool the seeds of equal labels of A and B (default: apart)

Writes PNG files into the run folder and prints the summary table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Plot Gradient Workbench run records.")
    parser.add_argument("run_dirs", nargs="*", help="run folders (default: the latest in --results)")
    parser.add_argument("--results", default=str(ROOT / "results"), help="where to look for the latest run")
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


def plot(args: argparse.Namespace) -> int:
    from workbench import record
    from workbench.plots import load_runs, plot_record
    from workbench.errors import ConfigError
    from workbench.summary import summary_table

    try:
        run_dirs = [Path(d) for d in args.run_dirs] or [latest_readable(args.results)]
        histories, runs = load_runs(run_dirs, args.pool)
    except (FileNotFoundError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.show:
        import matplotlib

        window_backend = matplotlib.get_backend()  # resolved before plot_record switches to Agg
    print(f"run folder: {run_dirs[0].resolve()}")
    print(summary_table(histories[0] if len(histories) == 1 else runs))
    paths = plot_record(run_dirs, animate=args.animate, pool=args.pool)
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


if __name__ == "__main__":
    sys.exit(main())
