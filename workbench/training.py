"""One planned run, trained by one function that every executor calls.

:func:`train_run` trains the run ``spec`` (one ``runs`` entry for one seed) on a problem and reports
everything the record needs through a :class:`Channel`: the driver (the ``main.py`` process) is the
only writer of the record, whether the run trains in its own process, in a worker process or in a
Ray task on another machine. Messages, in the order they are sent::

    ("start", index, where)            where = {"executor", "host", "pid", "device"}
    ("reset", index, info, facts)      a fresh start: the record's rows and snapshots are cleared
    ("rows", index, [row, ...])        metric rows (dicts of floats), in step order
    ("snapshot", index, snapshot)      the algorithm's snapshot with its "step"
    ("progress", index, facts)         {"step", "total", "loss", "epoch"} for the progress bars
    ("checkpoint", index, data)        bytes of a resumable checkpoint (None with checkpoint=False):
                                       the driver writes the history first, then the checkpoint
    ("done", index, status, error)     finished | stopped | diverged | failed, and the error text

A checkpoint holds the counts of rows and snapshots the record had when it was taken, so a resumed
run drops what was recorded after it and redoes exactly those steps.

Randomness of one run (the seeding block): the seed fixes, whichever process trains the run,

* the initial weights: ``seed_everything(seed)`` then the model factory (the same for every entry);
* the batch order: a CPU ``torch.Generator`` seeded with ``seed``, one permutation per epoch;
* the algorithm's own streams: the global generators are re-seeded with ``seed`` just before the
  algorithm is built, and their states travel in every checkpoint.
"""
from __future__ import annotations

import copy
import io
import math
import os
import platform
import random
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch

from workbench import record
from workbench.algorithm import Algorithm
from workbench.problem import Problem
from workbench.registry import ALGORITHMS, ConfigError

FINAL_STATUSES = ("finished", "diverged", "failed")


class Channel(Protocol):
    """Where a run's messages go, and whether it is asked to stop."""

    flush_every: float  # seconds between sends of buffered rows (0: send every message at once)

    def send(self, messages: list[tuple]) -> None: ...

    def stop_requested(self) -> bool: ...


@dataclass
class RunState:
    """Where one run stands; everything the loop needs to continue after a checkpoint."""

    index: int                      # position in the experiment's plan
    step: int = 0
    epoch: int = 0
    position: int = 0               # examples of the current epoch already used
    perm: torch.Tensor | None = None  # batch order of the current epoch (CPU, int64)
    elapsed: float = 0.0            # training seconds before the current session
    loss_sum: float = 0.0           # training loss accumulated since the last row
    loss_count: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return self.elapsed + time.perf_counter() - self.started


def seed_everything(seed: int) -> None:
    """The random streams of a run, all from its seed:

    * Python's, numpy's and torch's global generators (seeded here): the model's initial
      weights (drawn once per seed, :func:`initial_model`), dropout, anything an algorithm draws
      from the global generator;
    * the batch order: a ``torch.Generator`` of the run (``TrainingRun.batch_gen``);
    * the algorithm's own streams, from the ``seed`` it is built with (``Algorithm.seed``):
      growth's proposals, relu_prox's projections, relu_convex's and relu_gd's sampled gates,
      and newton_summary's hg batches from ``Algorithm.stream_seed("hg")`` (a batch order of its
      own: seeded with the seed itself it would repeat the training batches).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(batch_gen: torch.Generator) -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state(), "batch": batch_gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, batch_gen: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    batch_gen.set_state(state["batch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def initial_model(problem: Problem, seed: int) -> torch.nn.Module:
    """The seed's initial weights: built once per problem and seed, every run gets a deep copy."""
    cache = problem.__dict__.setdefault("_initial_models", {})
    if seed not in cache:
        cache.clear()  # runs are planned seed by seed: keep one seed's weights at a time
        seed_everything(seed)
        cache[seed] = problem.build_model()
    return copy.deepcopy(cache[seed])


