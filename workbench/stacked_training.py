"""A stack of runs trained as one model (``stack = True``; :mod:`workbench.stacking` says which).

Each member is its own :class:`workbench.training.TrainingRun`: the same initial weights, batch
order, algorithm object (its optimizer, hyperparameters, state and learning-rate schedule),
schedule, rows, snapshots, checkpoints and status as its separate run. What the members share is
the arithmetic of the forward and backward: their weights are stacked along a leading member
dimension (:class:`StackedModel`), each member's batch is gathered from its own batch order into an
``[M, B, ...]`` tensor, and one backward of the sum of the members' mean losses gives every member
its own gradient (the members do not interact). Each member's optimizer then updates its slice of
the stack in place (:class:`MemberOptimizers`).

Whenever a member's weights are read (an evaluation, a snapshot, a checkpoint), they are copied out
of the stack into the member's model (``materialise``), so evaluations, snapshots and checkpoints
are exactly the separate run's code on the member's numbers, and a checkpoint is a separate run's
checkpoint: a stacked record resumes unstacked and the reverse. A member that ends (diverged, its
target reached) leaves the stack, which goes on with the others; an exception fails every member
still training. The numbers equal the separate runs' to rounding, not bitwise: a batched matmul
sums in another order than one member's.
"""
from __future__ import annotations

import time
import traceback
from collections import defaultdict

import torch
from torch.func import functional_call, vmap

from workbench import messages as m
from workbench.errors import ConfigError
from workbench.member_steps import DIRECT_STEPS
from workbench.training import Channel, TrainingRun, train_run


