r"""The two-layer ReLU network of the shallow family and its one loss convention.

Notation (notes, section 2). Inputs x_i in R^d are augmented with a constant 1 by :func:`add_bias`,
x~_i = (x_i, 1) in R^{d+1}; this is the only place the bias column is handled, and it is exactly a
hidden-layer bias. Neurons are the rows w_j in R^{d+1} of W (m, d+1) with output weights a (m,);
there is no output bias:

.. math::

    f(x) = \sum_j a_j \, \mathrm{relu}(w_j \cdot \tilde x), \qquad
    F_\beta(W, a) = \frac1n \sum_i (f(x_i) - y_i)^2 + \frac\beta2 \sum_j (\|w_j\|^2 + a_j^2).

The data term is the mean of squared errors **without 1/2**, the same number as
``Problem.loss`` for regression, so the runner's ``train_loss`` and F_0 agree. With e_i = f(x_i) - y_i
and relu'(0) = 0 the gradients are

.. math::

    \partial F/\partial w_j = \frac2n a_j \sum_i e_i 1[w_j\cdot\tilde x_i > 0]\,\tilde x_i + \beta w_j,
    \qquad
    \partial F/\partial a_j = \frac2n \sum_i e_i \,\mathrm{relu}(w_j\cdot\tilde x_i) + \beta a_j .

A dead neuron (no active point) therefore never moves under the data term.
"""
from __future__ import annotations

import torch
from torch import nn


def add_bias(x: torch.Tensor) -> torch.Tensor:
    """(n, d) -> (n, d+1): appends a column of ones (the hidden-layer bias)."""
    if x.dim() != 2:
        raise ValueError(f"add_bias expects inputs of shape (n, d), got {tuple(x.shape)}")
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)


def predict(W: torch.Tensor, a: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """f on already-biased inputs: X (n, d+1), W (m, d+1), a (m,) -> (n,)."""
    return torch.relu(X @ W.T) @ a


def regulariser(W: torch.Tensor, a: torch.Tensor, beta: float) -> torch.Tensor:
    """(beta/2) sum_j (|w_j|^2 + a_j^2), a 0-d tensor."""
    return 0.5 * beta * ((W * W).sum() + (a * a).sum())


def objective(W: torch.Tensor, a: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
              beta: float = 0.0) -> torch.Tensor:
    """F_beta(W, a) = (1/n) sum_i (f(x_i) - y_i)^2 + (beta/2) sum_j (|w_j|^2 + a_j^2).

    X (n, d+1) already biased (see :func:`add_bias`), y (n,), W (m, d+1), a (m,); returns a 0-d tensor.
    """
    _check_shapes(W, a, X, y)
    err = predict(W, a, X) - y
    loss = (err * err).mean()
    return loss + regulariser(W, a, beta) if beta else loss


def value_and_gradients(W: torch.Tensor, a: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                        beta: float = 0.0, need_a: bool = True):
    """(F_0, dF_beta/dW (m, d+1), dF_beta/da (m,) or None) in one pass (module docstring).

    The data term's gradient is factored as a_j * (G^T X)_j with G = 1[pre > 0] * (2/n) e, so no
    (n, m) outer product of e and a is formed; ``need_a=False`` skips dF/da (first layer only).
    """
    _check_shapes(W, a, X, y)
    n = X.shape[0]
    pre = X @ W.T  # (n, m)
    hidden = torch.relu(pre)
    err = hidden @ a - y  # (n,)
    loss = (err * err).mean()
    coef = err * (2.0 / n)
    G = torch.where(pre > 0, coef[:, None], 0.0)  # relu'(0) = 0, like autograd
    gW = torch.addcmul(beta * W, a[:, None], G.T @ X) if beta else a[:, None] * (G.T @ X)
    ga = None
    if need_a:
        ga = torch.addmv(beta * a, hidden.T, coef) if beta else hidden.T @ coef
    return loss, gW, ga


def gradients(W: torch.Tensor, a: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
              beta: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form (dF/dW (m, d+1), dF/da (m,)) of :func:`objective` (module docstring)."""
    _, gW, ga = value_and_gradients(W, a, X, y, beta)
    return gW, ga


def patterns(W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Activation patterns 1[w_j . x~_i > 0] as a bool tensor (m, n); X (n, d+1) biased."""
    return (X @ W.T).T > 0


def _check_shapes(W, a, X, y) -> None:
    if W.dim() != 2 or a.dim() != 1 or W.shape[0] != a.shape[0]:
        raise ValueError(f"W must be (m, d+1) and a (m,), got {tuple(W.shape)} and {tuple(a.shape)}")
    if X.dim() != 2 or X.shape[1] != W.shape[1]:
        raise ValueError(f"X must be biased inputs (n, {W.shape[1]}), got {tuple(X.shape)}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},), got {tuple(y.shape)}")


class TwoLayerReLU(nn.Module):
    """f(x) = relu(add_bias(x) @ W.T) @ a with parameters ``W`` (m, d+1) and ``a`` (m,).

    ``train_output=False`` is the "first layer only" mode: ``a`` stays a parameter (it is saved and
    copied with the model) but has ``requires_grad=False``, so optimizers never move it.
    """

    def __init__(self, W: torch.Tensor, a: torch.Tensor, train_output: bool = True):
        super().__init__()
        if W.dim() != 2 or a.dim() != 1 or W.shape[0] != a.shape[0]:
            raise ValueError(f"W must be (m, d+1) and a (m,), got {tuple(W.shape)} and {tuple(a.shape)}")
        if W.shape[1] < 2:
            raise ValueError(f"W needs at least one input column plus the bias, got {tuple(W.shape)}")
        self.train_output = bool(train_output)
        self.W = nn.Parameter(W.detach().clone())
        self.a = nn.Parameter(a.detach().clone().to(W.dtype), requires_grad=self.train_output)

    @property
    def width(self) -> int:
        return self.W.shape[0]

    @property
    def input_dim(self) -> int:
        """d, the input dimension without the bias column."""
        return self.W.shape[1] - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (n, d) -> (n,)."""
        return predict(self.W, self.a, add_bias(x))

    @torch.no_grad()
    def set_weights(self, W: torch.Tensor, a: torch.Tensor) -> None:
        """Replace the neurons (the width may change); dtype, device and train mode are kept.

        Optimizers built on the old parameters no longer see the new ones.
        """
        if W.dim() != 2 or a.dim() != 1 or W.shape[0] != a.shape[0] or W.shape[1] != self.W.shape[1]:
            raise ValueError(f"expected W (m, {self.W.shape[1]}) and a (m,), got {tuple(W.shape)}, {tuple(a.shape)}")
        like = self.W
        self.W = nn.Parameter(W.detach().to(like.device, like.dtype).clone())
        self.a = nn.Parameter(a.detach().to(like.device, like.dtype).clone(), requires_grad=self.train_output)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A checkpoint of a convex-recovered network may have another width: adopt its shapes.
        W, a = state_dict.get(prefix + "W"), state_dict.get(prefix + "a")
        if W is not None and a is not None and W.shape != self.W.shape:
            self.set_weights(W, a)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"width={self.width}, input_dim={self.input_dim}, train_output={self.train_output}"
