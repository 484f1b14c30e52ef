"""Executors: where the planned runs train. The driver (:class:`workbench.runner.Experiment`) keeps
the plan and the record; an executor trains runs with :func:`workbench.training.train_run` and
hands every message back to ``driver.apply``.

* :class:`InProcess` (``workers=1``): one run after another in this process, sharing the problem.
* :class:`LocalWorkers` (``workers=N``, ``executor="local"``): N worker processes on this machine
  (standard library ``multiprocessing``). Each worker has the problem (the dataset on its device)
  once and reuses it for every run it trains; it talks to the driver over its own pipe, so a worker
  that dies breaks only its own run. Start method: *spawn* (a fresh interpreter that imports torch
  and loads the dataset, about 2-3 s; the only method on Windows and the default on macOS), except
  on Linux for CPU runs with one thread per run, where *fork* starts a worker in milliseconds with
  the driver's problem already in memory (copy-on-write). Fork is not used with CUDA (a forked
  child cannot initialise it) nor with several threads per run (OpenMP's thread pool does not
  survive a fork: the child would hang in its first parallel region).
* :class:`RayExecutor` (``executor="ray"``): each run is a Ray task (``run_resources`` is what it
  asks for). The dataset goes into Ray's object store once per experiment; rows, snapshots and
  checkpoint bytes come back through a Ray queue, so nodes need neither the data folder nor the
  run folder.

What the driver provides: ``config``, ``prepare(index) -> (spec, checkpoint bytes or None)``,
``apply(messages) -> indices that reported "done"``, ``stop_requested()``, ``request_stop()``,
``lost(index, reason) -> bool`` (True: train it again from its last checkpoint), ``problem()``
(in-process) and ``data()`` (the CPU dataset, for Ray).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path

from workbench.registry import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXECUTORS = ("local", "ray")
RAY_INSTALL = "./setup.sh --with-ray   (Windows: setup.bat --with-ray; or: .venv/bin/python -m pip install -r requirements-ray.txt)"


def threads_per_run(config: dict, runs: int | None = None) -> int | None:
    """``threads``, or 1 when several runs share the machine and ``threads`` is unset."""
    if config["threads"]:
        return config["threads"]
    return 1 if resolved_workers(config, runs) > 1 or config["executor"] == "ray" else None


def resolved_workers(config: dict, runs: int | None = None) -> int:
    """``workers`` as a number: "auto" is the CPU count divided by the threads per run (>= 1),
    and no more than the ``runs`` left to train (one run: this process)."""
    workers = config["workers"]
    if workers == "auto":
        workers = max(1, (os.cpu_count() or 1) // (config["threads"] or 1))
        if runs is not None:
            workers = max(1, min(workers, runs))
    return workers


def worker_config(config: dict) -> dict:
    """The config a worker process or Ray task trains with: several runs share the machine, so
    each has one thread unless ``threads`` says otherwise."""
    return {**config, "threads": config["threads"] or 1}


def make_executor(config: dict, runs: int | None = None):
    """The executor a config asks for, for ``runs`` runs to train; fails (ConfigError) before any
    run folder exists when Ray is missing or its cluster unreachable."""
    if config["executor"] == "ray":
        return RayExecutor(config)
    workers = resolved_workers(config, runs)
    return InProcess() if workers == 1 else LocalWorkers(workers)


# ---------------------------------------------------------------------------------------------
# in this process

class _DirectChannel:
    flush_every = 0.0

    def __init__(self, driver):
        self.driver = driver

    def send(self, messages):
        self.driver.apply(messages)

    def stop_requested(self):
        return self.driver.stop_requested()


class InProcess:
    name = "this process"

    def run(self, driver, todo: list[int]) -> None:
        from workbench.training import train_run

        problem = driver.problem()
        hooks = driver.hooks
        for index in todo:
            if driver.stop_requested():
                break
            spec, checkpoint = driver.prepare(index)
            train_run(problem, driver.config, spec, _DirectChannel(driver), checkpoint,
                      executor=self.name, should_stop=hooks.should_stop, should_save=hooks.should_save)


# ---------------------------------------------------------------------------------------------
# worker processes on this machine

class _PipeChannel:
    flush_every = 0.25

    def __init__(self, conn, interrupted):
        self.conn, self.interrupted = conn, interrupted
        self.stop = False

    def send(self, messages):
        self.conn.send(messages)

    def stop_requested(self):
        while not self.stop and self.conn.poll():
            if self.conn.recv() == "stop":
                self.stop = True
        return self.stop or self.interrupted()


def _worker_main(conn, config: dict, problem=None, inherited=()) -> None:
    """A worker process: build the problem once (unless forked with the driver's), then train the
    runs the driver sends. ``inherited``: other workers' pipe ends a fork copied, closed here."""
    for other in inherited:
        other.close()
    interrupted = {"flag": False}

    def on_signal(signum, frame):  # Ctrl-C in the terminal reaches every process of the group
        interrupted["flag"] = True
    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if sig is not None:
            signal.signal(sig, on_signal)
    from workbench.runner import build_problem, resolve_device
    from workbench.training import configure_torch, train_run

    if problem is not None:  # forked: the driver's problem, this process's settings
        configure_torch(config)
    channel = _PipeChannel(conn, lambda: interrupted["flag"])
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # the driver is gone
        if task is None:
            return
        if task == "stop":
            channel.stop = True
            continue
        spec, checkpoint = task
        if problem is None:
            problem = build_problem(config, resolve_device(config["device"]))
        train_run(problem, config, spec, channel, checkpoint, executor="worker process")


def _exit_reason(proc) -> str:
    code = proc.exitcode
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name} (exit code {code})"
        except ValueError:  # not a signal number this platform knows
            pass
    return f"exited with code {code}"


