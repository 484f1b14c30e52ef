"""Proximal point on a two-layer ReLU network: Frobenius vs exact W2 vs sliced W2 (notes 2.3).

The notes' one run where the distance mattered: m = 50 neurons at scale 1e-2 (mixed signs, output
weights fixed at +-1), n = 5 sinus points, the reference's inner solver (AdamW, lr 1e-3, 100 steps,
state carried over outer steps). With this init (init seed 245121889) the Frobenius prox stalls at a
bad stationary point (loss ~0.34) while the W2 prox, whose optimal coupling lets particles swap with
each other's previous positions, keeps descending (~1e-2 after 200 steps and still decreasing).

All three distances use one normalisation, dist = (1/m) sum_j |v_j - w_sigma(j)|^2 split by output
sign, so gamma means the same step for each (the sliced one moves like W2 with D*gamma = 2*gamma for
small moves). gamma = 0.25 here equals the reference's gamma = 1 (it used F + dist/gamma with per-sign
averages, i.e. about 4x our weight).
"""
name = "wasserstein_prox"
dataset = "sinus"
dataset_args = dict(n=5, seed=0)
model = "two_layer_relu"
# init seed pinned so every distance starts from the init where they differ; train_output=False: a = +-1
model_args = dict(width=50, init="normal", scale=1e-2, signs="mixed", train_output=False, seed=245121889)
dtype = "float64"
batch_size = None            # prox steps are full batch
epochs = None
max_steps = 200              # outer prox steps
seeds = [0]
log_every = 1
snapshot_every = 5           # neuron positions + the inner loop of that outer step (bounded memory)
_common = dict(gamma=0.25, inner_steps=100, inner_optimizer="adamw", inner_lr=1e-3, reset_inner_state=False)
runs = [
    dict(algorithm="relu_prox", label="Frobenius", distance="frobenius", **_common),
    dict(algorithm="relu_prox", label="W2 (exact)", distance="wasserstein2", **_common),
    dict(algorithm="relu_prox", label="sliced W2 (128 dirs)", distance="sliced_wasserstein2", n_projections=128,
         **_common),
]
