"""The driver: one record per experiment, one planned run per (seed, runs entry).

config -> problem (data on device, model factory, loss) -> plan of runs -> an executor trains them
(:mod:`workbench.executors`: this process, worker processes, Ray tasks), each with
:func:`workbench.training.train_run` -> rows, snapshots and checkpoints come back here -> the driver
alone writes ``history.pkl`` and the checkpoints (see :mod:`workbench.record`).

Hooks (the reference framework's stop / log / save design, with its bugs fixed):

* ``should_stop(state) -> bool``: checked after every step; True stops the experiment as an
  interruption (status ``stopped``, checkpoint kept, ``--resume`` continues). Ctrl-C and SIGTERM do
  the same. With worker processes or Ray it is checked here, on every row that arrives.
* ``on_log(state, row)``: called with every metrics row as it reaches the driver.
* ``should_save(state) -> bool``: when to checkpoint; default every ``save_every`` s (in-process only).

Budget stops (``epochs``, ``max_steps``, ``max_time``, ``target``) end a run as ``finished``.
"""
from __future__ import annotations

import copy
import inspect
import shutil
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch
from tqdm.auto import tqdm

from workbench import record
from workbench.config import app_path
from workbench.executors import InProcess, make_executor, resolved_workers, threads_per_run
from workbench.history_file import HistoryFile
from workbench.problem import DataSplit, Problem
from workbench.registry import ALGORITHMS, DATASETS, MODELS, ConfigError, closest_hint, load_for
from workbench.training import (FINAL_STATUSES, RunState, configure_torch, cpu_can_flush, planned_steps,
                                read_checkpoint)

# What `--resume` may change: how the runs execute, not what they compute (``device`` changes
# the kernels, so a resumed run equals an uninterrupted one to rounding, not bitwise).
EXECUTION_NAMES = ("workers", "executor", "ray_address", "run_resources", "progress", "device")


# What a record written before a config name existed was trained with (its default has changed since).
BEFORE_THE_NAME = {"flush_denormal": False}


class NothingToResume(Exception):
    """``--resume`` of a record whose every run has ended: nothing is changed."""


@dataclass
class Hooks:
    should_stop: Callable[[RunState], bool] | None = None
    on_log: Callable[[object, dict], None] | None = None
    should_save: Callable[[RunState], bool] | None = None


class _Interrupt:
    """First Ctrl-C (or SIGTERM) asks every run to stop at its next step boundary; a second
    Ctrl-C raises KeyboardInterrupt."""

    SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread: signals keep their default behaviour
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        return False


# ---------------------------------------------------------------------------------------------
# building blocks


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch sees no CUDA GPU here; use device='auto' or 'cpu'")
    return device


def load_data(config: dict, quiet: bool = False) -> DataSplit:
    """The config's dataset on the CPU, ``subset`` applied (loaded once per experiment); a
    ``subset`` larger than the training set is reported (``quiet``: not)."""
    load_for_config(config)
    dataset_fn = DATASETS[config["dataset"]]
    try:
        data = dataset_fn(app_path(config["data_dir"]), **config["dataset_args"])
    except FileNotFoundError as exc:  # the message says where the files were looked for and how to get them
        raise ConfigError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"dataset {config['dataset']!r}: {exc} (check dataset_args)") from None
    subset = config["subset"]
    if subset is not None:
        if subset > len(data.x_train) and not quiet:
            print(f"warning: subset={subset} but {config['dataset']!r} has {len(data.x_train)} training examples: "
                  f"all {len(data.x_train)} are used", file=sys.stderr)
        # copies, so that the full set is freed and a worker is sent the subset alone
        data.x_train, data.y_train = data.x_train[:subset].clone(), data.y_train[:subset].clone()
    return data


def load_for_config(config: dict) -> None:
    """Fill the registries with the families the config names (and the framework's own entries)."""
    load_for({"algorithms": [entry.get("algorithm") for entry in config["runs"]],
              "datasets": [config["dataset"]], "models": [config["model"]]})


