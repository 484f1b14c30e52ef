"""Entropic JKO on a fixed grid of neurons (notes 2.4): the three KL prox solvers side by side.

Masses on a circle of 32 neuron directions (w, b) = (cos t, sin t), each present with output sign +1
and -1 (64 grid points, any signed measure on the circle is reachable), start uniform with total
mass 8 and flow by JKO steps p_{t+1} = argmin F(p) + W_eps(p, p_t) / tau on 1-D sinus data
(frequency 4). The flow conserves mass, so the mass bounds what the network can fit: the best loss
with total mass 8 on this grid is about 3.3e-3 (mass 1, 4: 0.22, 0.075). Small epsilon / tau keeps the
entropic blur (a diffusion of strength about epsilon / tau) from dominating the flow.
The prox solvers (torch Newton, scipy L-BFGS-B, cvxpy CLARABEL) solve the same problem
argmin (tau/eps) F + KL(p | z), so their curves must coincide; their cost differs (prox_iters, time).
Mass image: wasserstein_relu_jko_mass.png; GIF: python plot.py --animate.
"""
name = "jko_grid"
dataset = "sinus"
dataset_args = dict(n=20, seed=0, frequency=4.0)
model = "relu_grid"
# 32 directions: the scipy solver's L-BFGS-B slows down sharply with the grid size (torch Newton does not)
model_args = dict(kind="circle", n=32, radius=1.0, signs="both", mass=8.0)
dtype = "float64"
batch_size = None
epochs = None
max_steps = 25               # JKO steps
seeds = [0]
log_every = 1
snapshot_every = 1           # the masses are only 64 numbers
_common = dict(tau=0.5, epsilon=0.005, tol=1e-7, max_iter=500, check_every=5)
runs = [
    dict(algorithm="relu_jko", label="prox: torch Newton", prox_solver="torch", **_common),
    dict(algorithm="relu_jko", label="prox: scipy L-BFGS-B", prox_solver="scipy", **_common),
    dict(algorithm="relu_jko", label="prox: cvxpy CLARABEL", prox_solver="cvxpy", **_common),
]