def start_method(config: dict, device) -> str:
    """"fork" where it is safe and fast (module docstring), else "spawn"."""
    import torch

    forkable = (sys.platform.startswith("linux") and device.type == "cpu"
                and threads_per_run(config) == 1 and not torch.cuda.is_initialized())
    return "fork" if forkable else "spawn"


class _Worker:
    def __init__(self, ctx, config, problem=None, others=()):
        self.conn, child = ctx.Pipe()
        inherited = [w.conn for w in others] if problem is not None else []
        self.proc = ctx.Process(target=_worker_main, args=(child, config, problem, inherited), daemon=True)
        self.proc.start()
        child.close()
        self.index: int | None = None

    @property
    def alive(self) -> bool:
        return self.proc.is_alive() and not self.conn.closed


class LocalWorkers:
    name = "worker processes"

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, driver, todo: list[int]) -> None:
        config = worker_config(driver.config)
        method = start_method(config, driver.device)
        ctx = mp.get_context(method)
        problem = driver.problem() if method == "fork" else None
        queue = deque(todo)
        pool: list[_Worker] = []

        def new_worker():
            return _Worker(ctx, config, problem, pool)

        pool.extend(new_worker() for _ in range(min(self.workers, len(queue))))
        stop_sent = False
        try:
            while True:
                stopping = driver.stop_requested()
                for k, w in enumerate(pool):
                    if w.index is None and queue and not stopping:
                        if not w.alive:  # died between runs: a fresh one takes its place
                            w = pool[k] = new_worker()
                        w.index = queue.popleft()
                        w.conn.send(driver.prepare(w.index))
                busy = [w for w in pool if w.index is not None]
                if not busy:
                    break
                if stopping and not stop_sent:
                    for w in busy:
                        w.conn.send("stop")
                    stop_sent = True
                wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=0.25)
                for w in busy:
                    if not self._receive(driver, w):
                        self._replace(driver, new_worker, pool, w, queue)
        finally:
            for w in pool:
                try:
                    w.conn.send(None)
                except (OSError, ValueError):
                    pass
            deadline = time.perf_counter() + 2.0  # idle workers: no need to wait for a slow exit
            for w in pool:
                w.proc.join(timeout=max(0.0, deadline - time.perf_counter()))
                if w.proc.is_alive():
                    w.proc.terminate()
                    w.proc.join(timeout=5)

    @staticmethod
    def _receive(driver, w) -> bool:
        """Apply what worker ``w`` sent; False if it died."""
        try:
            while w.conn.poll():
                if w.index in driver.apply(w.conn.recv()):
                    w.index = None
        except (EOFError, OSError):
            return False
        return w.index is None or w.proc.is_alive()

    @staticmethod
    def _replace(driver, new_worker, pool, w, queue) -> None:
        reason = f"worker process {w.proc.pid} {_exit_reason(w.proc)}"
        if driver.lost(w.index, reason):
            queue.appendleft(w.index)
        w.conn.close()
        w.index = None
        if queue:
            pool[pool.index(w)] = new_worker()


