"""Second-moment statistics of one growth site, as per-sample averages.

One growth site is hidden layer l-1 between a *producer* layer (input c) and a *consumer* layer
(input b, pre-activation a, per-sample gradient g = d ell_i / d a). With biases, c and b carry an
appended constant 1. Over all samples seen since the last reset (E = (1/n) sum_i):

==========  ===============  ===========
symbol      definition       shape
==========  ===============  ===========
S           E[b b^T]         (p, p)
M           E[b g^T]         (p, q)
S2          E[c c^T]         (r, r)
M2          E[c g^T]         (r, q)
P           E[c b^T]         (r, p)
==========  ===============  ===========

The per-sample gradient g comes from the backward of a *sum*-reduced loss (or a mean-reduced one
multiplied back by the batch size), so the statistics do not depend on how the samples were
split into batches. Batch products are added in place (``addmm_``) to sums in the model's dtype,
which are folded into float64 sums every ``FLUSH_EVERY`` batches and before every read. S2 is
symmetric: for r >= ``BLOCKED_FROM`` its rows are cut into ``S2_BLOCKS`` blocks and only the
blocks on and above the diagonal are accumulated (about a third less work on the largest product,
``bench/growth.py``); the rest is their mirror image, filled in when S2 is read.
The inputs c_j that are equal in every sample (MNIST's border pixels, the ones of a bias) are
tracked exactly (``constant_inputs``): the pseudo-inverse solve deflates them, and float32 sums
are too coarse to tell them from S2. GradMax and the random baseline need only M2;
``m2_only=True`` skips the other products (for a 784-256-10 MLP, S2 alone costs more than a
training step).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


def with_ones(x: torch.Tensor, bias: bool) -> torch.Tensor:
    """[x, 1] of shape (n, d+1) when ``bias``, else x (n, d)."""
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1) if bias else x


FLUSH_EVERY = 16
S2_BLOCKS = 4          # row blocks of S2's upper block triangle
BLOCKED_FROM = 256     # below this r one product is as fast


def _block_edges(r: int) -> list[int]:
    k = S2_BLOCKS if r >= BLOCKED_FROM else 1
    return [round(i * r / k) for i in range(k + 1)]


@dataclass
class GrowthStatistics:
    """Running sums of S, M, S2, M2, P for one growth site and the number of samples."""

    r: int
    p: int
    q: int
    device: torch.device | None = None
    m2_only: bool = False
    n_samples: int = 0
    _c_stats: torch.Tensor | None = field(default=None, repr=False)  # (r, r + p + q): [S2 | P | M2] sums
    _b_stats: torch.Tensor | None = field(default=None, repr=False)  # (p, p + q): [S | M] sums
    _acc: tuple | None = field(default=None, repr=False)  # model-dtype partial sums since the last flush
    _pending: int = 0
    _first_c: torch.Tensor | None = field(default=None, repr=False)  # (r,) the first sample's c
    _constant: torch.Tensor | None = field(default=None, repr=False)  # (r,) bool: c_j equal in every sample

    def __post_init__(self):
        if self.m2_only:
            self._c_stats = torch.zeros(self.r, self.q, dtype=torch.float64, device=self.device)
            return
        self._c_stats = torch.zeros(self.r, self.r + self.p + self.q, dtype=torch.float64, device=self.device)
        self._b_stats = torch.zeros(self.p, self.p + self.q, dtype=torch.float64, device=self.device)

    @torch.no_grad()
    def update(self, c: torch.Tensor, b: torch.Tensor, g: torch.Tensor) -> None:
        """Add one batch: c (n, r), b (n, p), g (n, q) per-sample gradients of the consumer's output."""
        n = c.shape[0]
        if c.shape[1] != self.r or b.shape[1] != self.p or g.shape[1] != self.q:
            raise ValueError(f"batch shapes {tuple(c.shape)}, {tuple(b.shape)}, {tuple(g.shape)} do not "
                             f"match the site (r={self.r}, p={self.p}, q={self.q})")
        if self._acc is None:
            self._acc = tuple(torch.zeros(t.shape, dtype=c.dtype, device=c.device)
                              for t in (self._c_stats, self._b_stats) if t is not None)
        if self.m2_only:
            self._acc[0].addmm_(c.T, g)
        else:
            bg = torch.cat([b, g], dim=1)  # (n, p + q)
            cbg = torch.cat([c, bg], dim=1)  # (n, r + p + q)
            edges = _block_edges(self.r)
            for lo, hi in zip(edges[:-1], edges[1:]):  # rows lo:hi of [S2 | P | M2], S2 from column lo on
                self._acc[0][lo:hi, lo:].addmm_(c[:, lo:hi].T, cbg[:, lo:])
            self._acc[1].addmm_(b.T, bg)
            self._track_constant_inputs(c)
        self.n_samples += n
        self._pending += 1
        if self._pending >= FLUSH_EVERY:
            self._flush()

    def _track_constant_inputs(self, c: torch.Tensor) -> None:
        """Keep the mask of inputs equal in every sample so far (bit for bit). After the first batch
        only the columns still constant are compared on the CPU (MNIST: 175 of 785)."""
        if self._first_c is None:
            self._first_c = c[0].clone()
            self._constant = (c == self._first_c).all(dim=0)
        elif c.device.type == "cpu":
            idx = torch.nonzero(self._constant).flatten()
            if idx.numel():
                self._constant[idx] = (c.index_select(1, idx) == self._first_c[idx]).all(dim=0)
        else:  # no host synchronisation on accelerators: compare every column
            self._constant &= (c == self._first_c).all(dim=0)

    @property
    def constant_inputs(self) -> torch.Tensor | None:
        """(r,) bool: the inputs c_j that took one value in every sample seen (with a bias, the
        appended ones column is one of them); None before the first batch or with ``m2_only``."""
        return None if self._constant is None else self._constant.clone()

    def _flush(self) -> None:
        if self._acc is None or self._pending == 0:
            return
        for total, partial in zip((self._c_stats, self._b_stats), self._acc):
            total += partial.double()
            partial.zero_()
        self._pending = 0

    def _mean(self, block: torch.Tensor | None) -> torch.Tensor:
        if block is None:
            raise RuntimeError("only M2 was collected (init_computation for gradmax / random); "
                               "TINY needs S, M, S2 and P too")
        if self.n_samples == 0:
            raise RuntimeError("no statistics collected: run forward/backward and update_computation() first")
        return block / self.n_samples

    def _block(self, rows, cols):
        self._flush()
        return None if self.m2_only else rows[:, cols]

    @property
    def S(self) -> torch.Tensor:
        return self._mean(self._block(self._b_stats, slice(0, self.p)))

    @property
    def M(self) -> torch.Tensor:
        return self._mean(self._block(self._b_stats, slice(self.p, None)))

    @property
    def S2(self) -> torch.Tensor:
        upper = self._block(self._c_stats, slice(0, self.r))
        if upper is None:
            return self._mean(None)
        full = upper.clone()
        edges = _block_edges(self.r)
        for lo, hi in zip(edges[1:-1], edges[2:]):  # below the diagonal blocks: the mirror image
            full[lo:hi, :lo] = upper[:lo, lo:hi].T
        return self._mean(full)

    @property
    def P(self) -> torch.Tensor:
        return self._mean(self._block(self._c_stats, slice(self.r, self.r + self.p)))

    @property
    def M2(self) -> torch.Tensor:
        self._flush()
        return self._mean(self._c_stats if self.m2_only else self._c_stats[:, self.r + self.p:])
