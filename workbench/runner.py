"""The run loop: one record per experiment, one run per (seed, runs entry).

config -> problem (data on device, model factory, loss) -> for each seed: initial weights built once
-> for each ``runs`` entry: a copy of those weights, the same batch order, the algorithm's steps ->
metrics, snapshots and checkpoints -> ``history.pkl`` (see :mod:`workbench.record`).

Hooks (the reference framework's stop / log / save design, with its bugs fixed):

* ``should_stop(state) -> bool``: checked after every step; True stops the experiment as an
  interruption (status ``stopped``, checkpoint kept, ``--resume`` continues). Ctrl-C does the same.
* ``on_log(state, row)``: called with every metrics row (after evaluation, if one was due).
* ``should_save(state) -> bool``: when to write history + checkpoint; default every ``save_every`` s.

Budget stops (``epochs``, ``max_steps``, ``max_time``, ``target``) end a run as ``finished``.
"""
from __future__ import annotations

import copy
import math
import random
import shutil
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench import record
from workbench.algorithm import Algorithm
from workbench.problem import Problem
from workbench.registry import ALGORITHMS, DATASETS, MODELS, ConfigError, load_all

FINAL_STATUSES = ("finished", "diverged", "failed")


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
    status: str = "running"
    started: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return self.elapsed + time.perf_counter() - self.started


@dataclass
class Hooks:
    should_stop: Callable[[RunState], bool] | None = None
    on_log: Callable[[RunState, dict], None] | None = None
    should_save: Callable[[RunState], bool] | None = None