def build_problem(config: dict, device: torch.device | None = None, data: DataSplit | None = None) -> Problem:
    """The dataset (loaded, or the given CPU ``data``) moved to the device and dtype, and a model
    factory. Sets torch's threads (when ``threads`` is set) and subnormal mode for this process
    (:func:`workbench.training.configure_torch`)."""
    load_for_config(config)
    configure_torch(config)
    device = device or resolve_device(config["device"])
    dtype = getattr(torch, config["dtype"])
    model_fn = MODELS[config["model"]]
    data = copy.copy(data) if data is not None else load_data(config, quiet=True)

    def place(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

    data.x_train, data.y_train = place(data.x_train), place(data.y_train)
    data.x_test, data.y_test = place(data.x_test), place(data.y_test)

    def build_model() -> torch.nn.Module:
        try:
            model = model_fn(data.input_shape, data.n_outputs, **config["model_args"])
        except TypeError as exc:
            raise ConfigError(_model_args_message(config, model_fn, exc)) from None
        except ValueError as exc:
            raise ConfigError(f"model {config['model']!r}: {exc} (check model_args)") from None
        return model.to(device=device, dtype=dtype)

    batch_size = config["batch_size"]
    return Problem(data=data, build_model=build_model, device=device, dtype=dtype, batch_size=batch_size,
                   planned_steps=planned_steps(config, len(data.x_train)))


def _model_args_message(config: dict, model_fn, exc: TypeError) -> str:
    """The bad ``model_args`` key with the closest valid one, or the TypeError itself."""
    valid = [p for p in inspect.signature(model_fn).parameters if p not in ("input_shape", "n_outputs")]
    unknown = [k for k in config["model_args"] if k not in valid]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(model_fn).parameters.values()):
        return (f"model {config['model']!r} has no argument {unknown[0]!r} in model_args."
                f"{closest_hint(unknown[0], valid)} Its arguments: {', '.join(valid)}")
    return f"model {config['model']!r}: {exc} (check model_args)"


def plan_runs(config: dict) -> list[dict]:
    """One entry per (seed, runs entry), seeds outermost, with resolved parameters and a label.

    Every entry is checked before anything trains: unknown algorithms and parameters fail here.
    """
    load_for_config(config)
    entries = []
    for i, entry in enumerate(config["runs"]):
        entry = dict(entry)
        name = entry.pop("algorithm")
        label = entry.pop("label", None)
        try:
            cls = ALGORITHMS[name]
        except ConfigError as exc:
            raise ConfigError(f"runs[{i}]: {exc}") from None
        try:
            params = cls.resolve_params(entry)
            cls.check_params(params)
        except (ConfigError, ValueError, TypeError) as exc:
            raise ConfigError(f"runs[{i}] ({name}): {exc}") from None
        entries.append((name, label or default_label(name, entry), params))
    labels = [label for _, label, _ in entries]
    for k, (name, label, params) in enumerate(entries):
        if labels.count(label) > 1:
            entries[k] = (name, f"{label} #{labels[:k + 1].count(label)}", params)
    plan = [{"algorithm": name, "label": label, "params": params, "seed": seed}
            for seed in config["seeds"] for name, label, params in entries]
    for index, spec in enumerate(plan):
        spec["index"] = index
    return plan


def check_models(config: dict, plan: list[dict], model: torch.nn.Module) -> None:
    """Every ``runs`` entry of the ``plan`` accepts the config's model (one built model, not trained)."""
    for spec in plan[:len(config["runs"])]:  # the first seed's entries: one per runs entry
        try:
            ALGORITHMS[spec["algorithm"]].check_model(model, spec["params"])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"runs[{spec['index']}] ({spec['algorithm']}) with model {config['model']!r}: {exc}") from None


def default_label(algorithm: str, given: dict) -> str:
    """``algorithm`` plus the parameters the config set explicitly, e.g. ``sgd lr=0.1``."""
    shown = " ".join(f"{k}={v}" for k, v in given.items())
    return f"{algorithm} {shown}".strip()


def _run_ended(history: dict, index: int) -> bool:
    """Run ``index`` of the record has a final status (a run whose worker was lost has not)."""
    runs = history["runs"]
    if index >= len(runs):
        return False
    return runs[index]["status"] in FINAL_STATUSES and not runs[index].get("lost_worker")


def _new_run_record(spec: dict) -> dict:
    return {
        "label": spec["label"], "algorithm": spec["algorithm"], "params": record.to_plain(spec["params"]),
        "seed": spec["seed"], "status": "running", "error": None, "info": {},
        "metrics": {}, "snapshots": {}, "where": None,
    }


