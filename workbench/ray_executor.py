"""The Ray executor (``executor="ray"``): each run is a Ray task (``run_resources`` is what it asks
for), and each stack of runs (``stack = True``) one task asking for the sum of its runs' resources. The dataset goes into Ray's object store once per experiment; rows, snapshots and checkpoint
bytes come back through a mailbox actor, so nodes need neither the data folder nor the run folder.
What it relies on: :mod:`workbench.execution`.
"""
from __future__ import annotations

import os
import socket
import time
from collections import deque

from workbench.errors import ConfigError
from workbench.execution import ROOT, Driver, worker_config

RAY_INSTALL = "./setup.sh --with-ray   (Windows: setup.bat --with-ray; or: .venv/bin/python -m pip install -r requirements-ray.txt)"

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
    """ray.init for the config's ``ray_address`` (reusing an instance this process already has).

    ``None`` starts a new local instance (``address="local"``), never a cluster that happens to run
    on this machine (Ray's own rule for no address); it sees this machine's files, so the code
    travels on PYTHONPATH. A cluster gets the code shipped (Ray's ``working_dir``). Any failure is
    one line (a ConfigError), before any run folder exists."""
    ray = _import_ray()
    if address is not None:
        _check_reachable(address)
    if ray.is_initialized():
        return ray
    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address is None:
        options["address"] = "local"
        # its services listen on every interface (Ray 2.60 has no loopback-only mode): Ray's token
        # authentication, on by default for a local instance from 2.59 on, guards them
        options["runtime_env"] = {"env_vars": {"PYTHONPATH": str(ROOT)}}
    else:  # a cluster: ship the code (not the data, results or venv) to every node
        options["address"] = address
        options["runtime_env"] = {"working_dir": str(ROOT),
                                  "excludes": [".venv", "venv", "data", "results", ".git", "*.pt", "*.pkl"]}
    try:
        ray.init(**options)
    except Exception as exc:  # noqa: BLE001  Ray raises many kinds, with multi-line coloured texts
        raise ConfigError(_ray_failure(address, exc)) from None
    return ray


def _ray_failure(address: str | None, exc: BaseException) -> str:
    """One line: what Ray said (its first line, colours removed) and what to do about it."""
    import re

    said = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    text = f"could not {'start' if address is None else 'join'} Ray (ray_address={address!r}): " \
           f"{type(exc).__name__}: {said[0] if said else ''}"
    if address not in (None, "auto") or any(w in str(exc).lower() for w in ("auth", "token")):
        text += (". If the cluster uses token authentication (Ray >= 2.59 turns it on for clusters started with "
                 "`ray start`), set RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN, or the file `ray "
                 "get-auth-token` reads) in this shell, or run main.py on the head node with ray_address=\"auto\"")
    return text


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
_SPLIT_TENSORS = ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val")


def _split_to_numpy(data):
    """The dataset's tensors as numpy arrays: Ray stores those with one copy and reads them
    without one (a pickled tensor costs a serialisation on each side)."""
    import dataclasses

    return dataclasses.replace(data, **{k: getattr(data, k).numpy() for k in _SPLIT_TENSORS
                                        if getattr(data, k) is not None})


def _split_from_numpy(data):
    import dataclasses

    import torch

    return dataclasses.replace(data, **{k: torch.from_numpy(getattr(data, k).copy()) for k in _SPLIT_TENSORS
                                        if getattr(data, k) is not None})


def _ray_task(config, tasks: list, data, experiment_id: str, mailbox) -> list:
    """One unit of work (a run, or the runs of a stack: ``[(spec, checkpoint)]``) as a Ray task;
    returns ``[ref of its last post]``. ``data`` is the dataset as numpy arrays, read from the object
    store without a copy (a top-level argument: Ray resolves it before the task starts, so the task
    never blocks on it); the problem is built from it once per worker process and experiment."""
    from workbench.problem import build_problem, configure_torch, resolve_device
    from workbench.stacked_training import train_unit

    configure_torch(config)  # a Ray worker process may have trained another experiment's runs
    device = resolve_device(config["device"])  # "auto": the GPU Ray assigned to this task, if any
    key = (experiment_id, str(device))
    if key not in _RAY_PROBLEMS:
        _RAY_PROBLEMS.clear()
        _RAY_PROBLEMS[key] = build_problem(config, device, data=_split_from_numpy(data))
    channel = _RayChannel(mailbox)
    import ray

    train_unit(_RAY_PROBLEMS[key], config, tasks, channel, executor="ray task",
               where={"ray_node": ray.get_runtime_context().get_node_id()})
    return [channel.last]


