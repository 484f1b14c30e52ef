"""Plot run records.

    python plot.py                      the latest run folder in results/
    python plot.py RUN_DIR [RUN_DIR..]  one or several run folders, overlaid (plots go to the first)
    python plot.py --show               also open the figures in a window
    python plot.py --animate            also write animations (shallow ReLU and JKO runs)

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
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    from workbench import record
    from workbench.plots import load_runs, plot_record
    from workbench.summary import summary_table

    try:
        run_dirs = [Path(d) for d in args.run_dirs] or [record.latest_run_dir(args.results)]
        _, runs = load_runs(run_dirs)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.show:
        import matplotlib

        window_backend = matplotlib.get_backend()  # resolved before plot_record switches to Agg
    print(f"run folder: {run_dirs[0]}")
    print(summary_table(runs))
    paths = plot_record(run_dirs, animate=args.animate)
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