def configure_torch(config: dict) -> None:
    """This process's torch settings for training: ``threads`` (when set) and the subnormal mode.

    ``flush_denormal`` (default True): CPU arithmetic flushes subnormal floats to zero (below
    1.2e-38 in float32, 2.2e-308 in float64), which x86 computes about 100x slower; AdamW's second
    moments on MNIST reach them within a few epochs. The mode is per thread and torch's intra-op
    threads inherit it when they are created, so it is set here, before the run's first parallel
    work (in a process whose thread pool already exists, only the calling thread changes)."""
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    torch.set_flush_denormal(bool(config.get("flush_denormal", False)))


def subnormals_flushed() -> bool:
    """Whether this thread's CPU arithmetic flushes subnormals (torch cannot report its mode)."""
    return bool((torch.tensor([2.0 ** -1070], dtype=torch.float64) * 1.0 == 0.0).item())


def cpu_can_flush() -> bool:
    """Whether this CPU can flush subnormals (``torch.set_flush_denormal`` says so); the mode is left as it was."""
    before = subnormals_flushed()
    supported = torch.set_flush_denormal(True)
    torch.set_flush_denormal(before)
    return supported


def checkpoint_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def read_checkpoint(data: bytes) -> dict:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def where_here(executor: str, device: torch.device) -> dict:
    return {"executor": executor, "host": platform.node(), "pid": os.getpid(), "device": str(device),
            "subnormals_flushed": subnormals_flushed()}


