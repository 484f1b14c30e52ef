"""The registered newton_summary algorithm in the runner: metrics, separate hg stream, exact resume,
parameter checks, the scaled_mlp model and the plotter."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from workbench.registry import ALGORITHMS, MODELS, PLOTTERS, load_all
from workbench.errors import ConfigError
from workbench.plan import plan_runs
from workbench.problem import build_problem
from workbench.runner import Experiment

load_all(plots=True)


def _config(tiny_config, **kw):
    config = copy.deepcopy(tiny_config)
    config.update(runs=[dict(algorithm="newton_summary", period_hg=3, hg_batch_size=16)],
                  log_every=1, epochs=None, max_steps=8)
    config.update(kw)
    return config


def test_metrics_and_hg_stream(tiny_config):
    config = _config(tiny_config)
    experiment = Experiment.create(config)
    assert experiment.run() == 0
    run = experiment.history["runs"][0]
    m = run["metrics"]
    S = run["info"]["S"]
    assert S == 4 and run["info"]["name_groups"][0] == ["1.weight"]
    for i in range(S):
        assert len(m[f"lr_group_{i}"]) == len(m["step"])
    counts = sum(m[f"solver_{s}"][-1] for s in ("easy", "hard", "newton", "zero_gradient", "unbounded", "failed"))
    assert counts == 3  # refreshes at steps 0, 3, 6
    assert m["refresh_time_total"][-1] > 0 and math.isfinite(m["train_loss"][-1])


def test_resume_is_exact(tiny_config):
    config = _config(tiny_config, dtype="float64")
    problem = build_problem(config)
    torch.manual_seed(0)
    model = problem.build_model()
    cls = ALGORITHMS["newton_summary"]
    torch.manual_seed(0)
    a = cls(problem, copy.deepcopy(model), period_hg=3, hg_batch_size=16)
    x, y = problem.data.x_train, problem.data.y_train
    for k in range(4):
        a.step(x[k * 16:(k + 1) * 16], y[k * 16:(k + 1) * 16])
    state = copy.deepcopy(a.state_dict())
    torch.manual_seed(123)  # a different construction seed: the saved stream state must win
    b = cls(problem, copy.deepcopy(model), period_hg=3, hg_batch_size=16)
    b.load_state_dict(state)
    for k in range(4, 9):
        ma = a.step(x[(k % 6) * 16:(k % 6 + 1) * 16], y[(k % 6) * 16:(k % 6 + 1) * 16])
        mb = b.step(x[(k % 6) * 16:(k % 6 + 1) * 16], y[(k % 6) * 16:(k % 6 + 1) * 16])
        assert ma["lr_group_0"] == mb["lr_group_0"]
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_hg_stream_differs_from_training_order(tiny_config):
    """The summaries' batches are a stream of their own, not the batches the runner trains on
    (hg_batch_size = batch_size here, so a stream seeded like the batch order would repeat it)."""
    from workbench.algorithm import register_algorithm

    cls = ALGORITHMS["newton_summary"]
    if "_test_recording_newton_summary" not in ALGORITHMS:
        @register_algorithm("_test_recording_newton_summary")
        class Recording(cls):
            trained: list = []
            summarised: list = []

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                stream = self.hg_stream
                original = type(stream).__next__
                type(self).summarised.clear(), type(self).trained.clear()

                class Spy(type(stream)):
                    def __next__(inner):
                        batch = original(inner)
                        type(self).summarised.append(batch[0].clone())
                        return batch
                stream.__class__ = Spy

            def step(self, x, y):
                type(self).trained.append(x.clone())
                return super().step(x, y)
    recording = ALGORITHMS["_test_recording_newton_summary"]
    config = _config(tiny_config, dtype="float64", runs=[dict(algorithm="_test_recording_newton_summary",
                                                             hg_batch_size=16, period_hg=2)])
    Experiment.create(config).run()
    assert len(recording.trained) == 8 and len(recording.summarised) >= 4  # max_steps=8, a refresh every 2
    assert all(b.shape == (16, 6) for b in recording.trained + recording.summarised)
    for hg in recording.summarised:
        assert not any(torch.equal(hg, b) for b in recording.trained)


def test_bad_parameters_fail_before_training(tiny_config):
    with pytest.raises(ConfigError, match="partition"):
        plan_runs(_config(tiny_config, runs=[dict(algorithm="newton_summary", partition="blocks")]))
    with pytest.raises(ConfigError, match="period_hg"):
        plan_runs(_config(tiny_config, runs=[dict(algorithm="newton_summary", period_hg=0)]))
    with pytest.raises(ConfigError, match="damping_int"):
        plan_runs(_config(tiny_config, runs=[dict(algorithm="newton_summary", dampnig_int=1.0)]))


def test_scaled_mlp_same_function_as_mlp():
    torch.manual_seed(0)
    a = MODELS["mlp"]((6,), 3, hidden=[8], activation="tanh").double()
    torch.manual_seed(0)
    b = MODELS["scaled_mlp"]((6,), 3, hidden=[8], activation="tanh", weight_scales=[4.0, 0.5],
                             bias_scales=[2.0, 3.0]).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(a(x), b(x), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="scaled_mlp needs 2 weight_scales and bias_scales"):
        MODELS["scaled_mlp"]((6,), 3, hidden=[8], weight_scales=[1.0])


def test_plotter_writes_figures(tiny_config, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    experiment = Experiment.create(_config(tiny_config))
    experiment.run()
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    paths = PLOTTERS["newton_summary"](experiment.history["runs"], tmp_path)
    assert {p.name for p in paths} == {"newton_summary_lrs.png", "newton_summary_solver.png"}
    assert all(p.stat().st_size > 0 for p in paths)
    lrs = next(f for f in figures if f is not None and any(ax.get_yscale() == "symlog" for ax in f.axes))
    ax = next(a for a in lrs.axes if a.get_yscale() == "symlog")
    run = experiment.history["runs"][0]
    groups = sorted(k for k in run["metrics"] if k.startswith("lr_group_"))
    assert len(ax.get_lines()) >= len(groups) and ax.get_xlabel() == "step"
    first = run["info"]["name_groups"][0][0]
    assert any(first in line.get_label() for line in ax.get_lines())
    values = np.asarray(run["metrics"][groups[0]])
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), values[np.isfinite(values)], rtol=1e-12)


# -- backend="auto" --------------------------------------------------------------------------------

def test_auto_backend_choice_from_the_planned_refreshes(monkeypatch):
    from algorithms.optimizers.newton_summary import summaries

    cpu = torch.device("cpu")
    trace, compile_ = summaries.AUTO_CACHED_REFRESHES, summaries.AUTO_COMPILE_REFRESHES
    monkeypatch.setattr(summaries, "compiled_backend_available", lambda device: (True, ""))
    assert summaries.choose_backend(trace - 1, cpu)[:2] == ("reverse", False)
    assert summaries.choose_backend(None, cpu)[:2] == ("reverse", False)
    assert summaries.choose_backend(trace, cpu)[:2] == ("compiled", False)  # a cached package only
    assert summaries.choose_backend(compile_ - 1, cpu)[:2] == ("compiled", False)
    assert summaries.choose_backend(compile_, cpu) == ("compiled", True, f"{compile_} refreshes planned")
    monkeypatch.setattr(summaries, "compiled_backend_available", lambda device: (False, "no g++"))
    assert summaries.choose_backend(10 * compile_, cpu) == ("reverse", False, "no g++")


def test_no_compiler_on_path_means_no_compiled_backend(monkeypatch):
    from algorithms.optimizers.newton_summary import summaries

    monkeypatch.setattr(summaries.shutil, "which", lambda name: None)
    available, why = summaries.compiled_backend_available(torch.device("cpu"))
    assert not available and "not on PATH" in why


def test_the_workbench_picks_the_backend_from_the_run_length_and_says_so(tiny_config, monkeypatch):
    from algorithms.optimizers.newton_summary import summaries, workbench_algorithm

    monkeypatch.setattr(summaries, "compiled_backend_available", lambda device: (True, ""))
    monkeypatch.setattr(workbench_algorithm, "_NOTICES", set())
    cls = ALGORITHMS["newton_summary"]
    n, cached = summaries.AUTO_COMPILE_REFRESHES, summaries.AUTO_CACHED_REFRESHES
    for max_steps, period, want, compile_missing in ((8, 3, "reverse", False), (3 * n, 3, "compiled", True),
                                                     (3 * n, 10, "compiled", False),
                                                     (10 * cached - 10, 10, "reverse", False)):
        problem = build_problem(_config(tiny_config, max_steps=max_steps))
        with pytest.warns(RuntimeWarning, match=f"backend=auto refreshes with {want!r}"):
            algo = cls(problem, problem.build_model(), period_hg=period, hg_batch_size=16)
        assert algo.backend == want and algo.info()["backend"] == want
        assert algo.optimizer.param_groups[0]["backend"] == want
        assert algo.optimizer.compile_missing == compile_missing or want == "reverse"
    explicit = cls(problem, problem.build_model(), period_hg=3, hg_batch_size=16, backend="reverse")
    assert explicit.backend == "reverse" and not explicit.optimizer.compile_fallback


def test_a_failing_automatic_compile_falls_back_to_the_same_numbers(tiny_config, monkeypatch):
    from algorithms.optimizers.newton_summary import summaries

    def broken(*args, **kwargs):
        raise RuntimeError("inductor: C++ compile failed")
    monkeypatch.setattr(summaries, "_hg_compiled", broken)
    monkeypatch.setattr(summaries, "compiled_backend_available", lambda device: (True, ""))
    config = _config(tiny_config, dtype="float64", max_steps=3 * summaries.AUTO_COMPILE_REFRESHES)
    problem = build_problem(config)
    cls = ALGORITHMS["newton_summary"]
    torch.manual_seed(0)
    model = problem.build_model()
    torch.manual_seed(0)
    auto = cls(problem, copy.deepcopy(model), period_hg=3, hg_batch_size=16)
    torch.manual_seed(0)
    reverse = cls(problem, copy.deepcopy(model), period_hg=3, hg_batch_size=16, backend="reverse")
    x, y = problem.data.x_train[:16], problem.data.y_train[:16]
    with pytest.warns(RuntimeWarning, match="compiled refresh failed"):
        first = auto.step(x, y)
    second = reverse.step(x, y)
    assert {k: v for k, v in first.items() if "time" not in k} == {k: v for k, v in second.items() if "time" not in k}
    assert auto.optimizer.param_groups[0]["backend"] == "reverse"
    with pytest.raises(RuntimeError):  # an explicit backend="compiled" raises
        torch.manual_seed(0)
        cls(problem, copy.deepcopy(model), period_hg=3, hg_batch_size=16, backend="compiled").step(x, y)
