"""A stack of runs trained as one model (``stack = True``; :mod:`workbench.stacking` says which).

Each member is its own :class:`workbench.training.TrainingRun`: the same initial weights, batch
order, algorithm object (its optimizer's hyperparameters and learning-rate schedule), schedule,
rows, snapshots, checkpoints and status as its separate run. What the members share is the
arithmetic of a step: their weights are stacked along a leading member dimension
(:class:`StackedModel`: ``torch.func.functional_call`` under ``torch.func.vmap``), each member's
batch is gathered from its own batch order into an ``[M, B, ...]`` tensor, one backward of the sum
of the members' mean losses gives every member its own gradient (the members do not interact), and
one :class:`workbench.stacking.StackedUpdate` updates all of them.

Whenever a member's weights or optimizer state are read (an evaluation, a snapshot, a checkpoint),
they are copied out of the stack into the member's algorithm object (``materialise``), so
evaluations, snapshots and checkpoints are exactly the separate run's code on the member's
numbers, and a checkpoint is a separate run's checkpoint: a stacked record resumes unstacked and
the reverse. A member that ends (diverged, its target reached) leaves the stack, which goes on with
the others; an exception fails every member still training.
"""
from __future__ import annotations

import time
import traceback

import torch
from torch.func import functional_call, vmap

from workbench import messages as m
from workbench.errors import ConfigError
from workbench.stacking import STACKED_UPDATES, StackedUpdate
from workbench.training import Channel, TrainingRun


class StackedModel:
    """M copies of one architecture as ``[M, *shape]`` parameters (leaf tensors) and buffers.

    ``losses(problem, x, y)``: ``x`` [M, B, ...], ``y`` [M, B] -> the members' mean losses [M]
    (differentiable; member m's loss depends on member m's parameters only)."""

    def __init__(self, models: list[torch.nn.Module]):
        self.base = models[0]
        self.param_names = [name for name, _ in self.base.named_parameters()]
        self.buffer_names = [name for name, _ in self.base.named_buffers()]
        self.params = {name: torch.stack([dict(mm.named_parameters())[name].detach() for mm in models]).requires_grad_()
                       for name in self.param_names}
        self.buffers = {name: torch.stack([dict(mm.named_buffers())[name] for mm in models])
                        for name in self.buffer_names}

        def member_loss(params, buffers, x, y, problem):
            return problem.loss(functional_call(self.base, (params, buffers), (x,)), y)

        self._member_loss = member_loss

    def losses(self, problem, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return vmap(self._member_loss, in_dims=(0, 0, 0, 0, None), randomness="error")(
            self.params, self.buffers, x, y, problem)

    def write_member(self, k: int, model: torch.nn.Module) -> None:
        """Copy member ``k``'s weights and buffers into ``model`` (a module of the same architecture)."""
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.params[name][k])
            for name, b in model.named_buffers():
                b.copy_(self.buffers[name][k])

    def keep(self, kept: list[int]) -> None:
        """Only the members at positions ``kept`` go on."""
        index = torch.tensor(kept, device=next(iter(self.params.values())).device)
        self.params = {name: p.detach().index_select(0, index).requires_grad_() for name, p in self.params.items()}
        self.buffers = {name: b.index_select(0, index) for name, b in self.buffers.items()}