class _Outbox:
    """Buffers a run's messages and sends them every ``channel.flush_every`` seconds."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.pending: list[tuple] = []
        self.rows: list[dict] = []
        self.last = time.perf_counter()

    def put(self, message: tuple, flush: bool = False) -> None:
        self._move_rows()
        self.pending.append(message)
        if flush or self.channel.flush_every == 0:
            self.flush()

    def row(self, index: int, row: dict) -> None:
        self.rows.append((index, row))
        if self.channel.flush_every == 0 or time.perf_counter() - self.last >= self.channel.flush_every:
            self.flush()

    def _move_rows(self) -> None:
        if self.rows:
            self.pending.append(("rows", self.rows[0][0], [r for _, r in self.rows]))
            self.rows = []

    def flush(self) -> None:
        self._move_rows()
        if self.pending:
            messages, self.pending = self.pending, []
            self.channel.send(messages)
        self.last = time.perf_counter()


def planned_steps(config: dict, n_train: int, full_batch: bool = False) -> int | None:
    """The steps a run's budget allows (``max_steps``, ``epochs``; a full-batch run takes one step
    an epoch); None when only ``max_time`` limits it."""
    per_epoch = 1 if (full_batch or config["batch_size"] is None) else math.ceil(n_train / config["batch_size"])
    budget = [b for b in (config["max_steps"], config["epochs"] and config["epochs"] * per_epoch) if b]
    return min(budget) if budget else None


class TrainingRun:
    """Trains one planned run and reports it through a channel (module docstring).

    ``should_stop(state)`` (optional) is the experiment's stop hook; ``should_save(state)``
    (optional) replaces the ``save_every`` clock for checkpoints (both in-process only).
    """

    def __init__(self, problem: Problem, config: dict, spec: dict, channel: Channel, *,
                 executor: str = "this process", should_stop: Callable | None = None,
                 should_save: Callable | None = None):
        self.problem, self.config, self.spec = problem, config, spec
        self.index = spec["index"]
        self.out = _Outbox(channel)
        self.channel = channel
        self.executor = executor
        self.should_stop_hook, self.should_save_hook = should_stop, should_save
        self.state = RunState(index=self.index)
        self.batch_gen = torch.Generator().manual_seed(spec["seed"])
        self.rows = 0               # rows of this run in the record
        self.snapshots = 0          # snapshots of this run in the record
        self.last_snapshot_step: int | None = None
        self.last_checkpoint = time.perf_counter()
        self.last_progress = 0.0
        self.algo: Algorithm | None = None

    # -- the whole run ----------------------------------------------------------------------
    def execute(self, checkpoint: bytes | None = None) -> str:
        """Train to the end (or a stop); returns the final status. Never raises for a failing run."""
        self.out.put(("start", self.index, where_here(self.executor, self.problem.device)), flush=True)
        status, error = "failed", None
        try:
            model = initial_model(self.problem, self.spec["seed"])
            seed_everything(self.spec["seed"])
            self.algo = ALGORITHMS[self.spec["algorithm"]](self.problem, model, seed=self.spec["seed"],
                                                           **self.spec["params"])
            if checkpoint is not None:
                self._restore(read_checkpoint(checkpoint))
            else:
                self._fresh_start()
            status, error = self._train()
        except KeyboardInterrupt:
            status = "stopped"
        except ConfigError as exc:  # found only once the run reports: the message says what to fix
            status, error = "failed", f"ConfigError: {exc}"
        except Exception:  # noqa: BLE001  a failing run is recorded; the others go on
            status, error = "failed", traceback.format_exc()
        self.out.put(("done", self.index, status, error), flush=True)
        return status

    def _fresh_start(self) -> None:
        algo = self.algo
        self.out.put(("reset", self.index, record.to_plain(algo.info()), record.to_plain(algo.summary_facts())))
        row = {"step": 0, "time": 0.0, "epoch": 0.0}
        row.update(algo.evaluate())
        self._check_target_metric(row)
        self._emit_row(row)
        self._snapshot()

    # -- the loop ---------------------------------------------------------------------------
    def _budget(self) -> int | None:
        return planned_steps(self.config, self.problem.n_train, self.algo.full_batch)

    def _next_batch(self, full: bool, bs: int, perm_on_device: list):
        data, state, n = self.problem.data, self.state, self.problem.n_train
        if full:
            state.position = n
            return data.x_train, data.y_train
        if state.perm is None:
            state.perm = torch.randperm(n, generator=self.batch_gen)
        if perm_on_device[0] is not state.perm:  # one transfer of the permutation per epoch
            perm_on_device[:] = [state.perm, state.perm.to(self.problem.device)]
        idx = perm_on_device[1][state.position: state.position + bs]
        state.position += idx.shape[0]
        return data.x_train[idx], data.y_train[idx]

    def _train(self) -> tuple[str, str | None]:
        cfg, algo, state = self.config, self.algo, self.state
        n = self.problem.n_train
        full = algo.full_batch or self.problem.batch_size is None
        bs = n if full else self.problem.batch_size
        total = self._budget()
        state.started = time.perf_counter()
        loss_acc = torch.zeros((), dtype=torch.float64, device=self.problem.device)
        loss_acc += state.loss_sum
        perm_on_device: list = [None, None]
        max_time = cfg["max_time"]
        done = (total is not None and state.step >= total) or (max_time is not None and state.elapsed >= max_time)
        self._progress(total, None, force=True)
        while not done:
            x, y = self._next_batch(full, bs, perm_on_device)
            step_metrics = algo.step(x, y)
            state.step += 1
            loss = step_metrics["train_loss"]
            loss_acc += loss.detach() if isinstance(loss, torch.Tensor) else float(loss)
            state.loss_count += 1
            wants_row, algo.wants_row = algo.wants_row, False
            epoch_done = state.position >= n
            if epoch_done:
                state.epoch += 1
                state.position, state.perm = 0, None
            eval_due = (state.step % cfg["eval_every"] == 0) if cfg["eval_every"] else epoch_done
            seconds = state.seconds
            finishing = ((total is not None and state.step >= total)
                         or (max_time is not None and seconds >= max_time) or algo.converged)
            log_due = state.step % cfg["log_every"] == 0 or epoch_done or eval_due or finishing or wants_row
            stop = self._stop_requested()
            if log_due:
                state.loss_sum = loss_acc.item()  # the one host sync per row
                row = {"step": state.step, "time": seconds, "epoch": state.epoch + state.position / n,
                       "train_loss": state.loss_sum / state.loss_count}
                for key, value in step_metrics.items():
                    if key != "train_loss":
                        row[key] = float(value)
                loss_acc.zero_()
                state.loss_sum, state.loss_count = 0.0, 0
                if not math.isfinite(row["train_loss"]):
                    self._emit_row(row)
                    return "diverged", f"non-finite training loss {row['train_loss']} at step {state.step}"
                if eval_due or finishing:
                    row.update(algo.evaluate())
                    self._check_target_metric(row)
                self._emit_row(row)
                self._progress(total, row, force=True)
                if self._target_reached(row):
                    break
            else:
                self._progress(total, None)
            if cfg["snapshot_every"] and state.step % cfg["snapshot_every"] == 0:
                self._snapshot()
            if stop:  # mid-row: the partial loss sum travels in the checkpoint
                state.loss_sum = loss_acc.item()
                self._checkpoint()
                return "stopped", None
            if finishing:
                break  # the row above recorded the final state
            if log_due and self._save_due():
                self._checkpoint()
        if self.last_snapshot_step != state.step:
            self._snapshot()
        return "finished", None

    def _stop_requested(self) -> bool:
        hook = self.should_stop_hook
        return self.channel.stop_requested() or bool(hook and hook(self.state))

    def _save_due(self) -> bool:
        """Checkpoints happen on row boundaries only, so a checkpoint and the rows agree."""
        if self.should_save_hook is not None:
            return self.should_save_hook(self.state)
        return time.perf_counter() - self.last_checkpoint >= self.config["save_every"]

    def _check_target_metric(self, row: dict) -> None:
        """A ``target`` on a metric this algorithm does not report would never be reached."""
        metric = self.config["target_metric"]
        if self.config["target"] is not None and metric not in row:
            raise ConfigError(
                f"target_metric={metric!r} is not reported by {self.spec['algorithm']!r}, so target="
                f"{self.config['target']} would never stop the run; its metrics: {', '.join(sorted(row))}. "
                f"Set target_metric to one of them")

    def _target_reached(self, row: dict) -> bool:
        target, metric = self.config["target"], self.config["target_metric"]
        if target is None or metric not in row or not math.isfinite(row[metric]):
            return False
        higher_is_better = metric.endswith("acc") or metric.endswith("accuracy")
        return row[metric] >= target if higher_is_better else row[metric] <= target

    # -- reports ----------------------------------------------------------------------------
    def _emit_row(self, row: dict) -> None:
        self.rows += 1
        self.out.row(self.index, row)

    def _snapshot(self) -> None:
        snap = self.algo.snapshot()
        self.last_snapshot_step = self.state.step
        if snap is None:
            return
        self.snapshots += 1
        self.out.put(("snapshot", self.index, {"step": self.state.step, **record.to_plain(snap)}))

    def _progress(self, total: int | None, row: dict | None, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last_progress < 0.5:
            return
        self.last_progress = now
        facts = {"step": self.state.step, "total": total}
        if row is not None:
            facts.update(loss=row["train_loss"], epoch=row["epoch"], acc=row.get("test_acc"))
        self.out.put(("progress", self.index, facts))

    def _checkpoint(self) -> None:
        state = self.state
        data = None
        if self.config["checkpoint"]:
            data = checkpoint_bytes({
                "algorithm": self.algo.state_dict(), "step": state.step, "epoch": state.epoch,
                "position": state.position, "perm": state.perm, "elapsed": state.seconds,
                "rng": _rng_state(self.batch_gen), "rows": self.rows, "snapshots": self.snapshots,
                "loss_sum": state.loss_sum, "loss_count": state.loss_count,
                "last_snapshot_step": self.last_snapshot_step,
            })
        self.out.put(("checkpoint", self.index, data), flush=True)
        self.last_checkpoint = time.perf_counter()

    def _restore(self, ckpt: dict) -> None:
        self.algo.load_state_dict(ckpt["algorithm"])
        state = self.state
        state.step, state.epoch, state.position = ckpt["step"], ckpt["epoch"], ckpt["position"]
        state.perm, state.elapsed = ckpt["perm"], ckpt["elapsed"]
        state.loss_sum, state.loss_count = ckpt["loss_sum"], ckpt["loss_count"]
        self.rows, self.snapshots = ckpt["rows"], ckpt["snapshots"]
        self.last_snapshot_step = ckpt.get("last_snapshot_step")
        _set_rng_state(ckpt["rng"], self.batch_gen)


def train_run(problem: Problem, config: dict, spec: dict, channel: Channel, checkpoint: bytes | None = None,
              **options: Any) -> str:
    """Train one planned run (see :class:`TrainingRun`); returns its final status."""
    return TrainingRun(problem, config, spec, channel, **options).execute(checkpoint)