class _Interrupt:
    """First Ctrl-C asks the loop to stop at the next step boundary; a second one raises."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not in the main thread: Ctrl-C keeps its default behaviour
            self._previous = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_problem(config: dict, device: torch.device | None = None) -> Problem:
    """The dataset (loaded once, moved to the device and dtype) and a model factory."""
    load_all()
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    device = device or resolve_device(config["device"])
    dtype = getattr(torch, config["dtype"])
    dataset_fn = DATASETS[config["dataset"]]
    model_fn = MODELS[config["model"]]
    try:
        data = dataset_fn(Path(config["data_dir"]), config["subset"], **config["dataset_args"])
    except TypeError as exc:
        raise ConfigError(f"dataset {config['dataset']!r}: {exc} (check dataset_args)") from exc
    if config["subset"] is not None:
        data.x_train, data.y_train = data.x_train[: config["subset"]], data.y_train[: config["subset"]]

    def place(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

    data.x_train, data.y_train = place(data.x_train), place(data.y_train)
    data.x_test, data.y_test = place(data.x_test), place(data.y_test)

    def build_model() -> torch.nn.Module:
        try:
            model = model_fn(data.input_shape, data.n_outputs, **config["model_args"])
        except TypeError as exc:
            raise ConfigError(f"model {config['model']!r}: {exc} (check model_args)") from exc
        return model.to(device=device, dtype=dtype)

    batch_size = config["batch_size"]
    return Problem(data=data, build_model=build_model, device=device, dtype=dtype, batch_size=batch_size)


def plan_runs(config: dict) -> list[dict]:
    """One entry per (seed, runs entry), seeds outermost, with resolved parameters and a label.

    Every entry is checked before anything trains: unknown algorithms and parameters fail here.
    """
    load_all()
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
    return [
        {"algorithm": name, "label": label, "params": params, "seed": seed}
        for seed in config["seeds"] for name, label, params in entries
    ]


def default_label(algorithm: str, given: dict) -> str:
    """``algorithm`` plus the parameters the config set explicitly, e.g. ``sgd lr=0.1``."""
    shown = " ".join(f"{k}={v}" for k, v in given.items() if k != "snapshot_every")
    return f"{algorithm} {shown}".strip()


def _new_run_record(spec: dict) -> dict:
    return {
        "label": spec["label"], "algorithm": spec["algorithm"], "params": record.to_plain(spec["params"]),
        "seed": spec["seed"], "status": "running", "error": None, "info": {},
        "metrics": {}, "snapshots": {},
    }


def _rng_state(batch_gen: torch.Generator) -> dict:
    state = {
        "python": random.getstate(), "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(), "batch": batch_gen.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, batch_gen: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    batch_gen.set_state(state["batch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------
# the experiment


class Experiment:
    """Runs every planned run of a config and keeps the record on disk up to date."""

    def __init__(self, config: dict, run_dir: Path, history: dict, hooks: Hooks | None = None,
                 config_path: Path | None = None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.history = history
        self.hooks = hooks or Hooks()
        self.plan = plan_runs(config)
        self.device = resolve_device(config["device"])
        self.problem: Problem | None = None
        self.interrupt = _Interrupt()
        self.last_save = time.perf_counter()
        self.checkpoint_dir = self.run_dir / "checkpoints"

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(cls, config: dict, config_path: str | Path | None = None, hooks: Hooks | None = None) -> "Experiment":
        plan_runs(config)  # fail on a bad `runs`, dataset or model before a folder exists
        device = resolve_device(config["device"])
        problem = build_problem(config, device)
        run_dir = record.new_run_dir(config["out_dir"], config["name"])
        if config_path is not None:
            shutil.copyfile(config_path, run_dir / "config.py")
        history = {
            "name": config["name"], "config": record.to_plain(config),
            "created": record.now_iso(), "finished": None,
            "environment": record.environment(device), "runs": [],
        }
        record.save_history(run_dir, history)
        experiment = cls(config, run_dir, history, hooks)
        experiment.problem = problem
        return experiment

    @classmethod
    def resume(cls, run_dir: str | Path, hooks: Hooks | None = None) -> "Experiment":
        run_dir = Path(run_dir)
        history = record.load_history(run_dir)
        from workbench.config import DEFAULTS

        config = {**copy.deepcopy(DEFAULTS), **history["config"]}
        history["finished"] = None
        history.setdefault("resumed", []).append(record.now_iso())
        return cls(config, run_dir, history, hooks)

    # -- running ----------------------------------------------------------------------------
    def run(self) -> int:
        """Train every run that is not done yet. Returns 0 if all finished, 1 if some diverged or
        failed, 130 if interrupted."""
        if self.problem is None:
            self.problem = build_problem(self.config, self.device)
        with self.interrupt:
            outer = tqdm(total=len(self.plan), desc="runs", unit="run", disable=self._quiet(), position=0)
            try:
                for index, spec in enumerate(self.plan):
                    if self.interrupt.requested:
                        break
                    existing = self._record_of(index)
                    if existing is not None and existing["status"] in FINAL_STATUSES:
                        outer.update(1)
                        continue
                    outer.set_postfix_str(f"{spec['label']} seed={spec['seed']}")
                    self._run_one(index, spec)
                    outer.update(1)
            except KeyboardInterrupt:
                self.interrupt.requested = True
            finally:
                outer.close()
        if not self.interrupt.requested:
            self.history["finished"] = record.now_iso()
        self.save()
        if self.interrupt.requested:
            return 130
        statuses = [r["status"] for r in self.history["runs"]]
        return 0 if all(s == "finished" for s in statuses) else 1

    def save(self) -> None:
        record.save_history(self.run_dir, self.history)
        self.last_save = time.perf_counter()

    def _quiet(self) -> bool | None:
        return None if self.config["progress"] else True  # None: tqdm hides itself without a TTY

    def _record_of(self, index: int) -> dict | None:
        runs = self.history["runs"]
        return runs[index] if index < len(runs) else None

    def _initial_model(self, seed: int) -> torch.nn.Module:
        """The seed's initial weights, built once and cached; every run gets a deep copy."""
        cached = getattr(self, "_init_cache", None)
        if cached is None or cached[0] != seed:
            seed_everything(seed)
            self._init_cache = (seed, self.problem.build_model())
        return copy.deepcopy(self._init_cache[1])

    def _run_one(self, index: int, spec: dict) -> None:
        run = self._record_of(index)
        if run is None:
            run = _new_run_record(spec)
            self.history["runs"].append(run)
        run["status"], run["error"] = "running", None
        metrics = record.MetricTable(run["metrics"])
        state = RunState(index=index)
        batch_gen = torch.Generator().manual_seed(spec["seed"])
        try:
            model = self._initial_model(spec["seed"])
            seed_everything(spec["seed"])
            algo: Algorithm = ALGORITHMS[spec["algorithm"]](self.problem, model, **spec["params"])
            checkpoint = self.checkpoint_dir / f"run_{index:03d}.pt"
            if checkpoint.is_file() and len(metrics):
                self._restore(checkpoint, algo, state, batch_gen, run, metrics)
            else:
                metrics = record.MetricTable()
                run["metrics"], run["snapshots"] = metrics.columns, {}
                run["info"] = record.to_plain(algo.info())
                row = {"step": 0, "time": 0.0, "epoch": 0.0}
                row.update(algo.evaluate())
                metrics.add_row(row)
                self._snapshot(algo, state, run)
            self._train(algo, state, batch_gen, run, metrics, spec)
        except KeyboardInterrupt:
            self.interrupt.requested = True
            run["status"] = "stopped"
        except Exception:
            run["status"] = "failed"
            run["error"] = traceback.format_exc()
        finally:
            self.save()
        if run["status"] in ("failed", "diverged") and self.config["progress"]:
            reason = run["error"].strip().splitlines()[-1]
            tqdm.write(f"{spec['label']} seed={spec['seed']}: {run['status']}: {reason}")

    def _steps_per_epoch(self, algo: Algorithm) -> int:
        n, bs = self.problem.n_train, self.problem.batch_size
        return 1 if (algo.full_batch or bs is None) else math.ceil(n / bs)

    def _train(self, algo, state: RunState, batch_gen, run, metrics, spec) -> None:
        cfg = self.config
        data = self.problem.data
        n = self.problem.n_train
        full = algo.full_batch or self.problem.batch_size is None
        bs = n if full else self.problem.batch_size
        steps_per_epoch = self._steps_per_epoch(algo)
        budget = [b for b in (cfg["max_steps"], cfg["epochs"] and cfg["epochs"] * steps_per_epoch) if b]
        total = min(budget) if budget else None
        bar = tqdm(total=total, initial=state.step, desc=f"{spec['label']} seed={spec['seed']}",
                   unit="step", leave=False, disable=self._quiet(), position=1, dynamic_ncols=True)
        state.started = time.perf_counter()
        loss_acc = torch.zeros((), dtype=torch.float64, device=self.problem.device)
        loss_acc += state.loss_sum
        last_metrics: dict[str, Any] = {}
        perm_on_device = None  # (CPU perm, its copy on the device): one transfer per epoch
        done = (total is not None and state.step >= total) or (
            cfg["max_time"] is not None and state.elapsed >= cfg["max_time"])  # a resumed run at its budget
        try:
            while not done:
                if full:
                    x, y = data.x_train, data.y_train
                    state.position = n
                else:
                    if state.perm is None:
                        state.perm = torch.randperm(n, generator=batch_gen)
                    if perm_on_device is None or perm_on_device[0] is not state.perm:
                        perm_on_device = (state.perm, state.perm.to(self.problem.device))
                    idx = perm_on_device[1][state.position: state.position + bs]
                    x, y = data.x_train[idx], data.y_train[idx]
                    state.position += idx.shape[0]
                step_metrics = algo.step(x, y)
                state.step += 1
                loss = step_metrics["train_loss"]
                loss_acc += loss.detach() if isinstance(loss, torch.Tensor) else float(loss)
                state.loss_count += 1
                last_metrics = step_metrics
                epoch_done = state.position >= n
                if epoch_done:
                    state.epoch += 1
                    state.position, state.perm = 0, None
                eval_due = (state.step % cfg["eval_every"] == 0) if cfg["eval_every"] else epoch_done
                seconds = state.seconds
                finishing = (total is not None and state.step >= total) or (
                    cfg["max_time"] is not None and seconds >= cfg["max_time"])
                log_due = (state.step % cfg["log_every"] == 0 or epoch_done or eval_due or finishing
                           or bool(step_metrics.get("log_row", False)))
                stop_requested = self.interrupt.requested or bool(
                    self.hooks.should_stop and self.hooks.should_stop(state))
                if log_due:
                    state.loss_sum = loss_acc.item()  # the one host sync per row
                    row = {"step": state.step, "time": seconds,
                           "epoch": state.epoch + state.position / n,
                           "train_loss": state.loss_sum / state.loss_count}
                    for key, value in last_metrics.items():
                        if key not in ("train_loss", "log_row"):
                            row[key] = float(value)
                    loss_acc.zero_()
                    state.loss_sum, state.loss_count = 0.0, 0
                    if not math.isfinite(row["train_loss"]):
                        metrics.add_row(row)
                        run["status"] = "diverged"
                        run["error"] = f"non-finite training loss {row['train_loss']} at step {state.step}"
                        self._drop_checkpoint(state)
                        return
                    if eval_due or finishing:
                        row.update(algo.evaluate())
                    metrics.add_row(row)
                    bar.set_postfix(loss=f"{row['train_loss']:.4g}", epoch=f"{row['epoch']:.2f}",
                                    **({"acc": f"{row['test_acc']:.2f}"} if "test_acc" in row and eval_due else {}))
                    if self.hooks.on_log:
                        self.hooks.on_log(state, row)
                    if self._target_reached(row):
                        break
                bar.update(1)
                if cfg["snapshot_every"] and state.step % cfg["snapshot_every"] == 0:
                    self._snapshot(algo, state, run)
                if stop_requested:  # mid-row: the partial loss sum travels in the checkpoint
                    self.interrupt.requested = True
                    run["status"] = "stopped"
                    state.loss_sum = loss_acc.item()
                    self._checkpoint(algo, state, batch_gen, run, metrics)
                    return
                if finishing:
                    break  # the row above recorded the final state
                if log_due and self._save_due(state):
                    self._checkpoint(algo, state, batch_gen, run, metrics)
            if run["snapshots"].get("step", [None])[-1] != state.step:
                self._snapshot(algo, state, run)
            run["status"] = "finished"
            self._drop_checkpoint(state)
        finally:
            bar.close()

    def _save_due(self, state: RunState) -> bool:
        """Saves happen on row boundaries only, so the checkpoint and the rows on disk agree."""
        if self.hooks.should_save is not None:
            return self.hooks.should_save(state)
        return time.perf_counter() - self.last_save >= self.config["save_every"]

    def _target_reached(self, row: dict) -> bool:
        target, metric = self.config["target"], self.config["target_metric"]
        if target is None or metric not in row or not math.isfinite(row[metric]):
            return False
        higher_is_better = metric.endswith("acc") or metric.endswith("accuracy")
        return row[metric] >= target if higher_is_better else row[metric] <= target

    def _snapshot(self, algo: Algorithm, state: RunState, run: dict) -> None:
        snap = algo.snapshot()
        if snap is None:
            return
        snapshots = run["snapshots"]
        snapshots.setdefault("step", []).append(state.step)
        for key, value in snap.items():
            snapshots.setdefault(key, []).append(record.to_plain(value))

    # -- checkpoints ------------------------------------------------------------------------
    def _checkpoint(self, algo, state: RunState, batch_gen, run, metrics) -> None:
        """Write the checkpoint and the history together, at a row boundary (so a resumed run
        continues exactly from the last row on disk)."""
        if self.config["checkpoint"]:
            self.checkpoint_dir.mkdir(exist_ok=True)
            record.save_checkpoint(self.checkpoint_dir / f"run_{state.index:03d}.pt", {
                "algorithm": algo.state_dict(), "step": state.step, "epoch": state.epoch,
                "position": state.position, "perm": state.perm, "elapsed": state.seconds,
                "rng": _rng_state(batch_gen), "rows": len(metrics),
                "loss_sum": state.loss_sum, "loss_count": state.loss_count,
                "snapshots": len(run["snapshots"].get("step", [])),
            })
        self.save()

    def _restore(self, path: Path, algo, state: RunState, batch_gen, run, metrics) -> None:
        ckpt = record.load_checkpoint(path)
        algo.load_state_dict(ckpt["algorithm"])
        state.step, state.epoch, state.position = ckpt["step"], ckpt["epoch"], ckpt["position"]
        state.perm, state.elapsed = ckpt["perm"], ckpt["elapsed"]
        state.loss_sum, state.loss_count = ckpt["loss_sum"], ckpt["loss_count"]
        _set_rng_state(ckpt["rng"], batch_gen)
        for column in metrics.columns.values():  # rows written after the checkpoint are redone
            del column[ckpt["rows"]:]
        for column in run["snapshots"].values():
            del column[ckpt["snapshots"]:]

    def _drop_checkpoint(self, state: RunState) -> None:
        (self.checkpoint_dir / f"run_{state.index:03d}.pt").unlink(missing_ok=True)
