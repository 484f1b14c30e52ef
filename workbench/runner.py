"""The driver: one record per experiment, one planned run per (seed, runs entry).

config (:mod:`workbench.config`) -> problem (:mod:`workbench.problem`) -> plan of runs
(:mod:`workbench.plan`) -> an executor trains them (:mod:`workbench.executors`: this process, worker
processes; :mod:`workbench.ray_executor`: Ray tasks), each with :func:`workbench.training.train_run`
-> messages come back here -> the :class:`workbench.record.Record` applies them and alone writes
``history.pkl`` and the checkpoints. The driver routes messages (progress to the display, rows to
the hooks); it does not know the file format.

Hooks (the reference framework's stop / log / save design, with its bugs fixed):

* ``should_stop(state) -> bool``: checked after every step; True stops the experiment as an
  interruption (status ``stopped``, checkpoint kept, ``--resume`` continues). Ctrl-C and SIGTERM do
  the same. With worker processes or Ray it is checked here, on every row that arrives.
* ``on_log(state, row)``: called with every metrics row as it reaches the driver.
* ``should_save(state) -> bool``: when to checkpoint; default every ``save_every`` s (in-process only).

Budget stops (``epochs``, ``max_steps``, ``max_time``, ``target``) end a run as ``finished``.
"""
from __future__ import annotations

import shutil
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Mapping

import torch
from tqdm.auto import tqdm

from workbench import messages as m
from workbench import record
from workbench.config import Config, app_path
from workbench.execution import resolved_workers, threads_per_run
from workbench.executors import make_executor
from workbench.plan import check_models, first_trial_points, plan_runs, run_count
from workbench.problem import (VALIDATION_SEED, DataSplit, Problem, build_problem, cpu_can_flush, load_data,
                               resolve_device)
from workbench.plugins import keep_copies
from workbench.progress import Bars, Lines, display
from workbench.run_folder import write_resolved_config, write_summary
from workbench.run_state import RunState, read_checkpoint
from workbench.stacking import stack_units, why_model_cannot_stack
from workbench.summary import warning_lines
from workbench.trackers import BaseTracker, tracker_class
from workbench.training import checkpoint_counts
from workbench.tuning import choices_of, decide, failure_lines

# What `--resume` may change: how the runs execute, not what they compute (``device`` changes
# the kernels, so a resumed run equals an uninterrupted one to rounding, not bitwise).
EXECUTION_NAMES = ("workers", "executor", "ray_address", "run_resources", "progress", "device", "tracker",
                   "record_every", "stack", "stack_size")
# What a record written before a config name existed was trained with (its default has changed since).
BEFORE_THE_NAME = {"flush_denormal": False}


def planned(config, history: dict) -> list[dict]:
    """The plan of a record: with tuning, the final runs once its ``tuning`` section exists."""
    tuning = history.get("tuning")
    return plan_runs(config, choices_of(tuning) if tuning is not None else None)


def final_phase_due(config, plan: list[dict]) -> bool:
    """A tuned config whose plan has its trials but not yet its final runs."""
    return config["tune"] is not None and not any(spec["phase"] == "final" for spec in plan)


def _refusal(reason: str) -> str:
    return f"warning: stack=True, but the model cannot train stacked ({reason}); every run trains on its own"


class NothingToResume(Exception):
    """``--resume`` of a record whose every run has ended: nothing is changed."""


@dataclass
class Hooks:
    should_stop: Callable[[RunState], bool] | None = None
    on_log: Callable[[object, dict], None] | None = None
    should_save: Callable[[RunState], bool] | None = None


class _Interrupt:
    """First Ctrl-C (or SIGTERM) asks every run to stop at its next step boundary; a second
    Ctrl-C while runs train raises KeyboardInterrupt. Once training is over (``training`` False:
    the record is being written), Ctrl-C only asks to stop: the record is never cut short."""

    SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)

    def __init__(self):
        self.requested = False
        self.training = False
        self._previous: dict = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread: signals keep their default behaviour
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested and self.training and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        return False