class StackedOptimizer:
    """The members' optimizers as one :class:`~workbench.stacking.StackedUpdate` on the stacked
    parameters, with conversions to and from each member's own optimizer state."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], model: StackedModel):
        self.optimizers, self.model = optimizers, model
        rule: type[StackedUpdate] = STACKED_UPDATES[type(optimizers[0])]
        self.update = rule([o.param_groups[0] for o in optimizers])
        # member m's parameter objects, in the stacked model's order
        self.member_params = [self._params_by_name(o, model) for o in optimizers]
        self.state: list[dict | None] = []
        for k, name in enumerate(model.param_names):
            self.state.append(self.update.stacked_state([o.state.get(params[k], {}) for o, params
                                                         in zip(optimizers, self.member_params)]))
            if self.state[-1] is not None:
                self.state[-1] = {key: (t.to(model.params[name].device) if key != "step" else t)
                                  for key, t in self.state[-1].items()}

    @staticmethod
    def _params_by_name(optimizer, model: StackedModel) -> list[torch.Tensor]:
        ordered = optimizer.param_groups[0]["params"]
        if len(ordered) != len(model.param_names):
            raise ValueError("the optimizer does not train every parameter of the model: it cannot be stacked")
        return list(ordered)

    @torch.no_grad()
    def step(self) -> None:
        for k, name in enumerate(self.model.param_names):
            p = self.model.params[name]
            if p.grad is None:
                continue
            if self.state[k] is None:
                self.state[k] = self.update.init_state(p)
            self.update.update(p, p.grad, self.state[k])
            p.grad = None

    def write_member(self, k: int) -> None:
        """Member ``k``'s optimizer state into its own optimizer (torch's format)."""
        optimizer = self.optimizers[k]
        for j, p in enumerate(self.member_params[k]):
            if self.state[j] is not None:
                optimizer.state[p] = self.update.member_state(self.state[j], k)

    def keep(self, kept: list[int]) -> None:
        self.optimizers = [self.optimizers[k] for k in kept]
        self.member_params = [self.member_params[k] for k in kept]
        self.update = type(self.update)([o.param_groups[0] for o in self.optimizers])
        for j, state in enumerate(self.state):
            if state is not None:
                self.state[j] = {key: t.index_select(0, torch.tensor(kept, device=t.device)) for key, t in state.items()}


class _Member(TrainingRun):
    """A run of a stack: its progress goes into the stack's one line."""

    def __init__(self, *args, stack: "StackedTraining", **kwargs):
        super().__init__(*args, **kwargs)
        self.stack = stack
        self.last_loss: float | None = None
        self.last_acc: float | None = None

    def materialise(self, optimizer_state: bool) -> None:
        self.stack.materialise(self, optimizer_state)

    def _progress(self, row: dict | None, force: bool = False) -> None:
        if row is not None:
            self.last_loss = row.get("train_loss", self.last_loss)
            self.last_acc = row.get("test_acc", row.get("val_acc", self.last_acc))


