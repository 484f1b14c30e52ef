"""Registered models for the optimizer comparisons: ``mlp`` and a small ``cnn``.

Each entry is ``fn(input_shape, n_outputs, **model_args) -> nn.Module``. Weights use PyTorch's
default initialisation; the runner seeds torch before building, so a seed fixes the weights.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from workbench.registry import MODELS, Registry
from workbench.errors import ConfigError

ACTIVATIONS = Registry("activation")
# Activation names of every config (mlp, cnn, and families' models: growth adds "relu1").
for _name, _cls in {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid,
                    "silu": nn.SiLU, "elu": nn.ELU, "selu": nn.SELU, "identity": nn.Identity}.items():
    ACTIVATIONS.register(_name)(_cls)


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


@MODELS.register("mlp")
def mlp(input_shape, n_outputs, hidden=(256,), activation="relu", bias=True) -> nn.Module:
    """Flatten -> [Linear(h_i) -> activation] * len(hidden) -> Linear(n_outputs).

    The reference comparison's SimpleNet is ``hidden=[256]``, ReLU: 784-256-10, 203,530 parameters.
    A regression problem with one output returns shape (n,)."""
    if isinstance(hidden, int):
        hidden = [hidden]
    if any(not isinstance(h, int) or h <= 0 for h in hidden):
        raise ConfigError(f"mlp hidden sizes must be positive integers, got {hidden!r}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h, bias=bias), make_activation(activation)]
        width = h
    layers.append(nn.Linear(width, n_outputs, bias=bias))
    if n_outputs == 1:
        layers.append(nn.Flatten(0))
    return nn.Sequential(*layers)


@MODELS.register("cnn")
def cnn(input_shape, n_outputs, channels=(24, 32), hidden=256, activation="relu") -> nn.Module:
    """conv5x5(c1) -> act -> maxpool2 -> conv3x3(c2) -> act -> maxpool2 -> Linear(hidden) -> act ->
    Linear(n_outputs): the small MNIST CNN of the notes (about 99% test accuracy in 2 epochs)."""
    if len(input_shape) != 3:
        raise ConfigError(f"cnn needs image inputs (channels, height, width), got shape {tuple(input_shape)}")
    c_in, h, w = input_shape
    c1, c2 = channels
    features = nn.Sequential(
        nn.Conv2d(c_in, c1, 5, padding=2), make_activation(activation), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), make_activation(activation), nn.MaxPool2d(2),
        nn.Flatten(),
    )
    with torch.no_grad():
        n_features = features(torch.zeros(1, c_in, h, w)).shape[1]
    return nn.Sequential(features, nn.Linear(n_features, hidden), make_activation(activation), nn.Linear(hidden, n_outputs))
