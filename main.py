"""Run an experiment config.

    python main.py experiments/NAME.py [key=value ...]     run a config, overriding names
    python main.py NAME [key=value ...]                    the same, for experiments/NAME.py
    python main.py NAME ALGO.PARAM=VALUE                   set a parameter in every runs entry of ALGO
                                                           (e.g. "adamw.lr=grid([1e-4, 1e-3, 1e-2])")
    python main.py NAME --dry-run                          print the plan of runs; create nothing
    python main.py --resume results/RUN_DIR [workers=N ...] continue the unfinished runs of a record
                                                           (how the runs execute may change:
                                                           workers, executor, device, stack, ...)
    python main.py --list                                  registered algorithms, datasets, models, experiments
    python main.py --records                               the records in results/, newest last

The run folder results/<YYYYmmdd-HHMMSS>_<name>/ receives history.pkl, a copy of the config,
config_resolved.py (the values that ran), summary.txt / summary.csv and the comparison plots. Exit code: 0 when every run finished, 1 when some diverged or failed, 2 for a bad
config or any other error (a message, no traceback unless --debug or WORKBENCH_DEBUG=1), 130 when
interrupted (Ctrl-C or SIGTERM; resume with --resume).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Gradient Workbench: run an experiment config.",
        epilog="Example: python main.py experiments/default.py epochs=1 seeds=[0]",
    )
    parser.add_argument("config", nargs="?", help="config file (experiments/NAME.py) or NAME")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of config names")
    parser.add_argument("--list", action="store_true", help="list algorithms, datasets, models and experiments")
    parser.add_argument("--records", nargs="?", const=str(ROOT / "results"), metavar="RESULTS",
                        help="list the records in results/ (or RESULTS): folder, name, note, date, runs, statuses, "
                             "final metric per label")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the unfinished runs of a run folder")
    parser.add_argument("--no-plot", action="store_true", help="do not write the plots at the end")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (label, algorithm, parameters, seed, phase; runs and planned steps) and "
                             "exit without creating anything")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also with the environment variable WORKBENCH_DEBUG=1)")
    args = parser.parse_intermixed_args(argv)  # options and key=value overrides in any order
    if args.config and "=" in args.config and not args.config.endswith(".py") and not Path(args.config).exists():
        args.overrides.insert(0, args.config)
        args.config = None
    return args


def config_path(name: str) -> Path:
    path = Path(name)
    if path.suffix != ".py" and not path.exists():
        candidate = ROOT / "experiments" / f"{name}.py"
        if candidate.exists():
            return candidate
    return path


def list_registered() -> str:
    from workbench.config import FIELDS, TUNE_KEYS
    from workbench.params import describe
    from workbench.search import NAMES as SEARCH_NAMES
    from workbench.registry import ALGORITHMS, DATASETS, MODELS, load_all

    load_all()
    lines = []
    for title, registry in (("algorithms", ALGORITHMS), ("datasets", DATASETS), ("models", MODELS)):
        lines.append(f"{title}:")
        for name in sorted(registry):
            doc = (registry[name].__doc__ or "").strip().splitlines()
            summary = re.sub(r":\w+:`~?([^`]+)`", r"\1", doc[0]) if doc else ""
            lines.append(f"  {name:<26} {summary.replace('``', '')}")
            if registry is ALGORITHMS:
                lines.extend(f"      {line}" for line in describe(registry[name].PARAMS))
    lines.append("config names (name = default: meaning):")
    for field in FIELDS:
        lines.append(f"  {field.name} = {field.default!r}: {field.help}")
    lines.append("tune keys (tune = dict(budget=8, ...); key = default: meaning):")
    for key, (default, meaning) in TUNE_KEYS.items():
        lines.append(f"  {key} = {default!r}: {meaning}")
    lines.append("search spaces (a runs entry's parameter value; no import needed in a config file):")
    for name, make in SEARCH_NAMES.items():
        lines.append(f"  {name:<26} {(make.__doc__ or '').strip().splitlines()[0].replace('``', '')}")
    lines.append("without registering anything (README \"Bring your own\"):")
    for form, meaning in (('algorithm="torch.optim.NAME"', "any torch optimizer; its constructor's arguments are "
                                                               "the parameters, plus schedule"),
                          ('algorithm="file.py:Class"', "a torch.optim.Optimizer subclass in a file (relative to the "
                                                        "config file)"),
                          ('model="torchvision.NAME"', "any torchvision.models constructor (weights=None, the "
                                                       "dataset's classes, model_args)"),
                          ('model="file.py:Class"', "an nn.Module subclass in a file, built from model_args")):
        lines.append(f"  {form:<32} {meaning}")
    from workbench.trackers import available

    lines.append(f"trackers (tracker=...): {', '.join(available())}")
    lines.append("experiments:")
    for path in sorted((ROOT / "experiments").glob("*.py")):
        first = path.read_text(encoding="utf-8").strip().splitlines()
        summary = first[0].strip('"# ') if first else ""
        lines.append(f"  {path.relative_to(ROOT).as_posix():<38} {summary}")
    return "\n".join(lines)


def execution_overrides(args: argparse.Namespace) -> dict:
    """``key=value`` arguments given with --resume: only how the runs execute may change."""
    from workbench.config import coerce, parse_value
    from workbench.errors import ConfigError
    from workbench.runner import EXECUTION_NAMES

    overrides = ([args.config] if args.config else []) + list(args.overrides)
    changes = {}
    for arg in overrides:
        key, sep, raw = arg.partition("=")
        if not sep or key not in EXECUTION_NAMES:
            raise ConfigError(f"--resume continues a record as it was configured; only {', '.join(EXECUTION_NAMES)} "
                              f"may change (e.g. --resume RUN_DIR workers=1), not {arg!r}")
        changes[key] = coerce(key, parse_value(raw), source="the command line")
    return changes


def main(argv: list[str] | None = None) -> int:
    """Errors end with a message on stderr and exit code 2 (130 for Ctrl-C before training),
    with the traceback only under --debug or WORKBENCH_DEBUG=1."""
    from workbench.cli import guarded

    args = parse_args(sys.argv[1:] if argv is None else argv)
    return guarded(lambda: run(args, plot_after_exit=argv is None), debug=args.debug, command="python main.py ...",
                   interrupted="interrupted before training started; nothing was trained")


def run(args: argparse.Namespace, plot_after_exit: bool = False) -> int:
    """``plot_after_exit`` (the command line): the plots are drawn by a child process once the
    summary is printed, so that the exit status does not wait for them (:func:`plot_in_a_child`)."""
    from workbench.config import load_config
    from workbench.errors import ConfigError
    from workbench.runner import Experiment, NothingToResume

    if args.list:
        print(list_registered())
        return 0
    if args.records:
        from workbench.run_folder import records_table

        print(records_table(args.records))
        return 0
    try:
        if args.dry_run:
            if args.resume or not args.config:
                raise ConfigError("--dry-run plans a config: python main.py experiments/NAME.py [key=value ...] --dry-run")
            from workbench.dry_run import describe_plan

            print(describe_plan(load_config(config_path(args.config), args.overrides)))
            return 0
        if args.resume:
            if Path(args.resume).suffix == ".py":
                raise ConfigError(f"--resume takes a run folder (results/<YYYYmmdd-HHMMSS>_<name>), not the config file "
                                  f"{args.resume}; to start that config: python main.py {args.resume}")
            experiment = Experiment.resume(args.resume, execution=execution_overrides(args))
        else:
            if not args.config:
                raise ConfigError("no config given: python main.py experiments/NAME.py [key=value ...] (see --list)")
            path = config_path(args.config)
            config = load_config(path, args.overrides)
            experiment = Experiment.create(config, config_path=path, overrides=args.overrides)
    except NothingToResume as exc:
        print(exc)
        return 0
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"run folder: {experiment.run_dir.resolve()}")
    try:
        code = experiment.run()
    except ConfigError as exc:  # e.g. a dataset that is not on disk: the record stays readable
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if plot_after_exit:  # the command line: training is over, a late Ctrl-C changes nothing (not
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # even during the interpreter's exit)
    from workbench.summary import summary_table

    print(summary_table(experiment.history))
    if code == 130:
        print(f"interrupted; continue with: python main.py --resume {experiment.run_dir}")
    if not args.no_plot and not (plot_after_exit and plot_in_a_child(experiment)):
        draw_plots(experiment.run_dir)
    return code


def draw_plots(run_dir: Path) -> None:
    try:
        from workbench.plots import plot_record

        for path in plot_record([run_dir]):
            print(f"plot: {path}")
    except Exception as exc:  # plots must never cost the results
        print(f"warning: plotting failed ({type(exc).__name__}: {exc}); run python plot.py {run_dir}",
              file=sys.stderr)


def plot_in_a_child(experiment) -> bool:
    """Draw the plots in a forked child while this process exits with the runs' status: the
    figures take about a second (matplotlib's import, one savefig per figure) that nobody needs to
    wait for. The child keeps this process's stdout and stderr, so a caller that reads them to the
    end (a pipe, ``subprocess.run(capture_output=True)``) also gets the "plot:" lines, and it ends
    itself after 10 minutes whatever happens. False (draw them here) without ``os.fork`` (Windows)
    or with Ray, whose threads in this process make a fork unsafe."""
    if not hasattr(os, "fork") or experiment.config["executor"] == "ray":
        return False
    sys.stdout.flush()
    sys.stderr.flush()
    with warnings.catch_warnings():  # Python >= 3.12 warns about forking a threaded process;
        warnings.simplefilter("ignore", DeprecationWarning)  # the child only plots and exits
        pid = os.fork()
    if pid:
        print(f"plots: drawn in the background into {experiment.run_dir} (python plot.py {experiment.run_dir} "
              "draws them again)")
        return True
    try:
        signal.alarm(600)
        draw_plots(experiment.run_dir)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def exit_now(code: int) -> None:
    """End the process with ``code`` once everything is written: the interpreter's own teardown of
    torch's modules (about 0.6 s on this project's CPU, bench/default_experiment.py) would only
    delay the exit status. With Ray loaded the normal exit runs, so that Ray shuts its instance down."""
    sys.stdout.flush()
    sys.stderr.flush()
    if "ray" in sys.modules:
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
