"""Registries answer an unknown name with the valid ones; a family's manifest is read off its
decorators; a config loads only the families it names."""
from __future__ import annotations

import pytest

from workbench.errors import ConfigError
from workbench.registry import Registry, _registered_names, families


def test_an_unknown_name_lists_the_valid_ones_and_the_closest():
    registry = Registry("model")
    registry.register("mlp")(object)
    with pytest.raises(ConfigError, match=r"unknown model 'mpl'. Did you mean 'mlp'\? Valid models: mlp"):
        registry["mpl"]
    registry.register("mlp")(registry["mlp"])  # the same object again: fine
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("mlp")(int)


def test_names_are_read_off_the_decorators():
    source = '''
@register_algorithm("a1")
class A: ...
@DATASETS.register("d1")
def d(): ...
@MODELS.register("m1")
def m(): ...
@PLOTTERS.register("a1")
def p(): ...
@other("x")
def o(): ...
DATASETS.register("d2")(factory)
'''
    assert sorted(_registered_names(source)) == [("algorithms", "a1"), ("datasets", "d1"), ("datasets", "d2"),
                                                 ("models", "m1")]


def test_the_framework_is_a_family_of_its_own():
    manifest = families()["workbench"]
    assert manifest["package"] == "workbench"
    assert {"mnist", "fashion_mnist"} <= set(manifest["REGISTERS"]["datasets"])
    assert {"mlp", "cnn"} <= set(manifest["REGISTERS"]["models"])
