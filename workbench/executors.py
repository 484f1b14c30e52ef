"""Executors on this machine: where the planned runs train (:mod:`workbench.execution` says what
they rely on; Ray's is :mod:`workbench.ray_executor`).

A unit of work is one run, or the runs of a stack (``stack = True``), trained together.

* :class:`InProcess` (``workers=1``, or ``"auto"`` with one unit): one unit after another in this
  process, sharing the problem.
* :class:`LocalWorkers` (``workers=N``, ``executor="local"``): N worker processes on this machine
  (standard library ``multiprocessing``). Each worker has the problem (the dataset on its device)
  once and reuses it for every unit it trains; it talks to the driver over its own pipe, so a worker
  that dies breaks only its own unit. Start method: *spawn* (a fresh interpreter that imports torch
  and loads the dataset, about 2-3 s; the only method on Windows and the default on macOS), except
  on Linux for CPU runs with one thread per run, where *fork* starts a worker in milliseconds with
  the driver's problem already in memory (copy-on-write). Fork is not used with CUDA (a forked
  child cannot initialise it) nor with several threads per run (OpenMP's thread pool does not
  survive a fork: the child would hang in its first parallel region).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import wait

from workbench.execution import Driver, DriverGone, resolved_workers, threads_per_run, worker_config


def make_executor(config, runs: int | None = None):
    """The executor a config asks for, for ``runs`` runs to train; fails (ConfigError) before any
    run folder exists when Ray is missing or its cluster unreachable."""
    if config["executor"] == "ray":
        from workbench.ray_executor import RayExecutor

        return RayExecutor(config)
    workers = resolved_workers(config, runs)
    return InProcess() if workers == 1 else LocalWorkers(workers)


# ---------------------------------------------------------------------------------------------
# in this process

class _DirectChannel:
    flush_every = 0.0

    def __init__(self, driver: Driver):
        self.driver = driver

    def send(self, messages):
        self.driver.apply(messages)

    def stop_requested(self):
        return self.driver.stop_requested()


class InProcess:
    name = "this process"
    in_process = True  # the runs call the driver's hooks themselves

    def run(self, driver: Driver, todo: list[tuple[int, ...]]) -> None:
        from workbench.stacked_training import train_unit

        problem = driver.problem()
        for unit in todo:
            if driver.stop_requested():
                break
            train_unit(problem, driver.config, [driver.prepare(index) for index in unit], _DirectChannel(driver),
                       executor=self.name, should_stop=driver.should_stop, should_save=driver.should_save)


# ---------------------------------------------------------------------------------------------
# worker processes on this machine

class _PipeChannel:
    flush_every = 0.25

    def __init__(self, conn, interrupted):
        self.conn, self.interrupted = conn, interrupted
        self.stop = False

    def send(self, messages):
        try:
            self.conn.send(messages)
        except (OSError, EOFError):  # BrokenPipeError: the driver's end is closed
            raise DriverGone from None

    def stop_requested(self):
        try:
            while not self.stop and self.conn.poll():
                if self.conn.recv() == "stop":
                    self.stop = True
        except (OSError, EOFError):
            raise DriverGone from None
        return self.stop or self.interrupted()


def _exit_when_orphaned(parent: int) -> None:
    """A worker's watchdog: the driver that started it is gone (this process was re-parented), so
    it exits within a second, wherever its main thread is blocked."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def _worker_main(conn, config, problem=None, inherited=()) -> None:
    """A worker process: build the problem once (unless forked with the driver's), then train the
    runs the driver sends. ``inherited``: the driver's pipe ends a fork copied (its own included),
    closed here, so that the driver's death closes the pipe and the worker sees it. It exits
    quietly when its driver is gone (:class:`DriverGone`, or re-parented: :func:`_exit_when_orphaned`)."""
    for other in inherited:
        other.close()
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    try:
        _serve(conn, config, problem)
    except DriverGone:
        pass


def _serve(conn, config, problem) -> None:
    interrupted = {"flag": False}

    def on_signal(signum, frame):  # Ctrl-C in the terminal reaches every process of the group
        interrupted["flag"] = True
    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if sig is not None:
            signal.signal(sig, on_signal)
    from workbench.problem import build_problem, configure_torch, resolve_device
    from workbench.stacked_training import train_unit

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
        if problem is None:
            problem = build_problem(config, resolve_device(config["device"]))
        train_unit(problem, config, task, channel, executor="worker process")


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


def start_method(config, device) -> str:
    """"fork" where it is safe and fast (module docstring), else "spawn"."""
    import torch

    forkable = (sys.platform.startswith("linux") and device.type == "cpu"
                and threads_per_run(config) == 1 and not torch.cuda.is_initialized())
    return "fork" if forkable else "spawn"


class _Worker:
    def __init__(self, ctx, config, problem=None, others=()):
        self.conn, child = ctx.Pipe()
        inherited = [w.conn for w in others] + [self.conn] if problem is not None else []
        self.proc = ctx.Process(target=_worker_main, args=(child, config, problem, inherited), daemon=True)
        self.proc.start()
        child.close()
        self.unit: list[int] = []   # the runs it trains (one, or a stack), until each reports Done

    @property
    def alive(self) -> bool:
        return self.proc.is_alive() and not self.conn.closed


class LocalWorkers:
    name = "worker processes"
    in_process = False

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, driver: Driver, todo: list[tuple[int, ...]]) -> None:
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
                    if not w.unit and queue and not stopping:
                        if not w.alive:  # died between runs: a fresh one takes its place
                            w = pool[k] = new_worker()
                        w.unit = list(queue.popleft())
                        w.conn.send([driver.prepare(index) for index in w.unit])
                busy = [w for w in pool if w.unit]
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
    def _receive(driver: Driver, w) -> bool:
        """Apply what worker ``w`` sent; False if it died."""
        try:
            while w.conn.poll():
                done = driver.apply(w.conn.recv())
                w.unit = [index for index in w.unit if index not in done]
        except (EOFError, OSError):
            return False
        return not w.unit or w.proc.is_alive()

    @staticmethod
    def _replace(driver: Driver, new_worker, pool, w, queue) -> None:
        reason = f"worker process {w.proc.pid} {_exit_reason(w.proc)}"
        again = [index for index in w.unit if driver.lost(index, reason)]
        if again:
            queue.extendleft(reversed(driver.units(again)))
        w.conn.close()
        w.unit = []
        if queue:
            pool[pool.index(w)] = new_worker()
