"""An MNIST MLP grown from 4 hidden neurons to 64 with TINY, GradMax and random neurons, against a
fixed 784-64-10 baseline trained for the same number of steps with the same optimizer."""
# The baseline is the growth algorithm with method="none" and start_width=64: one config has one
# model, so start_width rebuilds the network at the target width (torch's default init, seeded).
# With one hidden layer a growth adds at most min(785, 10) = 10 neurons: 8 per growth, every 200
# steps, reaches 64 after 8 growths (about 1.7 epochs), then 2.3 epochs at full width.
name = "growth_mnist"
dataset = "mnist"
dataset_args = dict(flatten=True)
model = "growing_mlp"
model_args = dict(hidden_size=4, number_hidden_layers=1, activation="relu1")
batch_size = 64
epochs = 4
seeds = [0]
log_every = 50                         # growth steps always get a row of their own
# whitening="ridge": MNIST's constant border pixels make S2 singular; the ridge keeps TINY on the
# fast Cholesky route instead of a 785 x 785 eigendecomposition per growth.
_common = dict(grow_every=200, neurons_per_growth=8, target_width=64, statistics_samples=2048, whitening="ridge",
               optimizer="SGD", optimizer_args=dict(lr=0.05, momentum=0.9))
runs = [
    # TINY's greedy line search capped at gamma = 1: larger gammas (up to 4 were chosen) drop the loss
    # more at insertion but leave large new weights that slow the SGD that follows (93.5% vs 95%).
    dict(algorithm="growth", label="TINY", method="tiny", gamma_expand=0,
         gamma_grid=[1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0], **_common),
    dict(algorithm="growth", label="GradMax", method="gradmax", gradmax_scale=0.5, **_common),
    dict(algorithm="growth", label="random", method="random", gradmax_scale=0.5, **_common),
    dict(algorithm="growth", label="fixed 64", method="none", start_width=64, **_common),
]
