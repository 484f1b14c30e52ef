r"""Summaries of the loss along a partition: :math:`\bar H`, :math:`\bar g` and the diagonal third
derivatives, from one batch ``(x, y)`` and one direction :math:`u`.

With the partition :math:`T_1..T_S` of :math:`\theta \in \mathbb{R}^P` and the masked directions
:math:`v_s = u \odot 1[T_s]`, define :math:`F(t) = L(\theta + \sum_s t_s v_s)`, :math:`t \in \mathbb{R}^S`.
At :math:`t = 0`:

.. math::

    \bar g = \nabla_t F = V^\top g \ (S,), \qquad
    \bar H = \nabla^2_t F = V^\top H V \ (S, S), \qquad
    \text{order3}_s = \partial^3_{t_s} F = \tfrac{d^3}{d\tau^3} L(\theta + \tau v_s) \ (S,).

Backends (same numbers, different cost):

* ``"func"`` (needs ``model``): :mod:`torch.func` over the parameters (``functional_call``); one
  vmapped computation over the S masked directions :math:`v_s` gives :math:`H v_s` (vjp of the
  gradient) and :math:`v_s^\top \nabla_\theta (v_s^\top H v_s)` = order3_s (grad of that).
* ``"batched"`` (any closure): reverse-over-reverse autograd whose S double and S triple backward
  passes run as ONE vmapped backward each (``is_grads_batched``), not as a Python loop. Its third
  order pass backpropagates S cotangents through the S-batched graph (S^2 work): prefer it with
  ``order3=False``.
* ``"reverse"``: the plain loop of S double- and S triple-backward passes (the reference
  implementation's scheme), row s of :math:`\bar H` differentiated only w.r.t. subsets >= s and
  order3_s only w.r.t. subset s; the test oracle and the benchmark baseline.

* ``"compiled"`` (needs ``model``): the ``"reverse"`` loop traced into one aten graph
  (``make_fx`` through ``functional_call``, so the parameters, u, x and y are graph inputs;
  seconds), CSE and DCE, then compiled ahead of time by AOTInductor into a package stored in
  inductor's on-disk cache under the hash of the graph and its input shapes (:func:`package_dir`;
  tens of seconds, once per machine). A hint file keyed by the model's structure and forward
  code, the loss's code and the input signature names that package, so a later run loads it
  without tracing (a fraction of a second); its first refresh is computed by the reverse loop too
  and compared, and a package that disagrees is dropped for a trace.
  Same arithmetic as ``"reverse"`` (float round-off aside), no autograd-engine work per refresh.
  A new batch shape (a last partial batch) is another graph. Needs a C++ compiler on CPU.

``"auto"`` in :func:`compute_Hg` means ``"reverse"``; the optimizer's users that know how long a run
is pick with :func:`choose_backend` (the workbench's ``newton_summary`` does). On CPU the vmapped
backends are slower than the pruned loop, the more so the deeper the model: vmap turns the S
masked directions into dense (S, *p) tangents, so every direction pays for every layer, while the
loop's reverse passes skip the layers before subset s. They exist for devices where batching beats
that pruning (GPU). ``bench/newton_summary.py`` prints every backend's time per refresh, and
``bench/newton_summary_auto.py`` the compile, load and run totals behind :func:`choose_backend`.

Alternatives tried and dropped, all slower on CPU than the reverse loop they would replace:
pruned forward mode (order3_s as jvp(jvp(jvp)) of a function of subset s only); H-bar rows by
forward-over-reverse (jvp of ``grad`` w.r.t. subsets >= s); ``torch.autograd.forward_ad`` (nested
dual levels are not supported, so no order3 that way); ``torch.compile`` (aot_eager or inductor)
of the pruned torch.func refresh; ``make_fx`` + CSE + DCE of the pruned torch.func refresh or of a
pure forward-mode one. Why: each pruned torch.func call recomputes the forward prefix (nothing
shares the primal across subsets) and the jvp rules of linear/cross-entropy expand into several
times more ops, while the loop reuses one forward and one create_graph gradient graph. What pays
is removing the autograd engine and fusing the elementwise work, which ``"compiled"`` does. A
compile stall and a C++ toolchain are not acceptable for every user of :func:`compute_Hg`, so its
``"auto"`` is ``"reverse"``; :func:`choose_backend` decides for runs whose length is known.

``full_loss(x, y)`` must be a scalar, typically ``loss_fn(model(x), y)`` (mean over the batch).
Models with BatchNorm in training mode or dropout give summaries of a different loss than the
training one under ``"func"``/``"batched"`` (vmap); put them in eval mode first.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import weakref
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["compute_Hg", "compute_Hg_reverse", "flatten_groups", "check_direction", "choose_backend",
           "compiled_backend_available", "package_dir", "NotCompiled"]

BACKENDS = ("auto", "func", "batched", "reverse", "compiled")

# ``choose_backend``'s thresholds (bench/newton_summary_auto.py prints the figures they come from:
# refresh times of both backends, the first compiled refresh with and without a cached package).
AUTO_CACHED_REFRESHES = 400    # from here a cached package repays its load and check (about 1.5 s)
AUTO_COMPILE_REFRESHES = 7000   # from here a compile repays itself within the run


def compiled_backend_available(device: torch.device) -> tuple[bool, str]:
    """Whether ``backend="compiled"`` can run on ``device`` (inductor needs a C++ compiler on the
    CPU, triton on CUDA), and if not, why."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return (True, "") if has_triton() else (False, "triton is not installed")
    if device.type != "cpu":
        return False, f"no compiled backend for {device.type} here"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        compiler = get_cpp_compiler()
    except Exception as exc:  # noqa: BLE001  whatever inductor's search raises
        return False, f"inductor finds no C++ compiler ({exc})"
    if shutil.which(str(compiler).split()[0]) is None:
        return False, f"the C++ compiler {compiler!r} is not on PATH"
    return True, ""