class StackedModel:
    """M copies of one architecture as ``[M, *shape]`` parameters (leaf tensors) and buffers.

    ``losses(problem, x, y)``: ``x`` [M, B, ...], ``y`` [M, B] -> the members' mean losses [M]
    (differentiable; member m's loss depends on member m's parameters only). A plain MLP
    (``nn.Sequential`` of Linear layers and elementwise activations, as the ``mlp`` model builds)
    runs as batched matmuls in feature-major layout, ``h [M, features, B] <- W [M, out, in] @ h``,
    whose weight gradients come out in the weights' own layout (``torch.func.vmap`` of the module
    gives them transposed, and copying them back costs as much as the matmuls); any other model
    runs under ``vmap``."""

    def __init__(self, models: list[torch.nn.Module]):
        self.base = models[0]
        self.param_names = [name for name, _ in self.base.named_parameters()]
        self.buffer_names = [name for name, _ in self.base.named_buffers()]
        params = [dict(mm.named_parameters()) for mm in models]
        buffers = [dict(mm.named_buffers()) for mm in models]
        self.params = {name: torch.stack([p[name].detach() for p in params]).requires_grad_() for name in self.param_names}
        self.buffers = {name: torch.stack([b[name] for b in buffers]) for name in self.buffer_names}
        self.layers = _mlp_layers(self.base)

        def member_loss(params, buffers, x, y, problem):
            return problem.loss(functional_call(self.base, (params, buffers), (x,)), y)

        self._member_loss = member_loss

    def losses(self, problem, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.layers is None:
            return vmap(self._member_loss, in_dims=(0, 0, 0, 0, None), randomness="error")(
                self.params, self.buffers, x, y, problem)
        h = x.flatten(2).transpose(1, 2)  # [M, features, B]
        for kind, module, names in self.layers:
            if kind == "linear":
                weight = self.params[names[0]]
                h = torch.bmm(weight, h) if len(names) == 1 else torch.baddbmm(self.params[names[1]].unsqueeze(2), weight, h)
            elif kind == "act":
                h = module(h)
        out = h.transpose(1, 2)  # [M, B, outputs]
        if self.layers[-1][0] == "squeeze":
            out = out.flatten(1)
        return problem.member_losses(out, y)

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


# modules that act elementwise and hold nothing: an MLP of these runs feature-major
_ELEMENTWISE = (torch.nn.ReLU, torch.nn.Tanh, torch.nn.GELU, torch.nn.Sigmoid, torch.nn.SiLU, torch.nn.ELU,
                torch.nn.SELU, torch.nn.Identity, torch.nn.LeakyReLU, torch.nn.Softplus)


def _mlp_layers(model: torch.nn.Module) -> list[tuple] | None:
    """The layers of a plain MLP (``Flatten (Linear | activation)* [Flatten(0)]``, as
    :func:`workbench.models.mlp` builds) as (kind, module, parameter names); None for any other model."""
    modules = list(model.named_children())
    if (type(model) is not torch.nn.Sequential or len(modules) < 2 or not isinstance(modules[0][1], torch.nn.Flatten)
            or (modules[0][1].start_dim, modules[0][1].end_dim) != (1, -1)):
        return None
    modules = modules[1:]
    squeeze = isinstance(modules[-1][1], torch.nn.Flatten)
    if squeeze:
        if (modules[-1][1].start_dim, modules[-1][1].end_dim) != (0, -1):
            return None
        modules = modules[:-1]
    layers = []
    for name, module in modules:
        if type(module) is torch.nn.Linear:
            layers.append(("linear", None, (f"{name}.weight",) + ((f"{name}.bias",) if module.bias is not None else ())))
        elif type(module) in _ELEMENTWISE:
            layers.append(("act", module, ()))
        else:
            return None
    return layers + [("squeeze", None, ())] if squeeze else layers


class MemberOptimizers:
    """Each member's own optimizer, on its slice of the stacked parameters.

    A member's optimizer keeps its hyperparameters, state and learning-rate schedule; its parameters
    become views ``stacked[k]`` of the stack (contiguous, so fused kernels apply), its state is
    re-keyed to them, and its step updates the stack in place. ``state_dict()`` of a member's
    optimizer is therefore the separate run's, and its update is the separate run's update of the
    same gradient, bit for bit."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], models: list[torch.nn.Module], model: StackedModel):
        self.optimizers, self.model = optimizers, model
        self.views: list[dict[str, torch.Tensor]] = []
        for optimizer, member in zip(optimizers, models):
            name_of = {id(p): name for name, p in member.named_parameters()}
            trained = [p for group in optimizer.param_groups for p in group["params"]]
            if sorted(name_of.get(id(p), "") for p in trained) != sorted(model.param_names):
                raise ValueError("the optimizer does not train exactly the model's parameters: it cannot be stacked; "
                                 "set stack=False")
            self.views.append({name_of[id(p)]: p for p in trained})
        self._stack_views()

    def _stack_views(self) -> None:
        """Point every member's optimizer at its slice of the current stacked parameters."""
        for k, optimizer in enumerate(self.optimizers):
            old = self.views[k]
            new = {name: self.model.params[name].detach()[k] for name in old}
            by_old = {id(t): name for name, t in old.items()}
            for group in optimizer.param_groups:
                group["params"] = [new[by_old[id(p)]] for p in group["params"]]
            state = defaultdict(dict)
            state.update({new[by_old[id(p)]] if id(p) in by_old else p: value for p, value in optimizer.state.items()})
            optimizer.state = state
            self.views[k] = new
        self.addresses = [{name: v.data_ptr() for name, v in views.items()} for views in self.views]
        # the names of each optimizer's first group's parameters, in its order
        self.names = [[{id(v): name for name, v in views.items()}.get(id(p)) for p in optimizer.param_groups[0]["params"]]
                      for views, optimizer in zip(self.views, self.optimizers)]

    @torch.no_grad()
    def step(self) -> None:
        """Every member's update: its optimizer's direct step (:mod:`workbench.member_steps`) where
        there is one, else its ``optimizer.step()``."""
        params = self.model.params
        for k, optimizer in enumerate(self.optimizers):
            direct = DIRECT_STEPS.get(type(optimizer))
            if direct is not None:
                ordered = optimizer.param_groups[0]["params"]
                names = self.names[k]
                grads = [params[name].grad for name in names]
                if all(g is not None for g in grads) and direct(optimizer, ordered, [g[k] for g in grads]):
                    continue
            for name, view in self.views[k].items():
                grad = params[name].grad
                view.grad = None if grad is None else grad[k]
            optimizer.step()
            for name, view in self.views[k].items():
                view.grad = None
                if view.data_ptr() != self.addresses[k][name]:
                    raise ValueError(f"{type(optimizer).__name__} replaced the tensor of parameter {name!r} instead of "
                                     f"updating it in place (p.data = ...), so it cannot train in a stack; set "
                                     f"stack=False")
        for p in params.values():
            p.grad = None

    def keep(self, kept: list[int]) -> None:
        """Only the members at positions ``kept`` go on (after :meth:`StackedModel.keep`)."""
        self.optimizers = [self.optimizers[k] for k in kept]
        self.views = [self.views[k] for k in kept]
        self._stack_views()


class _Member(TrainingRun):
    """A run of a stack: its progress goes into the stack's one line."""

    def __init__(self, *args, stack: "StackedTraining", **kwargs):
        super().__init__(*args, **kwargs)
        self.stack = stack
        self.last_loss: float | None = None
        self.last_acc: float | None = None

    def materialise(self) -> None:
        self.stack.materialise(self)

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
        self.optimizer: MemberOptimizers | None = None
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
        member.end(status, error)

    # -- the stack --------------------------------------------------------------------------
    def _build(self, members: list[_Member]) -> None:
        self.active = members
        models = [mm.algo.model for mm in members]
        self.model = StackedModel(models)
        self.optimizer = MemberOptimizers([mm.algo.optimizer for mm in members], models, self.model)

    def materialise(self, member: _Member) -> None:
        """Copy ``member``'s weights out of the stack into its model (its optimizer holds its state)."""
        if member not in self.active:
            return  # it has left the stack: its algorithm holds its last numbers already
        self.model.write_member(self.active.index(member), member.algo.model)

    def _keep(self, statuses: dict) -> None:
        kept = [k for k, mm in enumerate(self.active) if mm.index not in statuses]
        if len(kept) == len(self.active):
            return
        for mm in self.active:
            if mm.index in statuses:  # its algorithm keeps its last weights
                self.materialise(mm)
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
        if len(statuses) == len(self.members):  # every run had used its budget already
            return
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
            # the lead's answers hold for the whole stack (its hooks see it once its step is counted)
            stop, save = _Once(self.active[0]._stop_requested), _Once(self.active[0]._save_due)
            ended = []
            for k, member in enumerate(self.active):
                metrics = {"train_loss": losses[k]}
                if schedulers[k] is not None:
                    metrics["lr"] = rates[k]
                end = member.after_step(metrics, stop, save)
                if end is not None:
                    ended.append((member, end))
            self.diverged += sum(end[0] == "diverged" for _, end in ended)
            self._progress(force=bool(ended))  # the display's last word on the runs that end here
            for member, end in ended:
                self._end(member, statuses, *end)
            self._keep(statuses)

    def _progress(self, force: bool = False) -> None:
        now = time.perf_counter()
        if (now - self.last_progress < 0.5 and not force) or not self.active:
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
    """``fn()`` called at most once, its answer kept: every member of a stack stops and
    checkpoints at the same step, so that a resume finds them at one step and stacks them again."""

    def __init__(self, fn):
        self.fn, self.answer = fn, None

    def __call__(self) -> bool:
        if self.answer is None:
            self.answer = bool(self.fn())
        return self.answer


def train_unit(problem, config, tasks: list[tuple[dict, bytes | None]], channel: Channel, **options) -> list[str]:
    """Train one unit of work: ``tasks`` is ``[(spec, checkpoint)]``, one run
    (:func:`workbench.training.train_run`) or the runs of a stack (:class:`StackedTraining`);
    returns their final statuses."""
    if len(tasks) == 1:
        return [train_run(problem, config, tasks[0][0], channel, tasks[0][1], **options)]
    return StackedTraining(problem, config, [spec for spec, _ in tasks], channel, **options).execute(
        [checkpoint for _, checkpoint in tasks])