class Experiment:
    """The driver: the plan, the record and the executor that trains the runs (it is the
    :class:`workbench.execution.Driver` the executors see)."""

    def __init__(self, config: Mapping, run_dir: Path, history: dict, hooks: Hooks | None = None,
                 executor=None, plan: list[dict] | None = None, device: torch.device | None = None):
        self.config = Config.of(config)
        self.record = record.Record(run_dir, history)
        self.record.report = lambda text: tqdm.write(text, file=sys.stderr)
        self.run_dir = self.record.run_dir
        self.experiment_id = str(self.run_dir)
        self.hooks = hooks or Hooks()
        self.should_stop, self.should_save = self.hooks.should_stop, self.hooks.should_save
        self.plan = plan if plan is not None else planned(self.config, history)
        self.device = device if device is not None else resolve_device(self.config.device)
        self._stacking: str | None = None  # why runs cannot share a stack here ("": they can)
        if executor is None:
            executor = make_executor(self.config, len(self.units([i for i in range(len(self.plan))
                                                                  if not self.record.ended(i)])))
        self.executor = executor
        self._problem: Problem | None = None
        self._data: DataSplit | None = None
        self.interrupt = _Interrupt()
        self.restarts: dict[int, int] = {}
        self._bars: Bars | Lines | None = None
        self.tracker: BaseTracker | None = None

    @property
    def history(self) -> dict:
        return self.record.history

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(cls, config: Mapping, config_path: str | Path | None = None, hooks: Hooks | None = None,
               overrides: list[str] | tuple = ()) -> "Experiment":
        """Checks everything that can fail before a run folder exists: the config, the runs, the
        executor (Ray installed and reachable), the dataset and one model build. The folder gets a
        copy of ``config_path`` and ``config_resolved.py`` (the values that run, ``overrides`` applied)."""
        config = Config.of(config)
        plan = plan_runs(config)
        if config.tracker is not None:
            tracker_class(config.tracker)  # its package is installed
        runs = run_count(config)
        units = runs - len(plan) + len(stack_units(plan, list(range(len(plan))), config.stack_size)) if config.stack else runs
        executor = make_executor(config, units)
        device = resolve_device(config.device)
        data = load_data(config)
        problem = build_problem(config, device, data=data) if executor.in_process else None
        checked_problem = problem or build_problem(config, torch.device("cpu"), data=data)
        model = checked_problem.build_model()
        refused = why_model_cannot_stack(model, checked_problem) if config.stack else ""
        if refused and units != runs:  # every run trains on its own: as many workers as runs
            units = runs
            if executor.name != "ray":
                executor = make_executor(config, runs)
                problem = build_problem(config, device, data=data) if executor.in_process else None
        # with tuning, every entry's final runs too (at its first trial's point)
        check_models(config, plan if config.tune is None else plan_runs(config, first_trial_points(config)), model)
        run_dir = record.new_run_dir(app_path(config.out_dir), config.name)
        record.acquire_lock(run_dir)
        config, plugins = keep_copies(config, run_dir)  # the record runs from its own copies
        if plugins:
            plan = plan_runs(config)
        if config_path is not None:
            shutil.copyfile(config_path, run_dir / "config.py")
        write_resolved_config(run_dir, config, str(config_path) if config_path is not None else None, overrides)
        environment = record.environment(device)
        if data.x_val is not None:
            environment["validation_split"] = {"seed": VALIDATION_SEED, "examples": len(data.x_val),
                                               "training_examples": len(data.x_train)}
        environment["execution"] = {"executor": executor.name, "workers": resolved_workers(config, units),
                                    "threads_per_run": threads_per_run(config, units),
                                    "flush_denormal": config.flush_denormal and cpu_can_flush(),
                                    **getattr(executor, "facts", {})}
        history = record.new_history(config, environment)
        if plugins:
            history["plugins"] = plugins
        experiment = cls(config, run_dir, history, hooks, executor=executor, plan=plan, device=device)
        experiment._problem, experiment._data = problem, data
        if config.stack:
            experiment._stacking = refused
            if refused:
                tqdm.write(_refusal(refused), file=sys.stderr)
        experiment.record.save()
        return experiment

    @classmethod
    def resume(cls, run_dir: str | Path, hooks: Hooks | None = None, execution: dict | None = None) -> "Experiment":
        """Continue a record; ``execution`` may change how it runs (:data:`EXECUTION_NAMES`: a
        checkpoint written on a GPU resumes on the CPU and the reverse), never what it computes."""
        run_dir = Path(run_dir)
        history = record.load_history(run_dir)
        config = Config.of({**BEFORE_THE_NAME, **history["config"], **(execution or {})}, source=str(run_dir))
        plan = planned(config, history)
        unfinished = [i for i in range(len(plan)) if not record.run_ended(history, i)]
        if not unfinished and not final_phase_due(config, plan):
            statuses = Counter(run["status"] for run in history["runs"])
            raise NothingToResume(
                f"nothing to resume: every run of {run_dir} has ended "
                f"({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))}; finished {history.get('finished')}). "
                f"The record is unchanged; plot it with python plot.py {run_dir}")
        for path in (run_dir / "checkpoints").glob("run_*.pt"):  # one from elsewhere fails here, unopened
            read_checkpoint(path.read_bytes(), str(path))
        # a Ray that cannot start fails here, before the lock
        executor = make_executor(config, len(unfinished) if unfinished else run_count(config))
        record.acquire_lock(run_dir)
        record.remove_stale_temporaries(run_dir)
        experiment = cls(config, run_dir, history, hooks, executor=executor, plan=plan)
        history["finished"] = None
        history.setdefault("resumed", []).append(record.now_iso())
        return experiment

    # -- what the executors use (workbench.execution.Driver) -----------------------------------
    def problem(self) -> Problem:
        if self._problem is None:
            self._problem = build_problem(self.config, self.device, data=self._data)
        return self._problem

    def data(self) -> DataSplit:
        if self._data is None:
            self._data = load_data(self.config)
        return self._data

    def stop_requested(self) -> bool:
        return self.interrupt.requested

    def ended(self, index: int) -> bool:
        return self.record.ended(index)

    def units(self, indices: list[int]) -> list[tuple[int, ...]]:
        """The runs ``indices`` as units of work: with ``stack``, the stacks of runs that train as
        one model (:func:`workbench.stacking.stack_units`, by the step each continues from), else
        one run each."""
        if not self.config.stack or self.stacking_refused():
            return [(index,) for index in indices]
        return stack_units(self.plan, indices, self.config.stack_size, self._continues_from)

    def stacking_refused(self) -> str:
        """Why the config's model cannot train stacked ("" if it can), found once."""
        if self._stacking is None:
            problem = self._problem or build_problem(self.config, torch.device("cpu"), data=self.data())
            self._stacking = why_model_cannot_stack(problem.build_model(), problem) or ""
            if self._stacking:
                tqdm.write(_refusal(self._stacking), file=sys.stderr)
        return self._stacking

    def _continues_from(self, index: int) -> int:
        """The step run ``index`` continues from: its checkpoint's, else 0."""
        path = self.record.checkpoint_path(index)
        if index < len(self.record.runs) and path.is_file():
            return checkpoint_counts(path.read_bytes())[0]
        return 0

    def prepare(self, index: int) -> tuple[dict, bytes | None]:
        spec = self.plan[index]
        for earlier in range(len(self.record.runs), index):
            self.record.hold_place(self.plan[earlier])
        started_before = index < len(self.record.runs) and self.record.runs[index]["where"] is not None
        checkpoint = self.record.prepare(spec, checkpoint_counts)
        resumed_at = int(self.record.tables[index].last("step", 0)) if checkpoint is not None else (
            -1 if started_before else None)
        self._track("start_run", index, spec, resumed_at)
        return spec, checkpoint

    def apply(self, messages: list[m.Message]) -> list[int]:
        """Route a run's messages: the record applies them, progress goes to the display, rows to
        the hooks; returns the indices of runs that reported Done."""
        done = []
        for message in messages:
            if not isinstance(message, m.Progress):
                self.record.apply(message)
            match message:
                case m.Start(index=index, where=where) if self._bars is not None:
                    self._bars.start(index, (where or {}).get("stack"))
                case m.Progress(index=index, facts=facts) if self._bars is not None:
                    self._bars.progress(index, facts)
                case m.Rows(index=index, rows=rows):
                    for row in rows:
                        self._track("log", index, row)
                        self._driver_hooks(index, row)
                case m.Done(index=index, status=status):
                    self._track("end_run", index, status)
                    self._finished(index, status)
                    done.append(index)
        self.record.save_if_due(self.config.record_every)
        return done

    def lost(self, index: int, reason: str) -> bool:
        """A run's worker died. The first time it trains again from its last checkpoint (True);
        the second time it is recorded as failed, with how to resume it (False)."""
        spec = self.plan[index]
        self.restarts[index] = self.restarts.get(index, 0) + 1
        step = self.record.tables[index].last("step", 0)
        where = self.record.checkpoint_path(index)
        resume_from = f"its last checkpoint ({where.name})" if where.is_file() else "the start (no checkpoint yet)"
        if self.restarts[index] == 1 and not self.stop_requested():
            tqdm.write(f"{spec['label']} seed={spec['seed']}: {reason} near step {step:g}; training it again "
                       f"from {resume_from}", file=sys.stderr)
            if self._bars is not None:
                self._bars.finish(index, counted=False)
            return True
        self.record.fail_lost(index, f"{reason} while training this run (near step {step:g}); the other runs went "
                                     f"on. `python main.py --resume {self.run_dir}` trains it again from {resume_from}.")
        if self._bars is not None:
            self._bars.finish(index)
        self._report_failure(index)
        return False

    # -- running ----------------------------------------------------------------------------
    def run(self) -> int:
        """Train every run that is not done yet: the tuning trials, then (once they have all
        ended) the final runs at the chosen points. Returns 0 if all finished, 1 if some diverged
        or failed, 130 if interrupted."""
        if self.config.tracker is not None:
            self.tracker = tracker_class(self.config.tracker)(self.run_dir, self.history)
        with self.interrupt:
            while True:
                self._train([i for i in range(len(self.plan)) if not self.record.ended(i)])
                if self.interrupt.requested or not self._plan_final_phase():
                    break
            self.record.close(interrupted=self.interrupt.requested)
            self._track("close")
        try:
            write_summary(self.run_dir, self.history)
        except OSError as exc:  # the record is written; only the summary files are missing
            tqdm.write(f"warning: could not write the summary files in {self.run_dir} ({exc})", file=sys.stderr)
        if self.interrupt.requested:
            return 130
        statuses = [r["status"] for r in self.history["runs"]]
        return 0 if all(s == "finished" for s in statuses) else 1

    def _train(self, todo: list[int]) -> None:
        self._bars = display(self.plan, len(self.plan) - len(todo), self.config.progress)
        self.interrupt.training = True
        try:
            self.executor.run(self, self.units(todo))
        except KeyboardInterrupt:
            self.interrupt.requested = True
            self.record.stop_running()
        finally:
            self.interrupt.training = False
            self._bars.close()
            self._bars = None

    def _plan_final_phase(self) -> bool:
        """Once every trial has ended: choose each tuned entry's point (the record's ``tuning``),
        report the choices, and extend the plan with the final runs. True if there are runs to train."""
        if not final_phase_due(self.config, self.plan) or not all(self.record.ended(i) for i in range(len(self.plan))):
            return False
        tuning = decide(self.config, self.plan, self.record.runs_now())
        self.history["tuning"] = tuning
        for section in tuning:
            if section["chosen"] is not None:
                chosen = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in section["chosen"].items())
                tqdm.write(f"tuned {section['label']}: {chosen} ({section['metric']} {section['chosen_value']:.4g}, "
                           f"{section['at']} evaluation, trial {section['chosen_trial'] + 1}/{section['budget']})",
                           file=sys.stderr)
        for line in warning_lines(tuning) + failure_lines(tuning):
            tqdm.write(f"warning: {line}", file=sys.stderr)
        self.plan = plan_runs(self.config, choices_of(tuning))
        self.record.save()
        return any(not self.record.ended(i) for i in range(len(self.plan)))

    def _finished(self, index: int, status: str) -> None:
        if status == "stopped":
            self.interrupt.requested = True
        if self._bars is not None:
            self._bars.finish(index, status=status)
        if status in ("failed", "diverged"):
            self._report_failure(index)

    def _report_failure(self, index: int) -> None:
        """One line on stderr, with or without progress bars: a failure is never only in the record."""
        run, spec = self.history["runs"][index], self.plan[index]
        if run["error"]:
            reason = run["error"].strip().splitlines()[-1]
            tqdm.write(f"{spec['label']} seed={spec['seed']}: {run['status']}: {reason}", file=sys.stderr)

    def _track(self, method: str, *args) -> None:
        """Call the tracker; one that raises is switched off with a warning (the record goes on)."""
        if self.tracker is None:
            return
        try:
            getattr(self.tracker, method)(*args)
        except Exception as exc:  # noqa: BLE001  a tracker never costs the record
            tqdm.write(f"warning: tracker {self.config.tracker!r} failed in {method} ({type(exc).__name__}: {exc}); "
                       f"it is switched off, the record goes on", file=sys.stderr)
            self.tracker = None

    def _driver_hooks(self, index: int, row: dict) -> None:
        """on_log for every arriving row; should_stop too when the run trains elsewhere."""
        hooks = self.hooks
        remote_stop = hooks.should_stop is not None and not self.executor.in_process
        if hooks.on_log is None and not remote_stop:
            return
        view = SimpleNamespace(index=index, step=int(row["step"]), epoch=row.get("epoch"), seconds=row.get("time"))
        if hooks.on_log is not None:
            hooks.on_log(view, row)
        if remote_stop and hooks.should_stop(view):
            self.interrupt.requested = True
