"""The house's rooms: a family is one folder whose library imports nothing from the workbench or
another family, whose manifest (``WORKBENCH_MODULES``, ``PLOT_MODULES``, and ``REGISTERS`` read off its
decorators) says what it registers, and which the runner loads only when a config names it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.registry import families

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = sorted(name for name in families() if name != "workbench")


def _python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (nothing imported yet) and return the JSON it prints."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_there_are_families():
    assert set(FAMILIES) >= {"growth", "optimizers", "shallow"}


@pytest.mark.parametrize("family", FAMILIES)
def test_importing_a_family_imports_its_library_alone(family):
    loaded = _python(f"import json, sys; import algorithms.{family}; "
                     "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
                     "('workbench', 'algorithms', 'cvxpy', 'matplotlib') or m == 'scipy.optimize')))")
    others = [m for m in loaded if m.startswith("algorithms.") and m.split(".")[1] != family]
    assert others == [], f"algorithms.{family} imports another family: {others}"
    assert [m for m in loaded if m.split(".")[0] in ("workbench", "cvxpy", "matplotlib") or m == "scipy.optimize"] == []


@pytest.mark.parametrize("family", FAMILIES + ["workbench"])
def test_the_manifest_read_off_the_decorators_is_what_the_family_registers(family):
    """REGISTERS is derived from the decorators of the family's workbench modules, never written by
    hand: importing those modules registers exactly those names (the framework's own too)."""
    manifest = families()[family]
    framework = "" if family == "workbench" else "import workbench.datasets, workbench.models\n"
    found = _python(
        "import importlib, json; from workbench import registry as r\n" + framework +
        "before = {k: set(getattr(r, k.upper())) for k in ('algorithms', 'datasets', 'models', 'plotters', 'animations')}\n"
        f"for m in {list(manifest['WORKBENCH_MODULES'] + manifest['PLOT_MODULES'])!r}: "
        f"importlib.import_module({manifest['package']!r} + '.' + m)\n"
        "print(json.dumps({k: sorted(set(getattr(r, k.upper())) - v) for k, v in before.items()}))")
    for kind in ("algorithms", "datasets", "models"):
        assert found[kind] == sorted(manifest["REGISTERS"][kind]), (family, kind)
    # plots are registered for the family's own algorithms only
    assert set(found["plotters"]) | set(found["animations"]) <= set(manifest["REGISTERS"]["algorithms"])


def test_a_config_loads_only_the_families_it_names():
    loaded = _python("import json, sys; from workbench.config import load_config; from workbench.plan import plan_runs\n"
                     "plan_runs(load_config('experiments/quick_synthetic.py'))\n"
                     "print(json.dumps(sorted({m.split('.')[1] for m in sys.modules if m.startswith('algorithms.')})))")
    assert loaded == ["optimizers"]


def test_an_unknown_name_lists_every_family_s_names(tiny_config):
    from workbench.errors import ConfigError
    from workbench.plan import plan_runs

    tiny_config["runs"] = [dict(algorithm="relu_gdd")]
    with pytest.raises(ConfigError, match=r"Did you mean 'relu_gd'.*growth.*newton_summary.*relu_jko"):
        plan_runs(tiny_config)


def test_a_model_the_algorithm_cannot_train_fails_before_a_run_folder(tiny_config):
    from workbench.errors import ConfigError
    from workbench.runner import Experiment

    tiny_config["runs"] = [dict(algorithm="sgd"), dict(algorithm="relu_convex")]
    with pytest.raises(ConfigError, match=r"runs\[1\] \(relu_convex\) with model 'mlp': relu_convex needs "
                                          r"model='two_layer_relu', got Sequential"):
        Experiment.create(tiny_config)
    assert not Path(tiny_config["out_dir"]).exists()