class _Bars:
    """The runs bar (done/total) and one line per active run (label, seed, step, loss)."""

    def __init__(self, plan: list[dict], done: int, quiet: bool | None):
        self.plan, self.quiet = plan, quiet
        self.outer = tqdm(total=len(plan), initial=done, desc="runs", unit="run", disable=quiet, position=0)
        self.lines: dict[int, tqdm] = {}
        self.slots: dict[int, int] = {}

    def start(self, index: int) -> None:
        spec = self.plan[index]
        slot = min(set(range(1, len(self.slots) + 2)) - set(self.slots.values()))
        self.slots[index] = slot
        self.lines[index] = tqdm(total=None, desc=f"{spec['label']} seed={spec['seed']}", unit="step",
                                 leave=False, disable=self.quiet, position=slot, dynamic_ncols=True)

    def progress(self, index: int, facts: dict) -> None:
        bar = self.lines.get(index)
        if bar is None:
            return
        if bar.total != facts.get("total"):
            bar.total = facts.get("total")
        bar.update(facts["step"] - bar.n)
        if facts.get("loss") is not None:
            shown = {"loss": f"{facts['loss']:.4g}", "epoch": f"{facts['epoch']:.2f}"}
            if facts.get("acc") is not None:
                shown["acc"] = f"{facts['acc']:.2f}"
            bar.set_postfix(shown, refresh=False)

    def finish(self, index: int, counted: bool = True) -> None:
        """Close the run's line; ``counted``: the run is done (a restarted one is not)."""
        bar = self.lines.pop(index, None)
        self.slots.pop(index, None)
        if bar is not None:
            bar.close()
        if counted:
            self.outer.update(1)

    def close(self) -> None:
        for bar in self.lines.values():
            bar.close()
        self.outer.close()