# ---------------------------------------------------------------------------------------------
# Ray

def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"executor='ray' needs Ray, which is not installed. Install it with:\n  {RAY_INSTALL}") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail within seconds when ``host:port`` (``ray://host:port``) does not answer."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray_address {address!r} is not 'auto', 'host:port' or 'ray://host:port'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"ray_address {address!r}: cannot reach {host}:{port} ({exc}). Is the Ray head "
                          "running there (ray start --head) and the port open? Use ray_address=None for a "
                          "local Ray instance.") from None


def connect_ray(address: str | None):
    """ray.init for the config's ``ray_address`` (reusing an instance this process already has)."""
    ray = _import_ray()
    if address is not None:
        _check_reachable(address)
    if ray.is_initialized():
        return ray
    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address is None:  # a local instance sees this machine's files: the code is on PYTHONPATH
        options["runtime_env"] = {"env_vars": {"PYTHONPATH": str(ROOT)}}
    else:  # a cluster: ship the code (not the data, results or venv) to every node
        options["address"] = address
        options["runtime_env"] = {"working_dir": str(ROOT),
                                  "excludes": [".venv", "venv", "data", "results", ".git", "*.pt", "*.pkl"]}
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"could not start or join Ray (ray_address={address!r}): {exc}") from None
    return ray


class _RayChannel:
    """Messages go to the driver's mailbox actor; each post answers whether to stop.

    Nothing here blocks on Ray: a task blocked in ``ray.get`` lends its CPU back to the scheduler,
    which then starts another task (and often a new worker process) beside it. Posts are
    fire-and-forget (an actor runs one caller's calls in order); the answer of the last one is read
    once it is there. The task returns the ref of its last post, which the driver waits for, so
    every message is in the mailbox before the driver reads the task's result."""

    flush_every = 0.5

    def __init__(self, mailbox):
        import ray

        self.ray, self.mailbox = ray, mailbox
        self.last = None            # ref of the last post (its value: the stop flag)
        self.asked = None           # ref of a stop-flag poll in flight
        self.last_poll, self.stop = time.perf_counter(), False

    def send(self, messages):
        self.last = self.mailbox.post.remote(messages)

    def _answered(self, ref) -> bool:
        return ref is not None and bool(self.ray.wait([ref], timeout=0)[0])

    def stop_requested(self):  # called every step: Ray is asked at most every 0.5 s
        if self.stop or time.perf_counter() - self.last_poll < 0.5:
            return self.stop
        for ref in (self.last, self.asked):
            if self._answered(ref) and self.ray.get(ref):
                self.stop = True
        self.asked = self.mailbox.stopped.remote()
        self.last_poll = time.perf_counter()
        return self.stop


_RAY_PROBLEMS: dict = {}  # per Ray worker process: the experiment's problem, built once
_SPLIT_TENSORS = ("x_train", "y_train", "x_test", "y_test")