def stack_resources(resources: dict, members: int, largest_node: dict) -> dict:
    """A stack's Ray resources: the sum of its members' ``resources``, each capped at what the
    largest node of the cluster has (a stack is one task, on one node)."""
    summed = {}
    for name, amount in resources.items():
        total = amount * members
        key = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}.get(name)
        if key is not None and largest_node.get(key):
            total = min(total, largest_node[key])
        summed[name] = total
    return summed


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

    def pid(self) -> int:
        return os.getpid()


class RayExecutor:
    name = "ray"
    in_process = False

    def __init__(self, config):
        self.ray = connect_ray(config["ray_address"])
        context = self.ray.get_runtime_context()
        # what the record's environment says of this executor: which Ray it used
        self.facts = {"ray_gcs_address": getattr(context, "gcs_address", None),
                      "ray_started_here": config["ray_address"] is None}
        workers = config["workers"]
        self.cap = workers if isinstance(workers, int) and workers > 1 else None  # None: Ray's resources decide

    def _new_mailbox(self):
        """The mailbox actor, on the driver's own node: losing another node never loses it."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=self.ray.get_runtime_context().get_node_id(), soft=False)
        self.mailbox = self.ray.remote(_Mailbox).options(num_cpus=0, scheduling_strategy=here).remote()
        return self.mailbox

    def _largest_node(self) -> dict:
        """The resources of the cluster's largest node (by CPUs)."""
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        return max(nodes, key=lambda r: r.get("CPU", 0), default={})

    def run(self, driver: Driver, todo: list[tuple[int, ...]]) -> None:
        """Tasks post their messages to the mailbox; the driver drains it. A lost mailbox (its
        process killed) loses the messages it held: every run in flight is then treated as lost
        (it trains again from its last checkpoint on the record) and a new mailbox takes over."""
        ray = self.ray
        config = worker_config(driver.config)
        resources = {"num_cpus": 1, **driver.config["run_resources"]}
        remote = ray.remote(_ray_task)
        task = remote.options(max_retries=0, **resources)
        largest = self._largest_node() if any(len(unit) > 1 for unit in todo) else {}

        def submit(unit: tuple[int, ...]):
            launch = task if len(unit) == 1 else remote.options(max_retries=0, **stack_resources(resources, len(unit),
                                                                                               largest))
            return launch.remote(config, [driver.prepare(index) for index in unit], data, driver.experiment_id, mailbox)
        mailbox = self._new_mailbox()
        data = ray.put(_split_to_numpy(driver.data()))
        waiting, pending = deque(todo), {}
        stop_sent = False

        def drain() -> bool:
            """Apply what the mailbox holds; False if the mailbox is lost."""
            try:
                batches = ray.get(mailbox.take.remote())
            except ray.exceptions.RayActorError:
                return False
            for messages in batches:
                driver.apply(messages)
            return True

        try:
            while True:
                stopping = driver.stop_requested()
                while waiting and not stopping and (self.cap is None or len(pending) < self.cap):
                    unit = waiting.popleft()
                    pending[submit(unit)] = unit
                if not pending:
                    break
                if stopping and not stop_sent:
                    ray.wait([mailbox.request_stop.remote()], timeout=10)
                    stop_sent = True
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.1)
                if not drain():
                    mailbox, stop_sent = self._mailbox_lost(driver, pending, waiting), False
                    continue
                for ref in ready:
                    unit = pending.pop(ref)
                    try:
                        ray.get(ray.get(ref))  # the task's last post is in the mailbox: so are the others
                        delivered = drain()
                    except Exception as exc:  # noqa: BLE001  the task's process or node was lost
                        delivered = drain()
                        reason = f"its Ray task was lost ({type(exc).__name__}: {str(exc).strip().splitlines()[0]})"
                        if delivered:
                            self._train_again(driver, unit, reason, waiting)
                    if not delivered:
                        pending[ref] = unit  # lost with the others in flight
                        mailbox, stop_sent = self._mailbox_lost(driver, pending, waiting), False
                        break
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            drain()
            ray.kill(mailbox)

    def _mailbox_lost(self, driver: Driver, pending: dict, waiting: deque):
        """Every run in flight lost its messages with the mailbox: cancel them, let the driver
        decide (train again from the last checkpoint on the record, or failed), and a new mailbox."""
        for ref, unit in list(pending.items()):
            self.ray.cancel(ref, force=True)
            self._train_again(driver, unit, "its messages' Ray mailbox (an actor on the driver's node) was lost", waiting)
        pending.clear()
        return self._new_mailbox()

    @staticmethod
    def _train_again(driver: Driver, unit: tuple[int, ...], reason: str, waiting: deque) -> None:
        """The runs of a lost task that had not ended: those the driver trains again go first."""
        again = [index for index in unit if not driver.ended(index) and driver.lost(index, reason)]
        if again:
            waiting.extendleft(reversed(driver.units(again)))