def choose_backend(planned_refreshes: int | None, device: torch.device) -> tuple[str, bool, str]:
    """(backend, compile_missing, why) for ``backend="auto"`` in a run of ``planned_refreshes``
    refreshes (None: unknown, e.g. a run limited by time only): "reverse" below
    :data:`AUTO_CACHED_REFRESHES` or where inductor cannot compile; else "compiled", compiling a
    missing package only from :data:`AUTO_COMPILE_REFRESHES` (below, a package another run left
    in the on-disk cache is used, and the refreshes are reverse ones when there is none)."""
    if planned_refreshes is None or planned_refreshes < AUTO_CACHED_REFRESHES:
        planned = "an unknown number of" if planned_refreshes is None else str(planned_refreshes)
        return "reverse", False, (f"{planned} refreshes planned; the compiled backend repays loading a package from "
                                  f"{AUTO_CACHED_REFRESHES}")
    available, why = compiled_backend_available(device)
    if not available:
        return "reverse", False, why
    if planned_refreshes < AUTO_COMPILE_REFRESHES:
        return "compiled", False, (f"{planned_refreshes} refreshes planned: a compiled package from the cache, "
                                   f"none is compiled below {AUTO_COMPILE_REFRESHES}")
    return "compiled", True, f"{planned_refreshes} refreshes planned"


def flatten_groups(param_groups) -> tuple[list[Tensor], list[int]]:
    """Parameters in partition order and, for each, the index s of its subset."""
    params, gidx = [], []
    for s, group in enumerate(param_groups):
        tensors = group["params"] if isinstance(group, dict) else group
        tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
        if not tensors:
            raise ValueError(f"subset {s} of the partition is empty")
        params += tensors
        gidx += [s] * len(tensors)
    if not params:
        raise ValueError("the partition has no subset")
    if len({id(p) for p in params}) != len(params):
        raise ValueError("a parameter appears twice in the partition")
    return params, gidx