def _split_to_numpy(data):
    """The dataset's tensors as numpy arrays: Ray stores those with one copy and reads them
    without one (a pickled tensor costs a serialisation on each side)."""
    import dataclasses

    return dataclasses.replace(data, **{k: getattr(data, k).numpy() for k in _SPLIT_TENSORS})


def _split_from_numpy(data):
    import dataclasses

    import torch

    return dataclasses.replace(data, **{k: torch.from_numpy(getattr(data, k).copy()) for k in _SPLIT_TENSORS})


def _ray_task(config: dict, spec: dict, checkpoint, data, experiment_id: str, mailbox) -> list:
    """One run as a Ray task; returns ``[ref of its last post]``. ``data`` is the dataset as numpy
    arrays, read from the object store without a copy (a top-level argument: Ray resolves it
    before the task starts, so the task never blocks on it); the problem is built from it once per
    worker process and experiment."""
    from workbench.runner import build_problem, resolve_device
    from workbench.training import configure_torch, train_run

    configure_torch(config)  # a Ray worker process may have trained another experiment's runs
    device = resolve_device(config["device"])  # "auto": the GPU Ray assigned to this task, if any
    key = (experiment_id, str(device))
    if key not in _RAY_PROBLEMS:
        _RAY_PROBLEMS.clear()
        _RAY_PROBLEMS[key] = build_problem(config, device, data=_split_from_numpy(data))
    channel = _RayChannel(mailbox)
    train_run(_RAY_PROBLEMS[key], config, spec, channel, checkpoint, executor="ray task")
    return [channel.last]


class _Mailbox:
    """A Ray actor between the tasks and the driver: message batches in, a stop flag out."""

    def __init__(self):
        self.batches, self.stop = [], False

    def post(self, messages) -> bool:
        self.batches.append(messages)
        return self.stop

    def take(self) -> list:
        batches, self.batches = self.batches, []
        return batches

    def request_stop(self) -> None:
        self.stop = True

    def stopped(self) -> bool:
        return self.stop


class RayExecutor:
    name = "ray"

    def __init__(self, config: dict):
        self.ray = connect_ray(config["ray_address"])
        workers = config["workers"]
        self.cap = workers if isinstance(workers, int) and workers > 1 else None  # None: Ray's resources decide

    def run(self, driver, todo: list[int]) -> None:
        ray = self.ray
        config = worker_config(driver.config)
        resources = {"num_cpus": 1, **driver.config["run_resources"]}
        task = ray.remote(_ray_task).options(max_retries=0, **resources)
        mailbox = ray.remote(_Mailbox).options(num_cpus=0).remote()
        data = ray.put(_split_to_numpy(driver.data()))
        experiment_id = str(driver.run_dir)
        waiting, pending = deque(todo), {}
        stop_sent = False

        def drain():
            for messages in ray.get(mailbox.take.remote()):
                driver.apply(messages)

        try:
            while True:
                stopping = driver.stop_requested()
                while waiting and not stopping and (self.cap is None or len(pending) < self.cap):
                    index = waiting.popleft()
                    spec, checkpoint = driver.prepare(index)
                    pending[task.remote(config, spec, checkpoint, data, experiment_id, mailbox)] = index
                if not pending:
                    break
                if stopping and not stop_sent:
                    ray.get(mailbox.request_stop.remote())
                    stop_sent = True
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.1)
                drain()
                for ref in ready:
                    index = pending.pop(ref)
                    try:
                        ray.get(ray.get(ref))  # the task's last post is in the mailbox: so are the others
                        drain()
                    except Exception as exc:  # noqa: BLE001  the task's process or node was lost
                        reason = f"its Ray task was lost ({type(exc).__name__}: {str(exc).strip().splitlines()[0]})"
                        if driver.lost(index, reason):
                            waiting.appendleft(index)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            drain()
            ray.kill(mailbox)