class StackedTraining:
    """Trains the planned runs ``specs`` as one stack (module docstring); every member reports
    through ``channel`` under its own index, as its separate run would."""

    def __init__(self, problem, config, specs: list[dict], channel: Channel, **options):
        indices = [spec["index"] for spec in specs]
        where = {**options.pop("where", {}), "stack": {"runs": indices, "size": len(indices)}}
        self.members = [_Member(problem, config, spec, channel, stack=self, where=where, **options) for spec in specs]
        self.problem, self.config, self.channel = problem, config, channel
        self.active: list[_Member] = []
        self.model: StackedModel | None = None
        self.optimizer: StackedOptimizer | None = None
        self.diverged = 0
        self.last_progress = 0.0

    def execute(self, checkpoints: list[bytes | None]) -> list[str]:
        """Train every member to its end (or a stop); their final statuses. Never raises for a
        failing stack: its members are recorded as failed and the other runs go on."""
        for member in self.members:
            member.announce()
        statuses: dict[int, str] = {}
        try:
            for member, checkpoint in zip(self.members, checkpoints):
                member.set_up(checkpoint)
            self._train(statuses)
        except KeyboardInterrupt:
            self._end_all(statuses, "stopped", None)
        except ConfigError as exc:
            self._end_all(statuses, "failed", f"ConfigError: {exc}")
        except Exception:  # noqa: BLE001  a failing stack fails its members; the other runs go on
            self._end_all(statuses, "failed", "while training in a stack of runs "
                          f"{[mm.index for mm in self.members]}:\n{traceback.format_exc()}")
        return [statuses[mm.index] for mm in self.members]

    def _end_all(self, statuses: dict, status: str, error: str | None) -> None:
        for member in self.members:
            if member.index not in statuses:
                statuses[member.index] = status
                member.end(status, error)

    def _end(self, member: _Member, statuses: dict, status: str, error: str | None) -> None:
        statuses[member.index] = status
        self.diverged += status == "diverged"
        member.end(status, error)

    # -- the stack --------------------------------------------------------------------------
    def _build(self, members: list[_Member]) -> None:
        self.active = members
        self.model = StackedModel([mm.algo.model for mm in members])
        self.optimizer = StackedOptimizer([mm.algo.optimizer for mm in members], self.model)

    def materialise(self, member: _Member, optimizer_state: bool) -> None:
        if member not in self.active:
            return  # it has left the stack: its algorithm holds its last numbers already
        k = self.active.index(member)
        self.model.write_member(k, member.algo.model)
        if optimizer_state:
            self.optimizer.write_member(k)

    def _keep(self, statuses: dict) -> None:
        kept = [k for k, mm in enumerate(self.active) if mm.index not in statuses]
        if len(kept) == len(self.active):
            return
        for k, mm in enumerate(self.active):
            if mm.index in statuses:  # its algorithm keeps its last numbers (a resume reads those)
                self.materialise(mm, True)
        self.active = [self.active[k] for k in kept]
        if self.active:
            self.model.keep(kept)
            self.optimizer.keep(kept)

    def _train(self, statuses: dict) -> None:
        sizes = set()
        for member in self.members:
            full, bs = member.begin_training()
            sizes.add(bs)
            if member.used_up():
                self._end(member, statuses, *member.finish())
        if len(sizes) > 1 or full:
            raise ValueError("the runs of a stack must share their batch size and train on mini-batches")
        self._build([mm for mm in self.members if mm.index not in statuses])
        problem, data = self.problem, self.problem.data
        while self.active:
            idx = torch.stack([mm.next_indices(bs) for mm in self.active])
            x, y = data.x_train[idx], data.y_train[idx]
            if problem.batch_transform is not None:
                pairs = [problem.batch_transform(x[k], y[k], mm.batch_gen) for k, mm in enumerate(self.active)]
                x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
            x = problem.inputs(x)
            schedulers = [mm.algo.scheduler for mm in self.active]
            rates = [mm.algo.optimizer.param_groups[0]["lr"] for mm in self.active]
            losses = self.model.losses(problem, x, y)
            losses.sum().backward()
            self.optimizer.step()
            losses = losses.detach()
            for scheduler in schedulers:
                if scheduler is not None:
                    scheduler.step()
            stop = any(mm._stop_requested() for mm in self.active)
            save = _Once(self.active[0]._save_due)
            for k, member in enumerate(self.active):
                metrics = {"train_loss": losses[k]}
                if schedulers[k] is not None:
                    metrics["lr"] = rates[k]
                ended = member.after_step(metrics, stop, save)
                if ended is not None:
                    self._end(member, statuses, *ended)
            self._keep(statuses)
            self._progress()

    def _progress(self) -> None:
        now = time.perf_counter()
        if now - self.last_progress < 0.5 or not self.active:
            return
        self.last_progress = now
        lead = self.active[0]
        losses = [mm.last_loss for mm in self.active if mm.last_loss is not None]
        accs = [mm.last_acc for mm in self.active if mm.last_acc is not None]
        facts = {"step": lead.state.step, "total": lead.schedule.total, "members": len(self.active),
                 "diverged": self.diverged, "epoch": lead.state.epoch + lead.state.position / self.problem.n_train,
                 "loss": sum(losses) / len(losses) if losses else None,
                 "acc": sum(accs) / len(accs) if accs else None}
        self.members[0].out.put(m.Progress(self.members[0].index, facts))


class _Once:
    """``fn()`` called at most once, its answer kept: every member of a stack checkpoints at the
    same step, so that a resume finds them at one step and stacks them again."""

    def __init__(self, fn):
        self.fn, self.answer = fn, None

    def __call__(self) -> bool:
        if self.answer is None:
            self.answer = bool(self.fn())
        return self.answer


def train_stack(problem, config, specs: list[dict], channel: Channel, checkpoints: list[bytes | None],
                **options) -> list[str]:
    """Train the planned runs ``specs`` as one stack (:class:`StackedTraining`); their statuses."""
    return StackedTraining(problem, config, specs, channel, **options).execute(checkpoints)
