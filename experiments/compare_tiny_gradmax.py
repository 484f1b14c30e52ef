"""TINY against GradMax (and random outgoing directions) side by side: same initial weights, same
batches, same growth schedule, on the MultiSin regression."""
# Expected: TINY's loss drops at each growth (function-improving); GradMax and random do not move
# the loss at insertion (function-preserving) and differ only in how fast the new neurons train.
name = "compare_tiny_gradmax"
dataset = "multi_sin"
dataset_args = dict(n=10000, n_test=1000, seed=0)
model = "growing_mlp"
model_args = dict(hidden_size=2, number_hidden_layers=2, activation="relu1")
batch_size = 1000
epochs = 15
seeds = [0, 1]
log_every = 1                          # growth steps (every 30 steps) are logged rows
_common = dict(grow_every=3, grow_unit="epochs", neurons_per_growth=2, target_width=10,
               layer_choice="best", optimizer="SGD", optimizer_args=dict(lr=0.01))
runs = [
    dict(algorithm="growth", label="TINY", method="tiny", **_common),     # line search over gamma
    dict(algorithm="growth", label="GradMax", method="gradmax", gradmax_scale=1.0, **_common),
    dict(algorithm="growth", label="random", method="random", gradmax_scale=1.0, **_common),
]
