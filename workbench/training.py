"""One planned run, trained by one function that every executor calls.

:func:`train_run` trains the run ``spec`` (one ``runs`` entry for one seed) on a problem and reports
everything the record needs as :mod:`workbench.messages` through a :class:`Channel`: the driver (the
``main.py`` process) is the only writer of the record, whether the run trains in its own process, in
a worker process or in a Ray task on another machine. :class:`workbench.schedule.Schedule` says what
is due after each step; :class:`TrainingRun` does it. The run's state, random streams and checkpoint
bytes live in :mod:`workbench.run_state`.
"""
from __future__ import annotations

import math
import os
import platform
import time
import traceback
from typing import Any, Callable, Protocol

import torch

from workbench import messages as m
from workbench import record
from workbench.algorithm import Algorithm
from workbench.errors import ConfigError
from workbench.problem import Problem, planned_steps, subnormals_flushed
from workbench.registry import ALGORITHMS
import workbench.plugins  # noqa: F401  (resolves torch.optim.NAME, torchvision.NAME, file.py:Class)
from workbench.run_state import (RunState, checkpoint_bytes, initial_model, read_checkpoint, rng_state,
                                 seed_everything, set_rng_state)
from workbench.schedule import Due, Schedule


class Channel(Protocol):
    """Where a run's messages go, and whether it is asked to stop."""

    flush_every: float  # seconds between sends of buffered rows (0: send every message at once)

    def send(self, messages: list[m.Message]) -> None: ...

    def stop_requested(self) -> bool: ...


def checkpoint_counts(data: bytes) -> tuple[int, int, int]:
    """(step, rows, snapshots) a checkpoint was taken at."""
    ckpt = read_checkpoint(data)
    return ckpt["step"], ckpt["rows"], ckpt["snapshots"]


def where_here(executor: str, device: torch.device) -> dict:
    return {"executor": executor, "host": platform.node(), "pid": os.getpid(), "device": str(device),
            "subnormals_flushed": subnormals_flushed()}


class _Outbox:
    """Buffers a run's messages and sends them every ``channel.flush_every`` seconds; consecutive
    rows travel as one :class:`~workbench.messages.Rows`."""

    def __init__(self, channel: Channel, index: int):
        self.channel, self.index = channel, index
        self.pending: list[m.Message] = []
        self.rows: list[dict] = []
        self.last = time.perf_counter()

    def put(self, message: m.Message, flush: bool = False) -> None:
        self._move_rows()
        self.pending.append(message)
        if flush or self.channel.flush_every == 0:
            self.flush()

    def row(self, row: dict) -> None:
        self.rows.append(row)
        if self.channel.flush_every == 0 or time.perf_counter() - self.last >= self.channel.flush_every:
            self.flush()

    def _move_rows(self) -> None:
        if self.rows:
            self.pending.append(m.Rows(self.index, self.rows))
            self.rows = []

    def flush(self) -> None:
        self._move_rows()
        if self.pending:
            messages, self.pending = self.pending, []
            self.channel.send(messages)
        self.last = time.perf_counter()


