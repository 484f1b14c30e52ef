"""NewtonSummary ``backend="compiled"`` (traced + inductor-compiled reverse loop) against brute-force
autograd derivatives of F(t) = L(theta + sum_s t_s v_s), float64."""
from __future__ import annotations

import shutil

import pytest
import torch

from algorithms.optimizers import compute_Hg, partition
from tests._newton_summary_helpers import batch, brute_summaries, ce_loss, F_of_t, tanh_mlp


@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++", "cl")),
                    reason="torch.compile's inductor backend needs a C++ compiler")
@pytest.mark.parametrize("make", [partition.canonical, partition.wb])
def test_compiled_matches_brute_force_and_follows_parameter_updates(make):
    model = tanh_mlp()
    x, y = batch()
    pg, _ = make(model)
    torch.manual_seed(5)
    u = [torch.randn_like(p) for g in pg for p in g["params"]]
    for step in range(2):  # the second refresh reuses the compiled graph at new parameters
        H, g, o3 = compute_Hg(pg, ce_loss(model), x, y, u, model=model, backend="compiled")
        g_ref, H_ref, o3_ref = brute_summaries(F_of_t(model, ce_loss(model), pg, u, x, y), len(pg))
        torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(H, H_ref, rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(o3, o3_ref, rtol=1e-7, atol=1e-11)
        torch.testing.assert_close(H, H.T, rtol=0, atol=0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))


def test_compiled_needs_the_model():
    model = tanh_mlp()
    x, y = batch()
    pg, _ = partition.canonical(model)
    u = [torch.ones_like(p) for g in pg for p in g["params"]]
    with pytest.raises(ValueError, match="needs the model"):
        compute_Hg(pg, ce_loss(model), x, y, u, backend="compiled")