class Experiment:
    """The driver: the plan, the record on disk and the executor that trains the runs.

    While runs train, their rows live in ``tables`` (one :class:`record.MetricTable` per run);
    ``history["runs"][i]["metrics"]`` is brought up to date when :meth:`run` returns."""

    def __init__(self, config: dict, run_dir: Path, history: dict, hooks: Hooks | None = None,
                 executor=None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.history = history
        self.hooks = hooks or Hooks()
        self.plan = plan_runs(config)
        self.device = resolve_device(config["device"])
        todo = sum(not _run_ended(history, i) for i in range(len(self.plan)))
        self.executor = executor if executor is not None else make_executor(config, todo)
        self._problem: Problem | None = None
        self._data: DataSplit | None = None
        self.interrupt = _Interrupt()
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.restarts: dict[int, int] = {}
        self._bars: _Bars | None = None
        self.tables = [record.MetricTable(run["metrics"]) for run in history["runs"]]
        self.history_file = HistoryFile(self.run_dir / record.HISTORY)

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(cls, config: dict, config_path: str | Path | None = None, hooks: Hooks | None = None) -> "Experiment":
        """Checks everything that can fail before a run folder exists: the runs, the executor
        (Ray installed and reachable), the dataset and one model build."""
        plan = plan_runs(config)
        executor = make_executor(config, len(plan))
        device = resolve_device(config["device"])
        data = load_data(config)
        problem = build_problem(config, device, data=data) if isinstance(executor, InProcess) else None
        model = (problem or build_problem(config, torch.device("cpu"), data=data)).build_model()
        check_models(config, plan, model)
        run_dir = record.new_run_dir(app_path(config["out_dir"]), config["name"])
        record.acquire_lock(run_dir)
        if config_path is not None:
            shutil.copyfile(config_path, run_dir / "config.py")
        environment = record.environment(device)
        environment["execution"] = {"executor": executor.name, "workers": resolved_workers(config, len(plan)),
                                    "threads_per_run": threads_per_run(config, len(plan)),
                                    "flush_denormal": config["flush_denormal"] and cpu_can_flush()}
        history = {
            "name": config["name"], "config": record.to_plain(config),
            "created": record.now_iso(), "finished": None,
            "environment": environment, "runs": [],
        }
        experiment = cls(config, run_dir, history, hooks, executor=executor)
        experiment._problem, experiment._data = problem, data
        experiment.save()
        return experiment

    @classmethod
    def resume(cls, run_dir: str | Path, hooks: Hooks | None = None, execution: dict | None = None) -> "Experiment":
        """Continue a record; ``execution`` may change how it runs (:data:`EXECUTION_NAMES`: a
        checkpoint written on a GPU resumes on the CPU and the reverse), never what it computes."""
        run_dir = Path(run_dir)
        history = record.load_history(run_dir)
        from workbench.config import DEFAULTS

        config = {**copy.deepcopy(DEFAULTS), **BEFORE_THE_NAME, **history["config"], **(execution or {})}
        if all(_run_ended(history, i) for i in range(len(plan_runs(config)))):
            statuses = Counter(run["status"] for run in history["runs"])
            raise NothingToResume(
                f"nothing to resume: every run of {run_dir} has ended "
                f"({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))}; finished {history.get('finished')}). "
                f"The record is unchanged; plot it with python plot.py {run_dir}")
        record.acquire_lock(run_dir)
        record.remove_stale_temporaries(run_dir)
        experiment = cls(config, run_dir, history, hooks)
        history["finished"] = None
        history.setdefault("resumed", []).append(record.now_iso())
        return experiment

    # -- what the executors use -------------------------------------------------------------
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

    def request_stop(self) -> None:
        self.interrupt.requested = True

    def prepare(self, index: int) -> tuple[dict, bytes | None]:
        """The run's record (new, or kept for a resume) and the checkpoint to continue from.

        A checkpoint is used only if the rows and snapshots it counts are all on disk; the rows
        recorded after it are dropped (its steps are redone). Otherwise the run starts afresh."""
        spec = self.plan[index]
        runs = self.history["runs"]
        if index == len(runs):
            runs.append(_new_run_record(spec))
            self.tables.append(record.MetricTable())
        run, table = runs[index], self.tables[index]
        run["status"], run["error"] = "running", None
        path = self._checkpoint_path(index)
        if not (path.is_file() and len(table)):
            return spec, None
        data = path.read_bytes()
        ckpt = read_checkpoint(data)
        n_snaps = len(run["snapshots"].get("step", []))
        if ckpt["rows"] > len(table) or ckpt["snapshots"] > n_snaps:
            tqdm.write(f"{spec['label']} seed={spec['seed']}: its checkpoint (step {ckpt['step']}) is ahead of "
                       f"the rows on disk; training it again from the start", file=sys.stderr)
            return spec, None
        table.truncate(ckpt["rows"])
        for column in run["snapshots"].values():
            del column[ckpt["snapshots"]:]
        return spec, data

    def apply(self, messages: list[tuple]) -> list[int]:
        """Fold a run's messages into the record (see :mod:`workbench.training`); returns the
        indices of runs that reported "done"."""
        done = []
        for message in messages:
            kind, index = message[0], message[1]
            run = self.history["runs"][index]
            if kind == "start":
                run["where"] = message[2]
                if self._bars is not None:
                    self._bars.start(index)
            elif kind == "reset":
                self.tables[index].clear()
                run["metrics"], run["snapshots"], run["info"] = {}, {}, message[2]
                run["summary_facts"] = message[3]
            elif kind == "rows":
                table = self.tables[index]
                for row in message[2]:
                    table.add_row(row)
                    self._driver_hooks(index, row)
            elif kind == "snapshot":
                for key, value in message[2].items():
                    run["snapshots"].setdefault(key, []).append(value)
            elif kind == "progress":
                if self._bars is not None:
                    self._bars.progress(index, message[2])
            elif kind == "checkpoint":
                self._checkpoint(index, message[2])
            elif kind == "done":
                self._finish(index, message[2], message[3])
                done.append(index)
        return done

    def _checkpoint(self, index: int, data: bytes | None) -> None:
        """The history first, then the checkpoint: a checkpoint is never ahead of the rows on
        disk. If the history cannot be written (a full disk), the checkpoint is not written either
        and the run goes on; the next save tries again (the rows stay in memory)."""
        target = self.run_dir / record.HISTORY
        try:
            self.save()
            if data is not None:
                target = self._checkpoint_path(index)
                self.checkpoint_dir.mkdir(exist_ok=True)
                record.atomic_write_bytes(target, data)
        except OSError as exc:
            tqdm.write(f"warning: could not write {target} ({exc}); training goes on and the next save tries "
                       "again (what is on disk still agrees: no checkpoint is ahead of the history)",
                       file=sys.stderr)

    def lost(self, index: int, reason: str) -> bool:
        """A run's worker died. The first time it trains again from its last checkpoint (True);
        the second time it is recorded as failed, with how to resume it (False)."""
        spec, run = self.plan[index], self.history["runs"][index]
        self.restarts[index] = self.restarts.get(index, 0) + 1
        step = self.tables[index].last("step", 0)
        where = self._checkpoint_path(index)
        resume_from = f"its last checkpoint ({where.name})" if where.is_file() else "the start (no checkpoint yet)"
        if self.restarts[index] == 1 and not self.stop_requested():
            tqdm.write(f"{spec['label']} seed={spec['seed']}: {reason} near step {step:g}; training it again "
                       f"from {resume_from}", file=sys.stderr)
            if self._bars is not None:
                self._bars.finish(index, counted=False)
            return True
        run["status"] = "failed"
        run["lost_worker"] = True
        run["error"] = (f"{reason} while training this run (near step {step:g}); the other runs went on. "
                        f"`python main.py --resume {self.run_dir}` trains it again from {resume_from}.")
        self.save()
        if self._bars is not None:
            self._bars.finish(index)
        self._report_failure(index)
        return False

    # -- running ----------------------------------------------------------------------------
    def run(self) -> int:
        """Train every run that is not done yet. Returns 0 if all finished, 1 if some diverged or
        failed, 130 if interrupted."""
        todo = [i for i in range(len(self.plan)) if not self._done(i)]
        self._bars = _Bars(self.plan, len(self.plan) - len(todo), None if self.config["progress"] else True)
        with self.interrupt:
            try:
                self.executor.run(self, todo)
            except KeyboardInterrupt:
                self.interrupt.requested = True
                for run in self.history["runs"]:
                    if run["status"] == "running":
                        run["status"] = "stopped"
            finally:
                self._bars.close()
                self._bars = None
        if not self.interrupt.requested:
            self.history["finished"] = record.now_iso()
        self.save()
        record.release_lock(self.run_dir)
        for run, table in zip(self.history["runs"], self.tables):
            run["metrics"] = table.columns()
        if self.interrupt.requested:
            return 130
        statuses = [r["status"] for r in self.history["runs"]]
        return 0 if all(s == "finished" for s in statuses) else 1

    def save(self) -> None:
        """Write history.pkl: what changed since the last save is appended (:mod:`workbench.history_file`)."""
        self.history_file.save(self.history, self.tables)

    def _done(self, index: int) -> bool:
        return _run_ended(self.history, index)

    def _checkpoint_path(self, index: int) -> Path:
        return self.checkpoint_dir / f"run_{index:03d}.pt"

    def _finish(self, index: int, status: str, error: str | None) -> None:
        run = self.history["runs"][index]
        run["status"], run["error"] = status, error
        run.pop("lost_worker", None)
        if status == "stopped":
            self.interrupt.requested = True
        if status in FINAL_STATUSES:
            self._checkpoint_path(index).unlink(missing_ok=True)
        self.save()
        if self._bars is not None:
            self._bars.finish(index)
        if status in ("failed", "diverged"):
            self._report_failure(index)

    def _report_failure(self, index: int) -> None:
        run, spec = self.history["runs"][index], self.plan[index]
        if self.config["progress"] and run["error"]:
            reason = run["error"].strip().splitlines()[-1]
            tqdm.write(f"{spec['label']} seed={spec['seed']}: {run['status']}: {reason}", file=sys.stderr)

    def _driver_hooks(self, index: int, row: dict) -> None:
        """on_log for every arriving row; should_stop too when the run trains elsewhere."""
        hooks = self.hooks
        if hooks.on_log is None and (hooks.should_stop is None or isinstance(self.executor, InProcess)):
            return
        view = SimpleNamespace(index=index, step=int(row["step"]), epoch=row.get("epoch"), seconds=row.get("time"))
        if hooks.on_log is not None:
            hooks.on_log(view, row)
        if hooks.should_stop is not None and not isinstance(self.executor, InProcess) and hooks.should_stop(view):
            self.request_stop()

