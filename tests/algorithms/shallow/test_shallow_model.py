"""Two-layer ReLU model: forward, loss convention, gradients (closed form + finite differences),
bias convention, initialisations and data generators."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from algorithms.shallow import data, init
from algorithms.shallow.model import TwoLayerReLU, add_bias, gradients, objective, patterns, predict
from workbench.problem import DataSplit, Problem
from workbench.registry import DATASETS, MODELS, load_all
from workbench.errors import ConfigError

load_all()  # every family registers itself

F64 = torch.float64


def _net(m=7, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(m, d + 1, generator=g, dtype=F64)
    a = torch.randn(m, generator=g, dtype=F64)
    x = torch.randn(11, d, generator=g, dtype=F64)
    y = torch.randn(11, generator=g, dtype=F64)
    return W, a, x, y


def test_add_bias_and_forward_match_hidden_bias_layer():
    W, a, x, _ = _net()
    X = add_bias(x)
    assert X.shape == (11, 4) and torch.all(X[:, -1] == 1)
    # the ones column is exactly a hidden-layer bias, with no output bias
    lin = torch.nn.Linear(3, 7, dtype=F64)
    with torch.no_grad():
        lin.weight.copy_(W[:, :3])
        lin.bias.copy_(W[:, 3])
    expected = torch.relu(lin(x)) @ a
    torch.testing.assert_close(TwoLayerReLU(W, a)(x), expected)
    torch.testing.assert_close(predict(W, a, X), expected)


def test_objective_convention_matches_problem_loss():
    W, a, x, y = _net()
    model = TwoLayerReLU(W, a)
    split = DataSplit(x, y, x[:0], y[:0], task="regression", n_outputs=1)
    problem = Problem(split, lambda: model, torch.device("cpu"), F64)
    torch.testing.assert_close(objective(W, a, add_bias(x), y), problem.loss(model(x), y))
    beta = 0.3
    expected = ((model(x) - y) ** 2).mean() + beta / 2 * ((W ** 2).sum() + (a ** 2).sum())
    torch.testing.assert_close(objective(W, a, add_bias(x), y, beta), expected)


@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_gradients_closed_form_autograd_and_finite_differences(beta):
    W, a, x, y = _net(seed=3)
    X = add_bias(x)
    Wp, ap = W.clone().requires_grad_(), a.clone().requires_grad_()
    objective(Wp, ap, X, y, beta).backward()
    gW, ga = gradients(W, a, X, y, beta)
    torch.testing.assert_close(Wp.grad, gW, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ap.grad, ga, rtol=1e-12, atol=1e-12)
    # central differences; the random point is away from kinks (min |w.x| is checked)
    assert (X @ W.T).abs().min() > 1e-4
    h = 1e-6
    flat = torch.cat([W.reshape(-1), a])
    fd = torch.empty_like(flat)
    for i in range(flat.numel()):
        e = torch.zeros_like(flat)
        e[i] = h
        f = lambda v: objective(v[: W.numel()].reshape(W.shape), v[W.numel():], X, y, beta)  # noqa: E731
        fd[i] = (f(flat + e) - f(flat - e)) / (2 * h)
    torch.testing.assert_close(fd, torch.cat([gW.reshape(-1), ga]), rtol=1e-6, atol=1e-8)


def test_relu_derivative_at_zero_and_dead_neuron():
    X = torch.tensor([[1.0, 1.0], [-1.0, 1.0]], dtype=F64)
    y = torch.tensor([1.0, 2.0], dtype=F64)
    W = torch.tensor([[1.0, -1.0], [-2.0, -3.0]], dtype=F64)  # first touches 0 at x=1, second is dead
    a = torch.tensor([1.0, -1.0], dtype=F64)
    gW, ga = gradients(W, a, X, y)
    assert torch.all(gW == 0) and torch.all(ga == 0)
    Wp = W.clone().requires_grad_()
    objective(Wp, a, X, y).backward()
    assert torch.all(Wp.grad == 0)
    assert patterns(W, X).tolist() == [[False, False], [False, False]]


def test_train_output_flag_and_set_weights():
    W, a, x, _ = _net()
    frozen = TwoLayerReLU(W, a, train_output=False)
    assert frozen.W.requires_grad and not frozen.a.requires_grad
    frozen.set_weights(W[:2], a[:2])
    assert frozen.width == 2 and not frozen.a.requires_grad
    wide = TwoLayerReLU(W, a)
    wide.load_state_dict(frozen.state_dict())  # a checkpoint of another width is adopted
    torch.testing.assert_close(wide(x), frozen(x))
    with pytest.raises(ValueError):
        TwoLayerReLU(W, a[:3])


def test_normal_init_signs_sorted_and_seeded():
    W, a = init.normal(2, 40, scale=0.5, signs="mixed", seed=4)
    assert W.shape == (40, 3) and W.dtype == F64
    pos = int((a > 0).sum())
    assert 1 <= pos <= 39 and torch.all(a[:pos] == 1) and torch.all(a[pos:] == -1)
    W2, a2 = init.normal(2, 40, scale=0.5, signs="mixed", seed=4)
    assert torch.equal(W, W2) and torch.equal(a, a2)
    assert abs(W.std().item() - 0.5) < 0.15
    _, ap = init.normal(2, 2, signs="positive", seed=0)
    assert torch.all(ap == 1)
    _, am = init.normal(1, 2, signs="mixed", seed=0)
    assert sorted(am.tolist()) == [-1.0, 1.0]  # clipping keeps both signs


def test_grid_init():
    W, a = init.grid(3, scale=2.0, signs="mixed", seed=1)
    assert W.shape == (9, 2)
    assert sorted(set(W[:, 0].tolist())) == [-2.0, 0.0, 2.0]
    assert set(a.tolist()) <= {-1.0, 1.0}
    _, ap = init.grid(3, scale=2.0, signs="positive")
    assert torch.all(ap == 1)


def test_model_registry_entry():
    torch.manual_seed(0)
    m = MODELS["two_layer_relu"]((2,), 1, width=6, scale=0.1, train_output=False, output_scale=0.5)
    assert isinstance(m, TwoLayerReLU) and m.W.shape == (6, 3) and not m.a.requires_grad
    assert set(m.a.abs().tolist()) == {0.5}
    g = MODELS["two_layer_relu"]((1,), 1, init="grid", m_per_axis=4, scale=1.0)
    assert g.width == 16
    with pytest.raises(ValueError, match=r"flat inputs of shape \(d,\), got \(1, 28, 28\)"):
        MODELS["two_layer_relu"]((1, 28, 28), 1)
    with pytest.raises(ValueError, match="init='grid' needs 1-D inputs"):
        MODELS["two_layer_relu"]((2,), 1, init="grid")


def test_reference_generators():
    x, y = data.sinus(20, 1, 0)
    torch.testing.assert_close(x[:, 0], torch.linspace(-0.5, 0.5, 20, dtype=F64))
    torch.testing.assert_close(y, torch.sin(10 * x[:, 0] - math.pi / 2) + 0.2 * x[:, 0] - 0.5)
    x, y = data.linear(5, 1, 0)
    torch.testing.assert_close(y, 0.2 * x[:, 0] + 0.2)
    x, y, b = data.random_linear(30, 3, 2, return_coefficients=True)
    torch.testing.assert_close(y, x @ b)
    assert x.abs().max() <= 0.5 and b.abs().max() <= 1
    x, y = data.noise(50, 2, 1)
    assert x.abs().max() <= 1 and y.min() >= -3 and y.max() <= 1
    x1, y1 = data.noise(50, 2, 1)
    assert torch.equal(x, x1) and torch.equal(y, y1)


def test_teacher_dataset_planted_network():
    split = DATASETS["teacher"](None, n=64, n_test=16, d=2, k=3, seed=5)
    W, a = split.extras["teacher_W"], split.extras["teacher_a"]
    assert W.shape == (3, 3) and a.shape == (3,)
    torch.testing.assert_close(W.norm(dim=1), torch.ones(3, dtype=F64))
    torch.testing.assert_close(split.y_train, predict(W, a, add_bias(split.x_train)))
    torch.testing.assert_close(split.y_test, predict(W, a, add_bias(split.x_test)))
    assert split.task == "regression" and split.n_outputs == 1 and split.y_train.shape == (64,)
    # every planted neuron is active on some points and inactive on others (its kink cuts the data)
    act = patterns(W, add_bias(split.x_train))
    assert act.any(dim=1).all() and (~act).any(dim=1).all()


@pytest.mark.parametrize("name", ["linear", "sinus", "random_linear", "noise"])
def test_generator_datasets(name):
    split = DATASETS[name](None, n=7, n_test=5, d=1, seed=0)
    assert split.x_train.shape == (7, 1) and split.y_train.shape == (7,)
    assert split.x_test.shape == (5, 1) and split.x_train.dtype == F64
    x, y = getattr(data, name)(n=7, d=1, seed=0)
    torch.testing.assert_close(split.x_train, x, rtol=0, atol=0)
    torch.testing.assert_close(split.y_train, y, rtol=0, atol=0)
    empty = DATASETS[name](None, n=4, d=2)
    assert empty.x_test.shape == (0, 2)
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        DATASETS[name](None, n=0)


def _idx_split(tmp_path, n: int, seed: int):
    """n random MNIST-format images and labels 0..9 written as IDX files and read back."""
    from workbench.mnist_files import read_idx, write_idx

    rng = np.random.default_rng(seed)
    images = write_idx(tmp_path / f"images-{seed}", rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
    labels = write_idx(tmp_path / f"labels-{seed}", (np.arange(n) % 10).astype(np.uint8))
    return read_idx(images), read_idx(labels).astype(np.int64)


def test_mnist_pair_keeps_two_digits_as_plus_minus_one(tmp_path):
    images, labels = _idx_split(tmp_path, 30, 0)
    x, y = data.mnist_pair(images, labels, digits=(3, 7), downsample=4)
    keep = np.flatnonzero((labels == 3) | (labels == 7))
    assert x.shape == (6, 49) and x.dtype == F64
    torch.testing.assert_close(y, torch.tensor([1.0, -1.0] * 3, dtype=F64))
    # 4x4 average pooling of the pixels scaled to [0, 1], by hand
    pooled = images[keep].astype(np.float64).reshape(6, 7, 4, 7, 4).mean(axis=(2, 4)) / 255.0
    np.testing.assert_allclose(x.numpy(), pooled.reshape(6, 49), rtol=1e-12, atol=1e-15)
    x4, _ = data.mnist_pair(images, labels, n=4, d=5, seed=1, digits=(3, 7))
    P = torch.randn(784, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    flat = torch.from_numpy(images[keep[:4]].astype(np.float64) / 255.0).reshape(4, 784)
    torch.testing.assert_close(x4, flat @ P / math.sqrt(784), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="two different digits"):
        data.mnist_pair(images, labels, digits=(3, 3))


def test_mnist_pair_dataset_reads_the_mnist_files():
    from pathlib import Path

    from workbench import mnist_files

    root = Path(__file__).resolve().parents[3] / "data"
    try:
        mnist_files.locate(root, "mnist")
    except FileNotFoundError:
        pytest.skip(f"MNIST is not in {root} (setup fetches it)")
    split = DATASETS["mnist_pair"](root, n=50, n_test=20, digits=(0, 1), downsample=2)
    assert split.x_train.shape == (50, 196) and split.x_test.shape == (20, 196)
    _, y_train, _, y_test = mnist_files.load(root, "mnist")
    expected = np.where(y_train[np.isin(y_train, (0, 1))][:50] == 0, 1.0, -1.0)
    np.testing.assert_array_equal(split.y_train.numpy(), expected)
    assert split.extras == {"digits": (0, 1)} and 0 <= split.x_train.min() and split.x_train.max() <= 1
