"""The notes' two-particle toy (2.3): f(x, y) = (x - 4)^2 / 2 from (x, y) = (0, 1), one prox step.

Frobenius converges to x = 4g/(1+g), y = 1; the warm-started W2 (and, in 1-D, sliced W2) inner
gradient descent crosses y's old position when 4g/(1+g) > 1 (g > 1/3), the monotone matching
swaps, and it ends at (1 + 3g/(1+g), 0): at g = 0.5, (1.333, 1) against (2.0, 0.0).
The notes weight the *summed* squared displacement by 1/(2g); our distances average over the
m = 2 particles, so gamma = g/2 = 0.25 here. Model and data: ``particle_toy`` / ``particle_toy``
(algorithms/shallow/toy.py) realise f as a regression loss, F = (W[0] / sqrt 2 - 4 / sqrt 2)^2.
"""
name = "two_particle_toy"
dataset = "particle_toy"
model = "particle_toy"
dtype = "float64"
batch_size = None
epochs = None
max_steps = 1                 # one prox step from (0, 1)
seeds = [0]
log_every = 1
snapshot_every = 1
_common = dict(gamma=0.25, inner_steps=400, inner_optimizer="sgd", inner_lr=1 / 6)
runs = [
    dict(algorithm="relu_prox", label="Frobenius", distance="frobenius", **_common),
    dict(algorithm="relu_prox", label="W2 (warm-started inner GD)", distance="wasserstein2", **_common),
    dict(algorithm="relu_prox", label="sliced W2 (1-D: exact)", distance="sliced_wasserstein2", n_projections=4,
         **_common),
]
