"""NewtonSummary ``backend="compiled"`` (traced + inductor-compiled reverse loop) against brute-force
autograd derivatives of F(t) = L(theta + sum_s t_s v_s), float64."""
from __future__ import annotations

import shutil

import pytest
import torch

from algorithms.optimizers import compute_Hg, partition
from tests.algorithms.optimizers._newton_summary_helpers import batch, brute_summaries, ce_loss, F_of_t, tanh_mlp


@pytest.mark.slow
@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++", "cl")),
                    reason="torch.compile's inductor backend needs a C++ compiler")
@pytest.mark.parametrize("make", [partition.canonical, partition.wb])
def test_compiled_matches_brute_force_and_follows_parameter_updates(make, tmp_path, monkeypatch):
    """Also: the compiled package goes to the on-disk cache, and a later run (a fresh process:
    nothing in memory) loads it instead of compiling, without tracing; without a package it is
    asked to use and not to compile, it says so (NotCompiled)."""
    from algorithms.optimizers.newton_summary import summaries

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    model = tanh_mlp()
    x, y = batch()
    pg, _ = make(model)
    torch.manual_seed(5)
    u = [torch.randn_like(p) for g in pg for p in g["params"]]
    with pytest.raises(summaries.NotCompiled):
        compute_Hg(pg, ce_loss(model), x, y, u, model=model, backend="compiled", compile_missing=False)
    for step in range(3):  # later refreshes reuse the compiled graph at new parameters
        if step == 2:
            assert len(list((tmp_path / "newton_summary").glob("*.pt2"))) == 1
            summaries._COMPILED.clear()  # a later run: the package loaded from disk, without a trace
            import torch.fx.experimental.proxy_tensor as proxy_tensor

            monkeypatch.setattr(proxy_tensor, "make_fx", lambda *a, **k: pytest.fail("traced again"))
        H, g, o3 = compute_Hg(pg, ce_loss(model), x, y, u, model=model, backend="compiled",
                              compile_missing=step < 2)
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



def test_a_hinted_package_that_disagrees_with_the_reverse_loop_is_refused():
    from algorithms.optimizers.newton_summary import summaries

    model = tanh_mlp()
    x, y = batch()
    pg, _ = partition.canonical(model)
    u = [torch.ones_like(p) for g in pg for p in g["params"]]
    params = [p for g in pg for p in g["params"]]
    gidx = [s for s, g in enumerate(pg) for _ in g["params"]]
    reference = summaries._hg_reverse(params, gidx, ce_loss(model), x, y, u, True)
    flat = [p.detach() for p in params] + u + [x, y]
    assert summaries._agrees(lambda *inputs: reference, flat, reference)
    H, g, o3 = reference
    rounding = (H * (1 + 1e-14), g, o3)  # float64 rounding: accepted
    assert summaries._agrees(lambda *inputs: rounding, flat, reference)
    for wrong in ((H * 1.001, g, o3), (H, g + 1e-6 * g.abs().max(), o3), (H, g, o3 * float("nan"))):
        assert not summaries._agrees(lambda *inputs, w=wrong: w, flat, reference)
