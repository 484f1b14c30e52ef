r"""NewtonSummary: per-subset learning rates from second and third order summaries of the loss.

Reference: P. Wolinski, *Adapting Newton's Method to Neural Networks through a Summary of
Higher-Order Derivatives* (arXiv 2312.03885); the optimizer follows the README's minimal example
(``momentum`` / ``momentum_damp`` API) with the pitfalls of the public implementation fixed.
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from typing import Callable

import numpy as np
import torch
from torch.optim import Optimizer

from algorithms.optimizers.newton_summary.cubic import STATUSES, nesterov_lrs
from algorithms.optimizers.newton_summary.summaries import BACKENDS, NotCompiled, compute_Hg

__all__ = ["NewtonSummary"]

_STATE_KEY = "newton_summary"
_NESTEROV_KEYS = ("use", "damping_int")


class NewtonSummary(Optimizer):
    r"""Steps :math:`\theta \leftarrow \theta - \lambda_1 U I_{P:S} \eta`, one learning rate per subset.

    Every step, with the gradient :math:`G_k` of the training batch (``.grad``, set by the user's
    ``loss.backward()`` or by ``closure``), the direction :math:`u` is the momentum buffer

    .. math::

        u_0 = G_0, \qquad u_k = \mu\, u_{k-1} + (1 - \delta)\, G_k
        \quad (\mu = \text{momentum}, \ \delta = \text{momentum\_damp}),

    built per subset in partition order. Every ``period_hg`` steps (k = 0, period_hg, ...), on the
    next batch of ``hg_loader`` (cycled forever), the summaries :math:`\bar H` (S, S),
    :math:`\bar g` (S,), order3 (S,) of :math:`F(t) = L(\theta + \sum_s t_s v_s)`,
    :math:`v_s = u \odot 1[T_s]`, give the raw step sizes :math:`\eta` (S,):

    * ``dct_nesterov={'use': True, 'damping_int': }`` :math:`\lambda_{int}`: the global minimiser of
      :math:`-\bar g^\top\eta + \frac12\eta^\top\bar H\eta + \frac{\lambda_{int}}6\|D\eta\|^3`,
      :math:`D = \mathrm{Diag}(|\text{order3}|^{1/3})` (:func:`nesterov_lrs`);
    * otherwise (or ``noregul=True``): :math:`(\bar H + \text{ridge}\, I)\eta = \bar g` (order3 is
      not computed).

    Then negative entries are set to 0 if ``remove_negative``, and the smoothed rates
    :math:`\bar\eta \leftarrow \rho \bar\eta + (1 - \rho)\eta` with :math:`\rho` = ``mom_lrs``
    (:math:`\rho = 0` at the first successful refresh). Group s moves by
    ``group["lr"] = group["damping"] * eta_bar[s]`` times :math:`-u` until the next refresh.

    **Fallback.** When no step exists (unbounded cubic model, singular or non-finite system,
    failed certificate) the previous smoothed rates are kept (zeros before the first success, so
    the parameters do not move), a ``RuntimeWarning`` is issued and the event is counted in
    ``status_counts["fallback"]``; nothing is silently zeroed.

    Args:
        param_groups: the partition: a list of dicts ``{"params": [...]}`` (e.g. from
            :func:`partition.canonical`); a group may set its own ``damping``.
        full_loss: ``full_loss(x, y) -> scalar`` at the current parameters, typically
            ``loss_fn(model(x), y)`` with a mean reduction.
        hg_loader: iterable of ``(x, y)`` batches for the summaries (not the training batch).
        damping: global factor :math:`\lambda_1 \ge 0` on the learning rates (default 1).
        dct_nesterov: ``{'use': bool, 'damping_int': float >= 0}`` (default: not used).
        period_hg: steps between refreshes (int >= 1, default 1).
        mom_lrs: smoothing factor of the learning rates in [0, 1) (default 0).
        remove_negative: clamp negative raw rates to 0 (default False).
        momentum, momentum_damp: direction momentum :math:`\mu \in [0, 1)` and dampening
            :math:`\delta \in [0, 1]` (defaults 0, 0: :math:`u = G`).
        ridge: :math:`\ge 0`, added to :math:`\bar H` in the plain Newton solve.
        noregul: plain Newton solve, no third derivatives.
        model: the module ``full_loss`` reads (enables the torch.func backend of :func:`compute_Hg`).
        backend: :func:`compute_Hg` backend (``"auto"``, ``"func"``, ``"batched"``, ``"reverse"``,
            ``"compiled"``: the reverse loop traced and compiled by inductor, fastest on CPU after a
            one-off compile of 10-35 s; needs a C++ compiler).
        loader_pre_hook: optional ``(x, y) -> (x, y)`` applied to hg batches (device, dtype).
        compile_fallback: with ``backend="compiled"``, a refresh whose compile fails warns once and
            goes on with ``"reverse"`` (for a backend chosen automatically) instead of raising.
        compile_missing: with ``backend="compiled"``, compile the refresh when its package is not
            in the on-disk cache; False: refresh with ``"reverse"`` then (said once on stderr).

    Logging: ``group["lr"]`` per subset, and :attr:`summary_state` (``step``, ``lrs`` smoothed,
    ``eta`` raw, ``r``, ``x0``, ``status``, ``status_counts``, ``refresh_time``, ``refreshes``,
    ``H``, ``g``, ``order3`` of the last refresh). ``state_dict()`` holds all of it and the
    momentum buffers; the hg iterator restarts after ``load_state_dict`` (a DataLoader's position
    cannot be saved; drive ``hg_loader`` from a saved generator if exactness matters).

    Example::

        param_groups, name_groups = partition.canonical(model)
        opt = NewtonSummary(param_groups, lambda x, t: loss_fn(model(x), t), hg_loader,
                            damping=.1, dct_nesterov={'use': True, 'damping_int': 10.},
                            period_hg=10, mom_lrs=.5, remove_negative=True,
                            momentum=.9, momentum_damp=.9)
        opt.zero_grad(); loss_fn(model(x), t).backward(); opt.step()
    """

    def __init__(self, param_groups, full_loss: Callable, hg_loader, *, damping: float = 1.0,
                 dct_nesterov: dict | None = None, period_hg: int = 1, mom_lrs: float = 0.0,
                 remove_negative: bool = False, momentum: float = 0.0, momentum_damp: float = 0.0,
                 ridge: float = 0.0, noregul: bool = False, model: torch.nn.Module | None = None,
                 backend: str = "auto", loader_pre_hook: Callable | None = None,
                 compile_fallback: bool = False, compile_missing: bool = True):
        _check_nonneg("damping", damping)
        _check_nonneg("ridge", ridge)
        if isinstance(period_hg, bool) or not isinstance(period_hg, int) or period_hg < 1:
            raise ValueError(f"Invalid period_hg value: {period_hg!r} (an int >= 1)")
        for name, value, hi_open in (("mom_lrs", mom_lrs, True), ("momentum", momentum, True),
                                     ("momentum_damp", momentum_damp, False)):
            if not (isinstance(value, (int, float)) and 0.0 <= value and (value < 1.0 if hi_open else value <= 1.0)):
                raise ValueError(f"Invalid {name} value: {value!r} (in [0, 1{')' if hi_open else ']'})")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not callable(full_loss):
            raise ValueError("full_loss must be callable: full_loss(x, y) -> scalar loss")
        nesterov = {"use": False, "damping_int": 1.0, **(dct_nesterov or {})}
        unknown = [k for k in nesterov if k not in _NESTEROV_KEYS]
        if unknown:
            raise ValueError(f"dct_nesterov has unknown keys {unknown}; accepted: {list(_NESTEROV_KEYS)}")
        _check_nonneg("damping_int", nesterov["damping_int"])
        self.full_loss = full_loss
        self.hg_loader = hg_loader
        self.model = model
        self.loader_pre_hook = loader_pre_hook
        self.compile_fallback = compile_fallback
        self.compile_missing = compile_missing
        self._hg_iter = None
        defaults = dict(lr=0.0, damping=float(damping), period_hg=period_hg, mom_lrs=float(mom_lrs),
                        remove_negative=bool(remove_negative), momentum=float(momentum),
                        momentum_damp=float(momentum_damp), ridge=float(ridge), noregul=bool(noregul),
                        use_nesterov=bool(nesterov["use"]), damping_int=float(nesterov["damping_int"]),
                        backend=backend)
        super().__init__(param_groups, defaults)
        S = len(self.param_groups)
        self.state[_STATE_KEY] = dict(
            step=0, lrs=torch.zeros(S, dtype=torch.float64), eta=None, has_lrs=False,
            r=math.nan, x0=math.nan, status="none", message="",
            status_counts={**{s: 0 for s in STATUSES}, "fallback": 0},
            refresh_time=0.0, refresh_time_total=0.0, refreshes=0, H=None, g=None, order3=None)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        _check_nonneg("damping", self.param_groups[-1]["damping"])
        if _STATE_KEY in self.state:  # a group added after construction gets rate 0 until refreshed
            st = self.state[_STATE_KEY]
            st["lrs"] = torch.cat([st["lrs"], st["lrs"].new_zeros(1)])

    # -- public views --------------------------------------------------------------------------
    @property
    def summary_state(self) -> dict:
        return self.state[_STATE_KEY]

    @property
    def lrs(self) -> list[float]:
        """Current effective learning rate of each subset (damping * smoothed eta)."""
        return [float(g["lr"]) for g in self.param_groups]

    # -- the step ------------------------------------------------------------------------------
    def _directions(self) -> list[list[torch.Tensor]]:
        """Momentum buffers per group, in partition order (u_0 = G_0, u = mu u + (1 - delta) G)."""
        out = []
        for group in self.param_groups:
            mu, damp = group["momentum"], group["momentum_damp"]
            us = []
            for p in group["params"]:
                grad = p.grad if p.grad is not None else torch.zeros_like(p)
                if grad.is_sparse:
                    raise RuntimeError("NewtonSummary does not support sparse gradients")
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = grad.detach().clone()
                else:
                    buf.mul_(mu).add_(grad, alpha=1.0 - damp)
                us.append(buf)
            out.append(us)
        return out

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        """One update; refreshes the learning rates first when ``step % period_hg == 0``.

        The closure (loss + backward on the training batch) runs once, with gradients enabled.
        Returns the closure's loss or None."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        st = self.state[_STATE_KEY]
        directions = self._directions()
        if st["step"] % self.param_groups[0]["period_hg"] == 0:
            self._refresh(directions)
        for group, us in zip(self.param_groups, directions):
            if group["lr"] != 0.0:
                torch._foreach_add_(list(group["params"]), us, alpha=-group["lr"])
        st["step"] += 1
        return loss

    def _next_hg_batch(self):
        if self._hg_iter is None:
            self._hg_iter = iter(self.hg_loader)
        try:
            batch = next(self._hg_iter)
        except StopIteration:
            self._hg_iter = iter(self.hg_loader)
            try:
                batch = next(self._hg_iter)
            except StopIteration:
                raise ValueError("hg_loader yields no batch") from None
        x, y = batch[0], batch[1]
        if self.loader_pre_hook is not None:
            x, y = self.loader_pre_hook(x, y)
        return x, y

    def refresh(self) -> None:
        """Recompute the learning rates now from the current momentum buffers (no parameter update)."""
        self._refresh([[self.state[p].get("momentum_buffer", torch.zeros_like(p)) for p in g["params"]]
                       for g in self.param_groups])

    def _reverse_from_now_on(self, summaries):
        """Every later refresh uses the reverse loop; this one too."""
        for group in self.param_groups:
            group["backend"] = "reverse"
        return summaries("reverse")

    def _refresh(self, directions) -> None:
        st = self.state[_STATE_KEY]
        g0 = self.param_groups[0]
        plain = g0["noregul"] or not g0["use_nesterov"]
        x, y = self._next_hg_batch()
        start = time.perf_counter()
        flat_u = [u for us in directions for u in us]
        def summaries(backend):
            return compute_Hg(self.param_groups, self.full_loss, x, y, flat_u, model=self.model,
                              order3=not plain, backend=backend, compile_missing=self.compile_missing)

        try:
            H, g, o3 = summaries(g0["backend"])
        except NotCompiled as exc:
            warnings.warn(f"NewtonSummary: {exc}; refreshing with the reverse loop (a longer run compiles one)",
                          RuntimeWarning)
            H, g, o3 = self._reverse_from_now_on(summaries)
        except Exception as exc:  # noqa: BLE001  a compile that fails here (toolchain, unsupported op)
            if not (self.compile_fallback and g0["backend"] == "compiled"):
                raise
            warnings.warn(f"NewtonSummary: the compiled refresh failed ({type(exc).__name__}: {exc}); "
                          "refreshing with the reverse loop from now on", RuntimeWarning)
            H, g, o3 = self._reverse_from_now_on(summaries)
        if plain:
            eta, info = _newton(H, g, g0["ridge"])
        else:
            eta, info = nesterov_lrs(H, g, o3, g0["damping_int"])
        st["refresh_time"] = time.perf_counter() - start
        st["refresh_time_total"] += st["refresh_time"]
        st["refreshes"] += 1
        st.update(H=H.detach().cpu(), g=g.detach().cpu(), order3=o3.detach().cpu(),
                  r=float(info.get("r", math.nan)), x0=float(info.get("x0", math.nan)),
                  status=info["status"], message=info.get("message", ""))
        st["status_counts"][info["status"]] = st["status_counts"].get(info["status"], 0) + 1
        if eta is None:
            st["status_counts"]["fallback"] += 1
            st["eta"] = None
            warnings.warn(f"NewtonSummary step {st['step']}: no step size ({info['status']}: "
                          f"{info.get('message', '')}); keeping the previous learning rates",
                          RuntimeWarning, stacklevel=3)
        else:
            eta = eta.detach().to("cpu", torch.float64)
            st["eta"] = eta.clone()
            if g0["remove_negative"]:
                eta = eta.clamp(min=0.0)
            rho = g0["mom_lrs"] if st["has_lrs"] else 0.0
            st["lrs"] = rho * st["lrs"] + (1.0 - rho) * eta
            st["has_lrs"] = True
        for group, lr in zip(self.param_groups, st["lrs"].tolist()):
            group["lr"] = group["damping"] * lr

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self):
        sd = super().state_dict()
        sd["state"][_STATE_KEY] = copy.deepcopy(self.state[_STATE_KEY])
        return sd

    def load_state_dict(self, state_dict) -> None:
        state_dict = dict(state_dict)
        state_dict["state"] = dict(state_dict["state"])
        summary = copy.deepcopy(state_dict["state"].pop(_STATE_KEY, None))
        super().load_state_dict(state_dict)
        if summary is not None:
            self.state[_STATE_KEY] = summary
        self._hg_iter = None


def _check_nonneg(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"Invalid {name} value: {value!r} (a finite number >= 0)")


def _newton(H, g, ridge: float):
    """(H + ridge I) eta = g in float64; status "newton", or "failed" (eta None) if singular."""
    Hn = H.detach().to("cpu", torch.float64).numpy()
    gn = g.detach().to("cpu", torch.float64).numpy()
    info = dict(status="newton", r=math.nan, x0=math.nan, message="")
    if np.linalg.norm(gn) == 0.0 and np.isfinite(Hn).all():
        info["status"] = "zero_gradient"
        return torch.zeros_like(g, dtype=torch.float64), info
    try:
        A = 0.5 * (Hn + Hn.T) + ridge * np.eye(len(gn))
        eta = np.linalg.solve(A, gn)
        if not np.isfinite(eta).all():
            raise np.linalg.LinAlgError("non-finite solution")
    except np.linalg.LinAlgError as exc:
        info.update(status="failed", message=f"Newton solve: {exc}")
        return None, info
    return torch.from_numpy(eta), info