class TrainingRun:
    """Trains one planned run and reports it through a channel (module docstring).

    ``should_stop(state)`` (optional) is the experiment's stop hook; ``should_save(state)``
    (optional) replaces the ``save_every`` clock for checkpoints (both in-process only);
    ``where`` adds to what the record says about where the run trained (a Ray node's id).
    """

    def __init__(self, problem: Problem, config, spec: dict, channel: Channel, *,
                 executor: str = "this process", should_stop: Callable | None = None,
                 should_save: Callable | None = None, where: dict | None = None):
        self.tuning_trial = spec.get("phase") == "tune"
        if self.tuning_trial:  # a trial never evaluates on the test split, by construction
            problem = problem.without_test()
        self.problem, self.config, self.spec = problem, config, spec
        self.target_metric = validation_name(config["target_metric"]) if self.tuning_trial else config["target_metric"]
        self.index = spec["index"]
        self.out = _Outbox(channel, self.index)
        self.channel = channel
        self.executor, self.where = executor, where or {}
        self.should_stop_hook, self.should_save_hook = should_stop, should_save
        self.state = RunState(index=self.index)
        self.batch_gen = torch.Generator().manual_seed(spec["seed"])
        self.rows = 0               # rows of this run in the record
        self.snapshots = 0          # snapshots of this run in the record
        self.last_snapshot_step: int | None = None
        self.last_checkpoint = time.perf_counter()
        self.last_progress = 0.0
        self.algo: Algorithm | None = None
        self.schedule: Schedule | None = None
        self.loss_acc: torch.Tensor | None = None  # training loss summed since the last row
        self._perm_on_device: list = [None, None]

    def materialise(self) -> None:
        """Make ``self.algo``'s model hold the run's current weights before they are read (an
        evaluation, a snapshot, a checkpoint). A run that trains on its own holds them already; a
        member of a stack (:mod:`workbench.stacked_training`) copies them out of the stack."""

    # -- the whole run ----------------------------------------------------------------------
    def execute(self, checkpoint: bytes | None = None) -> str:
        """Train to the end (or a stop); returns the final status. Never raises for a failing run."""
        self.announce()
        status, error = "failed", None
        try:
            self.set_up(checkpoint)
            status, error = self._train()
        except KeyboardInterrupt:
            status = "stopped"
        except ConfigError as exc:  # found only once the run reports: the message says what to fix
            status, error = "failed", f"ConfigError: {exc}"
        except Exception:  # noqa: BLE001  a failing run is recorded; the others go on
            status, error = "failed", traceback.format_exc()
        self.end(status, error)
        return status

    def announce(self) -> None:
        """The run's Start message: where it trains."""
        self.out.put(m.Start(self.index, {**where_here(self.executor, self.problem.device), **self.where}), flush=True)

    def end(self, status: str, error: str | None) -> None:
        """The run's Done message."""
        self.out.put(m.Done(self.index, status, error), flush=True)

    def set_up(self, checkpoint: bytes | None) -> None:
        """The seed's initial weights, the algorithm, the schedule; then the checkpoint's state, or
        the first row and snapshot of a fresh start."""
        model = initial_model(self.problem, self.spec["seed"])
        seed_everything(self.spec["seed"])
        self.algo = ALGORITHMS[self.spec["algorithm"]](self.problem, model, seed=self.spec["seed"],
                                                       **self.spec["params"])
        self.schedule = Schedule(self.config, planned_steps(self.config, self.problem.n_train,
                                                            self.algo.full_batch),
                                 self.problem.steps_per_epoch(self.algo.full_batch))
        if checkpoint is not None:
            self._restore(read_checkpoint(checkpoint))
        else:
            self._fresh_start()

    def _fresh_start(self) -> None:
        algo = self.algo
        self.out.put(m.Reset(self.index, record.to_plain(algo.info()), record.to_plain(algo.summary_facts())))
        row = {"step": 0, "time": 0.0, "epoch": 0.0}
        row.update(algo.evaluate())
        self._check_target_metric(row)
        self._emit_row(row)
        self._snapshot()

    # -- the loop ---------------------------------------------------------------------------
    def next_indices(self, bs: int) -> torch.Tensor:
        """The indices (on the problem's device) of the run's next mini-batch in its own batch order."""
        state = self.state
        if state.perm is None:
            state.perm = torch.randperm(self.problem.n_train, generator=self.batch_gen)
        if self._perm_on_device[0] is not state.perm:  # one transfer of the permutation per epoch
            self._perm_on_device = [state.perm, state.perm.to(self.problem.device)]
        idx = self._perm_on_device[1][state.position: state.position + bs]
        state.position += idx.shape[0]
        return idx

    def _next_batch(self, full: bool, bs: int):
        problem, state, n = self.problem, self.state, self.problem.n_train
        data = problem.data
        if full:
            state.position = n
            x, y = data.x_train, data.y_train
        else:
            idx = self.next_indices(bs)
            x, y = data.x_train[idx], data.y_train[idx]
        if problem.batch_transform is not None:
            x, y = problem.batch_transform(x, y, self.batch_gen)
        return problem.inputs(x), y

    def begin_training(self) -> tuple[bool, int]:
        """Start the clock and the loss sum; returns (full batch, batch size)."""
        state = self.state
        full = self.algo.full_batch or self.problem.batch_size is None
        state.started = time.perf_counter()
        self.loss_acc = torch.zeros((), dtype=torch.float64, device=self.problem.device)
        self.loss_acc += state.loss_sum
        self._perm_on_device = [None, None]
        self._progress(None, force=True)
        return full, (self.problem.n_train if full else self.problem.batch_size)

    def used_up(self) -> bool:
        return self.schedule.used_up(self.state.step, self.state.elapsed)

    def finish(self) -> tuple[str, None]:
        """The run has used its budget: its last snapshot, and the status ``finished``."""
        if self.last_snapshot_step != self.state.step:
            self._snapshot()
        return "finished", None

    def _train(self) -> tuple[str, str | None]:
        full, bs = self.begin_training()
        if self.used_up():
            return self.finish()
        while True:
            x, y = self._next_batch(full, bs)
            ended = self.after_step(self.algo.step(x, y), self._stop_requested, self._save_due)
            if ended is not None:
                return ended

    def after_step(self, step_metrics: dict, stop_requested: Callable[[], bool],
                   save_due: Callable[[], bool]) -> tuple[str, str | None] | None:
        """Everything due after one update with ``step_metrics``: rows, evaluations, snapshots,
        checkpoints, the stop (``stop_requested()``: asked to stop, read once the step is counted;
        ``save_due()``: a checkpoint is due). Returns how the run ends at this step, else None."""
        algo, state, schedule = self.algo, self.state, self.schedule
        n = self.problem.n_train
        state.step += 1
        loss = step_metrics["train_loss"]
        self.loss_acc += loss.detach() if isinstance(loss, torch.Tensor) else float(loss)
        state.loss_count += 1
        wants_row, algo.wants_row = algo.wants_row, False
        epoch_done = state.position >= n
        if epoch_done:
            state.epoch += 1
            state.position, state.perm = 0, None
        seconds = state.seconds
        due = schedule.after_step(state.step, seconds, epoch_done, algo.converged, wants_row)
        stop = stop_requested()
        if due.row:
            ended = self._row(due, seconds, step_metrics, self.loss_acc)
            if ended is not None:
                return ended
        else:
            self._progress(None)
        if due.snapshot:
            self._snapshot()
        if stop:  # mid-row: the partial loss sum travels in the checkpoint
            state.loss_sum = self.loss_acc.item()
            self._checkpoint()
            return "stopped", None
        if due.finishing:  # the row above recorded the final state
            return self.finish()
        if due.row and save_due():
            self._checkpoint()
        return None

    def _row(self, due: Due, seconds: float, step_metrics: dict,
             loss_acc: torch.Tensor) -> tuple[str, str | None] | None:
        """Record the row that is due (the one host sync per row); returns how the run ends when
        it ends here: diverged, or finished at its target."""
        state = self.state
        state.loss_sum = loss_acc.item()
        row = {"step": state.step, "time": seconds, "epoch": state.epoch + state.position / self.problem.n_train}
        mean = state.loss_sum / state.loss_count
        # every training-loss point averages log_every steps (the last one of a run: the steps since
        # the previous point); a row due only for an evaluation or an epoch end carries none
        if state.step % self.config["log_every"] == 0 or due.finishing or not math.isfinite(mean):
            row["train_loss"] = mean
            loss_acc.zero_()
            state.loss_sum, state.loss_count = 0.0, 0
        for key, value in step_metrics.items():
            if key != "train_loss":
                row[key] = float(value)
        if not math.isfinite(mean):
            self._emit_row(row)
            return "diverged", f"non-finite training loss {mean} at step {state.step}"
        if due.evaluate:
            self.materialise()
            row.update(self.algo.evaluate())
            self._check_target_metric(row)
        self._emit_row(row)
        self._progress(row, force=True)
        if self._target_reached(row):  # the step's own snapshot is the last one
            self._snapshot()
            return "finished", None
        return None

    def _stop_requested(self) -> bool:
        hook = self.should_stop_hook
        return self.channel.stop_requested() or bool(hook and hook(self.state))

    def _save_due(self) -> bool:
        if self.should_save_hook is not None:
            return self.should_save_hook(self.state)
        return self.schedule.save_due(self.last_checkpoint)

    def _check_target_metric(self, row: dict) -> None:
        """A ``target`` on a metric this algorithm does not report would never be reached; a
        tuning metric it does not report could choose nothing."""
        metric = self.target_metric
        if self.config["target"] is not None and metric not in row:
            raise ConfigError(
                f"target_metric={metric!r} is not reported by {self.spec['algorithm']!r}, so target="
                f"{self.config['target']} would never stop the run; its metrics: {', '.join(sorted(row))}. "
                f"Set target_metric to one of them")
        tuned = (self.config["tune"] or {}).get("metric")
        if self.tuning_trial and tuned and tuned not in row and tuned != "train_loss":
            raise ConfigError(f"tune metric={tuned!r} is not reported by {self.spec['algorithm']!r}; its evaluation "
                              f"reports {', '.join(sorted(row))}. Set tune's metric to one of the val_* names")

    def _target_reached(self, row: dict) -> bool:
        target, metric = self.config["target"], self.target_metric
        if target is None or metric not in row or not math.isfinite(row[metric]):
            return False
        higher_is_better = metric.endswith("acc") or metric.endswith("accuracy")
        return row[metric] >= target if higher_is_better else row[metric] <= target

    # -- reports ----------------------------------------------------------------------------
    def _emit_row(self, row: dict) -> None:
        self.rows += 1
        self.out.row(row)

    def _snapshot(self) -> None:
        self.materialise()
        snap = self.algo.snapshot()
        self.last_snapshot_step = self.state.step
        if snap is None:
            return
        self.snapshots += 1
        self.out.put(m.Snapshot(self.index, {"step": self.state.step, **record.to_plain(snap)}))

    def _progress(self, row: dict | None, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last_progress < 0.5:
            return
        self.last_progress = now
        facts = {"step": self.state.step, "total": self.schedule.total}
        if row is not None:
            facts.update(loss=row.get("train_loss"), epoch=row["epoch"], acc=row.get("test_acc", row.get("val_acc")))
        self.out.put(m.Progress(self.index, facts))

    def _checkpoint(self) -> None:
        state = self.state
        data = None
        if self.config["checkpoint"]:
            self.materialise()
            data = checkpoint_bytes({
                "algorithm": self.algo.state_dict(), "step": state.step, "epoch": state.epoch,
                "position": state.position, "perm": state.perm, "elapsed": state.seconds,
                "rng": rng_state(self.batch_gen), "rows": self.rows, "snapshots": self.snapshots,
                "loss_sum": state.loss_sum, "loss_count": state.loss_count,
                "last_snapshot_step": self.last_snapshot_step,
            })
        self.out.put(m.Checkpoint(self.index, data), flush=True)
        self.last_checkpoint = time.perf_counter()

    def _restore(self, ckpt: dict) -> None:
        self.algo.load_state_dict(ckpt["algorithm"])
        state = self.state
        state.step, state.epoch, state.position = ckpt["step"], ckpt["epoch"], ckpt["position"]
        state.perm, state.elapsed = ckpt["perm"], ckpt["elapsed"]
        state.loss_sum, state.loss_count = ckpt["loss_sum"], ckpt["loss_count"]
        self.rows, self.snapshots = ckpt["rows"], ckpt["snapshots"]
        self.last_snapshot_step = ckpt.get("last_snapshot_step")
        set_rng_state(ckpt["rng"], self.batch_gen)


def validation_name(metric: str) -> str:
    """A tuning trial's name for a test metric (``test_acc`` -> ``val_acc``): a trial's ``target``
    is read on the validation split."""
    return "val_" + metric.removeprefix("test_") if metric.startswith("test_") else metric


def train_run(problem: Problem, config, spec: dict, channel: Channel, checkpoint: bytes | None = None,
              **options: Any) -> str:
    """Train one planned run (see :class:`TrainingRun`); returns its final status."""
    return TrainingRun(problem, config, spec, channel, **options).execute(checkpoint)