def check_direction(params: Sequence[Tensor], direction: Sequence[Tensor]) -> list[Tensor]:
    """The direction as a list matching ``params`` pairwise (partition order); shapes must agree.

    A direction built in another order (e.g. ``model.parameters()`` with the ``wb`` partition) is
    rejected here instead of being broadcast silently."""
    direction = list(direction)
    if len(direction) != len(params):
        raise ValueError(f"direction has {len(direction)} tensors, the partition {len(params)}")
    for i, (p, u) in enumerate(zip(params, direction)):
        if u.shape != p.shape:
            raise ValueError(f"direction tensor {i} has shape {tuple(u.shape)} but parameter {i} "
                             f"(partition order) has shape {tuple(p.shape)}")
    return [u.detach() for u in direction]




def compute_Hg(param_groups, full_loss: Callable[[Tensor, Tensor], Tensor], x, y,
               direction: Sequence[Tensor], *, model: torch.nn.Module | None = None,
               order3: bool = True, backend: str = "auto",
               chunk_size: int | None = None, compile_missing: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(H, g, order3)``: :math:`\\bar H` (S, S) symmetric, :math:`\\bar g` (S,), order3 (S,).

    Args:
        param_groups: the partition (list of dicts with ``"params"``, or of tensor lists).
        full_loss: ``full_loss(x, y) -> scalar`` evaluated at the current parameters.
        x, y: the batch on which the summaries are taken.
        direction: tensors shaped like the parameters, in partition order.
        model: the module whose parameters ``full_loss`` reads; enables the ``"func"`` backend.
        order3: compute the third derivatives (else zeros, saving the third-order pass).
        backend: ``"auto"`` (= ``"reverse"``), ``"func"``, ``"batched"``, ``"reverse"`` or
            ``"compiled"`` (fastest per refresh on CPU after a one-off compile of ~30 s).
        chunk_size: vmap chunk size over the S directions (bounds memory); None = all at once.
        compile_missing: with ``"compiled"``, compile when no package for this graph is cached on
            disk (else raise :class:`NotCompiled`).

    Returned tensors have the parameters' dtype and device, detached.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    params, gidx = flatten_groups(param_groups)
    u = check_direction(params, direction)
    if backend == "auto":
        backend = "reverse"
    if backend == "func":
        if model is None:
            raise ValueError("backend='func' needs the model whose parameters full_loss reads")
        return _hg_func(params, gidx, full_loss, x, y, u, model, order3, chunk_size)
    if backend == "compiled":
        if model is None:
            raise ValueError("backend='compiled' needs the model whose parameters full_loss reads")
        return _hg_compiled(params, gidx, full_loss, x, y, u, model, order3, compile_missing)
    if backend == "batched":
        return _hg_batched(params, gidx, full_loss, x, y, u, order3)
    return _hg_reverse(params, gidx, full_loss, x, y, u, order3)


def compute_Hg_reverse(param_groups, full_loss, x, y, direction, *, order3: bool = True):
    """The plain reverse-over-reverse loop (1 + S + S backward passes): oracle and baseline."""
    return compute_Hg(param_groups, full_loss, x, y, direction, order3=order3, backend="reverse")


# -- backends -------------------------------------------------------------------------------------
class _LossModule(torch.nn.Module):
    """Holds ``model`` as a child so ``functional_call`` can swap its parameters while the user's
    ``full_loss`` closure (which calls the very same model object) runs."""

    def __init__(self, model, full_loss):
        super().__init__()
        self.model = model
        self.full_loss = full_loss

    def forward(self, x, y):
        return self.full_loss(x, y)


def _hg_func(params, gidx, full_loss, x, y, u, model, order3, chunk_size):
    from torch.func import functional_call, grad, vjp, vmap

    names = {id(p): n for n, p in model.named_parameters()}
    missing = [i for i, p in enumerate(params) if id(p) not in names]
    if missing:
        raise ValueError(f"partition tensors {missing} are not parameters of the given model")
    keys = ["model." + names[id(p)] for p in params]
    base = {k: p.detach() for k, p in zip(keys, params)}
    wrapper = _LossModule(model, full_loss)
    S = max(gidx) + 1
    ref = params[0]
    index = torch.tensor(gidx, device=ref.device)

    def L(theta):
        return functional_call(wrapper, theta, (x, y))

    grad_L = grad(L)

    def q_and_hv(theta, v):  # (v^T H v, H v): reverse over reverse
        _, pullback = vjp(grad_L, theta)
        hv = pullback(v)[0]
        return sum((hv[k] * v[k]).sum() for k in keys), hv

    def contract(tensors):  # (S,) per-subset sums of <t_p, u_p>
        return ref.new_zeros(S).index_add(0, index, torch.stack([(tensors[k] * ui).sum() for k, ui in zip(keys, u)]))

    def per_direction(v):  # row s of H-bar and order3_s = v_s . grad(v_s^T H v_s)
        if order3:
            dq, hv = grad(q_and_hv, has_aux=True)(base, v)
            third = sum((dq[k] * v[k]).sum() for k in keys)
        else:
            _, hv = q_and_hv(base, v)
            third = ref.new_zeros(())
        return contract(hv), third

    V = {}  # masked directions, (S, *p): row s = u_p if p is in subset s else 0
    for k, ui, s in zip(keys, u, gidx):
        V[k] = ui.new_zeros((S,) + tuple(ui.shape))
        V[k][s] = ui
    with torch.no_grad():
        H, o3 = vmap(per_direction, chunk_size=chunk_size)(V)
        g = contract(grad_L(base))
    return 0.5 * (H + H.T), g, o3


_COMPILED = weakref.WeakKeyDictionary()  # model -> {signature: compiled refresh, or None: not cached}


class NotCompiled(Exception):
    """``compile_missing=False`` and no compiled package for this refresh graph on disk."""


def _param_keys(params, model):
    names = {id(p): n for n, p in model.named_parameters()}
    missing = [i for i, p in enumerate(params) if id(p) not in names]
    if missing:
        raise ValueError(f"partition tensors {missing} are not parameters of the given model")
    return ["model." + names[id(p)] for p in params]


def package_dir() -> Path:
    """Where compiled refresh packages live: ``newton_summary/`` in inductor's on-disk cache
    (``TORCHINDUCTOR_CACHE_DIR``, by default a folder of the system's temporary directory)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir()) / "newton_summary"


def _graph_key(gm: torch.fx.GraphModule, flat) -> str:
    """A hash of what the compiled code depends on: the traced graph's code, its tensor constants,
    the inputs' shapes, dtypes and device, and torch's version."""
    digest = hashlib.sha256()
    digest.update(torch.__version__.encode())
    digest.update(gm.code.encode())
    constants = [(n, getattr(gm, n)) for n in dir(gm) if n.startswith("_tensor_constant")]
    for name, value in sorted(constants, key=lambda item: item[0]):
        digest.update(name.encode())
        if isinstance(value, Tensor):
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    for t in flat:
        digest.update(repr((tuple(t.shape), t.dtype, t.device.type, t.requires_grad)).encode())
    return digest.hexdigest()[:32]


def _code_fingerprint(fn) -> bytes:
    """Bytes that change when a function's code, constants, names or closure values change."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return repr(type(fn)).encode()
    parts = [code.co_code, repr(code.co_consts).encode(), repr(code.co_names).encode(),
             repr(getattr(fn, "__defaults__", None)).encode()]
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            parts.append(repr(cell.cell_contents).encode())
        except ValueError:  # an empty cell
            parts.append(b"<empty>")
    return b"\0".join(parts)


def _hint_path(sig, model, full_loss) -> Path:
    """Where the name of the package compiled for this (model structure and forward code, loss
    code, signature) is written. A later run loads that package without tracing; its first refresh
    is checked against the reverse loop (:func:`_agrees`), so a stale hint costs one trace."""
    forwards = b"".join(_code_fingerprint(type(m).forward) for m in model.modules())
    key = repr((sig, repr(model), torch.__version__)).encode() + _code_fingerprint(full_loss) + forwards
    return package_dir() / "hints" / hashlib.sha256(key).hexdigest()[:32]


def _agrees(runner, flat, reference) -> bool:
    """Whether a package loaded from a hint (not from the traced graph's key) gives the reverse
    loop's (H, g, order3) on these inputs, to rounding; if not, the caller traces."""
    for a, b in zip(_run(runner, flat), reference):
        scale = max(float(b.abs().max()) if b.numel() else 0.0, 1e-30)
        if a.shape != b.shape or not bool(torch.isfinite(a).all()) or \
                float((a - b).abs().max()) > 1e4 * torch.finfo(b.dtype).eps * scale:
            return False
    return True


def _load_or_compile(gm: torch.fx.GraphModule, flat, compile_missing: bool, hint: Path):
    """The compiled refresh: an AOTInductor package from the on-disk cache (about a second to
    load), or, when missing and ``compile_missing``, compiled now (export + AOTInductor,
    tens of seconds) and stored there atomically for later runs; None when missing otherwise."""
    path = package_dir() / f"{_graph_key(gm, flat)}.pt2"
    if not path.is_file():
        if not compile_missing:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            program = torch.export.export(gm, tuple(t.clone() for t in flat), strict=False)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.pt2")
        try:
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    hint.parent.mkdir(parents=True, exist_ok=True)
    hint.write_text(path.name, encoding="utf-8")
    return torch._inductor.aoti_load_package(str(path))


def _hg_compiled(params, gidx, full_loss, x, y, u, model, order3, compile_missing: bool = True):
    """The "reverse" loop traced into one aten graph and compiled ahead of time (module
    docstring). Raises :class:`NotCompiled` when ``compile_missing`` is False and no package for
    the graph is cached on disk."""
    from torch._functorch.compile_utils import fx_graph_cse
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.func import functional_call

    if not (isinstance(x, Tensor) and isinstance(y, Tensor)):
        raise ValueError("backend='compiled' needs tensors x and y")
    keys = _param_keys(params, model)
    wrapper = _LossModule(model, full_loss)
    flat = [p.detach() for p in params] + list(u) + [x, y]
    sig = (tuple(keys), tuple(gidx), bool(order3), torch.is_grad_enabled(),
           tuple((tuple(t.shape), t.dtype, t.device, t.requires_grad) for t in flat))
    cache = _COMPILED.setdefault(model, {})
    if sig in cache and cache[sig] is not None:  # every refresh after the first: no hashing, no I/O
        return _run(cache[sig], flat)
    hint = _hint_path(sig, model, full_loss)
    if sig not in cache:
        hinted = package_dir() / hint.read_text(encoding="utf-8").strip() if hint.is_file() else None
        if hinted is not None and hinted.is_file():  # a later run: load without tracing, check once
            runner = torch._inductor.aoti_load_package(str(hinted))
            reference = _hg_reverse(params, gidx, full_loss, x, y, list(u), order3)
            if _agrees(runner, flat, reference):
                cache[sig] = runner
                return reference
        elif not compile_missing:
            cache[sig] = None  # nothing was ever compiled for it: no trace
    if sig not in cache or (cache[sig] is None and compile_missing):
        n = len(params)

        def refresh(*inputs):
            theta = [t.requires_grad_() for t in inputs[:n]]

            def loss(xb, yb):
                return functional_call(wrapper, dict(zip(keys, theta)), (xb, yb))

            return _hg_reverse(theta, gidx, loss, inputs[-2], inputs[-1], list(inputs[n:2 * n]), order3)

        example = [t.clone() for t in flat]  # tracing sets requires_grad on the parameter copies
        gm = make_fx(refresh)(*example)
        gm = torch.fx.GraphModule(gm, fx_graph_cse(gm.graph))
        gm.graph.eliminate_dead_code()
        gm.recompile()
        cache[sig] = _load_or_compile(gm, flat, compile_missing, hint)
    if cache[sig] is None:
        raise NotCompiled(f"no compiled refresh package for this model and batch shape in {package_dir()}")
    return _run(cache[sig], flat)


def _run(runner, flat) -> tuple[Tensor, Tensor, Tensor]:
    with torch.no_grad():
        H, g, o3 = runner(*flat)
    return H, g, o3


def _contract(tensors, u, gidx, S, batched: bool):
    """Per-subset contraction with u: (S,) or, for batched tensors (S, *shape), (S_batch, S)."""
    ref = tensors[0]
    out = ref.new_zeros((ref.shape[0], S) if batched else (S,))
    cols = []
    for t, ui in zip(tensors, u):
        cols.append((t * ui).reshape(ref.shape[0], -1).sum(1) if batched else (t * ui).sum())
    index = torch.tensor(gidx, device=ref.device)
    if batched:
        return out.index_add(1, index, torch.stack(cols, dim=1))
    return out.index_add(0, index, torch.stack(cols))


def _hg_batched(params, gidx, full_loss, x, y, u, order3):
    S = max(gidx) + 1
    with torch.enable_grad():
        loss = full_loss(x, y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        g = _contract(grads, u, gidx, S, batched=False)
        # V_p: (S, *p.shape), row s = u_p if p is in subset s else 0
        V = []
        for p, ui, s in zip(params, u, gidx):
            v = ui.new_zeros((S,) + tuple(p.shape))
            v[s] = ui
            V.append(v)
        HV = torch.autograd.grad(grads, params, grad_outputs=V, is_grads_batched=True,
                                 create_graph=order3, materialize_grads=True)
        H = _contract(HV, u, gidx, S, batched=True)  # H[s, t] = v_s^T H v_t
        if order3 and H.requires_grad:  # else H-bar is constant in theta: order3 = 0
            eye = torch.eye(S, dtype=H.dtype, device=H.device)
            G = torch.autograd.grad(H.diagonal(), params, grad_outputs=eye, is_grads_batched=True,
                                    materialize_grads=True)
            o3 = _contract(G, u, gidx, S, batched=True).diagonal()
        else:
            o3 = H.new_zeros(S)
    H = H.detach()
    o3 = o3.detach()
    return 0.5 * (H + H.T), g.detach(), o3.detach()


def _hg_reverse(params, gidx, full_loss, x, y, u, order3):
    S = max(gidx) + 1
    members = [[i for i, s in enumerate(gidx) if s == k] for k in range(S)]
    with torch.enable_grad():
        loss = full_loss(x, y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        gbar = [sum((grads[i] * u[i]).sum() for i in members[s]) for s in range(S)]
        H = params[0].new_zeros(S, S)
        o3 = params[0].new_zeros(S)
        for s in range(S):  # row s, upper triangle: one double-backward pass each
            later = [i for k in range(s, S) for i in members[k]]
            if not gbar[s].requires_grad:  # g-bar_s constant in theta: row s of H-bar is 0
                continue
            hv = torch.autograd.grad(gbar[s], [params[i] for i in later], create_graph=order3,
                                     retain_graph=True, materialize_grads=True)
            hv = dict(zip(later, hv))
            for t in range(s, S):
                H[s, t] = sum((hv[i] * u[i]).sum() for i in members[t]).detach()
                H[t, s] = H[s, t]
            hss = sum((hv[i] * u[i]).sum() for i in members[s])
            if order3 and hss.requires_grad:  # else constant in theta: order3_s = 0
                d3 = torch.autograd.grad(hss, [params[i] for i in members[s]], retain_graph=True,
                                         materialize_grads=True)
                o3[s] = sum((d * u[i]).sum() for d, i in zip(d3, members[s])).detach()
    return H, torch.stack([gb.detach() for gb in gbar]), o3
