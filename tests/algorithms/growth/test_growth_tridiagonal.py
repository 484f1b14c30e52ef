"""The truncated pseudo-inverse solve through a tridiagonal reduction equals its definition,
sum over the eigenvalues w > threshold of q q^T N / w, computed in float64 from a full
eigendecomposition; it is the route the CPU takes, and it falls back to that eigendecomposition
where its iteration cannot finish."""
from __future__ import annotations

import pytest
import torch

from algorithms.growth import linalg, tridiagonal
from algorithms.growth.tridiagonal import truncated_solve_tridiagonal

DT = torch.float64
THRESHOLD = 1e-6


def planted(n: int, spectrum: torch.Tensor, seed: int) -> torch.Tensor:
    """Q diag(spectrum) Q^T for a random orthogonal Q (n, n)."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))
    S = (Q * spectrum) @ Q.T
    return 0.5 * (S + S.T)


def definition(S: torch.Tensor, N: torch.Tensor, threshold: float) -> torch.Tensor:
    w, Q = torch.linalg.eigh(S)
    keep = w > threshold
    return (Q[:, keep] / w[keep]) @ (Q[:, keep].T @ N)


def spectra(n: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    bulk = torch.logspace(-4, 2, n, dtype=DT)
    nulls = bulk.clone()
    nulls[: n // 5] = 1e-9 * torch.randn(n // 5, generator=g, dtype=DT)  # null to rounding, both signs
    near = nulls.clone()
    gap = torch.tensor([1.5e-7, 4.6e-7, 1.6e-6, 1.8e-6], dtype=DT)  # MNIST's eigenvalues by the threshold
    k = n // 5
    near[k: k + 4] = gap[: len(near[k: k + 4])]
    return {"invertible": bulk, "nulls": nulls, "small on both sides of the threshold": near,
            "all below": 1e-7 * torch.rand(n, generator=g, dtype=DT)}


@pytest.mark.parametrize("n", [2, 7, 60, 300])
@pytest.mark.parametrize("case", ["invertible", "nulls", "small on both sides of the threshold", "all below"])
def test_tridiagonal_solve_equals_the_truncated_pseudo_inverse(n, case):
    spectrum = spectra(n)[case]
    S = planted(n, spectrum, seed=n)
    g = torch.Generator().manual_seed(n + 1)
    N = torch.randn(n, 3, generator=g, dtype=DT)
    W = truncated_solve_tridiagonal(S, N, THRESHOLD)
    assert W is not None, "the CPU route fell back to the eigendecomposition"
    expected = definition(S, N, THRESHOLD)
    # either computation is exact to rounding amplified by |S| / (the smallest kept eigenvalue)
    kept = spectrum[spectrum > THRESHOLD]
    condition = float(spectrum.abs().max() / kept.min()) if kept.numel() else 1.0
    scale = float(expected.abs().max()) + 1.0
    torch.testing.assert_close(W, expected, rtol=0, atol=10 * torch.finfo(DT).eps * condition * scale)
    if case == "all below":
        assert torch.equal(W, torch.zeros_like(N))


@pytest.mark.parametrize("case", ["invertible", "nulls", "small on both sides of the threshold"])
def test_tridiagonal_solve_is_as_accurate_as_eigh(case):
    """Against the pseudo-inverse of the same float64 S computed with 40 digits (mpmath), the
    tridiagonal route's error is within a few times the eigendecomposition's."""
    mpmath = pytest.importorskip("mpmath")
    n = 12
    S = planted(n, spectra(n)[case], seed=11)
    N = torch.randn(n, 2, generator=torch.Generator().manual_seed(12), dtype=DT)
    with mpmath.workdps(40):
        w, Q = mpmath.eigsy(mpmath.matrix(S.tolist()))
        Nm = mpmath.matrix(N.tolist())
        exact = mpmath.zeros(n, 2)
        for i in range(n):
            if w[i] > THRESHOLD:
                q = Q[:, i]
                exact += q * ((q.T * Nm) / w[i])
        exact = torch.tensor([[float(exact[i, j]) for j in range(2)] for i in range(n)], dtype=DT)
    scale = float(exact.abs().max())
    ours = float((truncated_solve_tridiagonal(S, N, THRESHOLD) - exact).abs().max()) / scale
    eigh = float((definition(S, N, THRESHOLD) - exact).abs().max()) / scale
    assert ours <= 5 * eigh + 1e-14, (ours, eigh)


def test_tridiagonal_solve_is_exact_on_well_separated_spectra():
    """With no eigenvalue near the threshold the result is the pseudo-inverse to float64 rounding,
    and it lies in the kept eigenspace: S S^+ N = N's projection on it."""
    n = 120
    spectrum = torch.linspace(0.5, 3.0, n, dtype=DT)
    spectrum[:10] = 0.0
    S = planted(n, spectrum, seed=3)
    N = S @ torch.randn(n, 4, generator=torch.Generator().manual_seed(4), dtype=DT)  # in S's range
    W = truncated_solve_tridiagonal(S, N, THRESHOLD)
    torch.testing.assert_close(W, definition(S, N, THRESHOLD), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(S @ W, N, rtol=1e-12, atol=1e-12)


def test_truncated_solve_takes_the_tridiagonal_route_on_the_cpu(monkeypatch):
    calls = []
    original = linalg.truncated_solve_tridiagonal

    def spy(*args):
        result = original(*args)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(linalg, "truncated_solve_tridiagonal", spy)
    S = planted(40, spectra(40)["nulls"], seed=5)
    N = torch.randn(40, 2, generator=torch.Generator().manual_seed(6), dtype=DT)
    torch.testing.assert_close(linalg.pinv_solve_psd(S, N, THRESHOLD), definition(S, N, THRESHOLD),
                               rtol=1e-9, atol=1e-9)
    assert calls == [True]


def test_an_unfinished_iteration_falls_back_to_the_eigendecomposition(monkeypatch):
    """One conjugate-gradient iteration cannot reach the tolerance: the tridiagonal route declines
    (None) and pinv_solve_psd still returns the truncated pseudo-inverse, from eigh."""
    monkeypatch.setattr(tridiagonal, "CG_MAX_ITERATIONS", 1)
    S = planted(50, spectra(50)["small on both sides of the threshold"], seed=7)
    N = torch.randn(50, 2, generator=torch.Generator().manual_seed(8), dtype=DT)
    assert truncated_solve_tridiagonal(S, N, THRESHOLD) is None
    torch.testing.assert_close(linalg.pinv_solve_psd(S, N, THRESHOLD), definition(S, N, THRESHOLD),
                               rtol=0, atol=0)
