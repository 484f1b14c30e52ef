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


class _BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, -> ReLU. A block that halves the
    resolution and doubles the channels has He et al.'s option-A shortcut: the input subsampled by
    2 and zero-padded to the new channels (no parameters)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.extra:
            shortcut = nn.functional.pad(shortcut, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return torch.relu(out + shortcut)


@MODELS.register("resnet20")
def resnet20(input_shape, n_outputs, depth=20, width=16) -> nn.Module:
    """He et al. (2016)'s CIFAR ResNet: conv3x3(16) -> 3 stages of (depth - 2) / 6 basic blocks
    (16, 32, 64 channels, stride 2 entering stages 2 and 3, option-A shortcuts) -> global average
    pool -> Linear(n_outputs). depth=20: 0.27 M parameters (269,722 for 10 classes); 32, 44, 56, 110
    give the paper's deeper ones."""
    if len(input_shape) != 3:
        raise ConfigError(f"resnet20 needs image inputs (channels, height, width), got shape {tuple(input_shape)}")
    if (depth - 2) % 6:
        raise ConfigError(f"resnet depth must be 6n + 2 (20, 32, 44, 56, 110), got {depth}")
    blocks = (depth - 2) // 6
    layers: list[nn.Module] = [nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                               nn.ReLU()]
    c = width
    for stage in range(3):
        c_out = width * 2 ** stage
        for k in range(blocks):
            layers.append(_BasicBlock(c, c_out, 2 if (stage > 0 and k == 0) else 1))
            c = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, n_outputs)]
    return nn.Sequential(*layers)
