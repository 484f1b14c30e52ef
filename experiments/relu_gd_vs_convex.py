"""Two-layer ReLU on 1-D sinus data: gradient descent against the convex reformulation's optimum.

The reference's sinus, y = sin(10x - pi/2) + 0.2x - 0.5 on 20 evenly spaced points of [-1/2, 1/2].
Every run minimises the same F_beta = (1/n) sum (f - y)^2 + (beta/2) sum(|w|^2 + a^2); the convex
solve (all 2n - 1 patterns, exact for 1-D inputs) is the global optimum GD is compared with.
The 2-D teacher version of this comparison is experiments/relu_teacher_2d.py.
"""
name = "relu_gd_vs_convex"
dataset = "sinus"
dataset_args = dict(n=20, seed=0)
model = "two_layer_relu"
# a small init (scale 0.1; the reference's default is 1e-2): neurons start near 0 and align before growing
model_args = dict(width=50, init="normal", scale=0.1, signs="mixed", train_output=True)
dtype = "float64"            # the convex optimum is compared to ~1e-6; keep GD in float64 too
batch_size = None            # full-batch gradient descent
epochs = None
max_steps = 20000
seeds = [0]
threads = 1                  # a small model: one CPU thread is fastest (no thread contention)
log_every = 100
snapshot_every = 200         # neuron positions every 200 steps (bounded memory, smooth animation)
_beta = 1e-3
runs = [
    dict(algorithm="relu_gd", label="GD (both layers)", optimizer="sgd", lr=0.02, beta=_beta,
         convex_reference=True),
    dict(algorithm="relu_gd", label="Adam (both layers)", optimizer="adam", lr=1e-3, beta=_beta,
         convex_reference=True),
    # the convex solve is global: one step is enough, more steps only re-solve
    dict(algorithm="relu_convex", label="convex (CLARABEL)", beta=_beta),
]
