"""PersistentSGD vs AdEMA vs AdamW on MNIST, with the settings of the GradRetentionNet reference."""
# The reference's comparison (784-256-10 ReLU MLP, batch 64, 10 epochs) made fair: every optimizer
# starts from the same initial weights and sees the same batch order for a given seed, and each run
# records its effective step size. The hyperparameters are the reference's own: PersistentSGD's
# effective step lr/(1-decay) = 1.0 is far too large and AdEMA's lr*(1-decay) = 1e-6 far too small,
# which is the point of experiments/mnist_lr_grid.py.
name = "mnist_optimizers"
dataset = "mnist"
model = "mlp"
model_args = dict(hidden=[256], activation="relu")
batch_size = 64
epochs = 10
seeds = [0, 1, 2]
log_every = 50            # ~19 training-loss rows per epoch
eval_every = None         # test loss and accuracy at every epoch end
runs = [
    dict(algorithm="persistent_sgd", label="PersistentSGD", lr=0.01, decay=0.99),
    dict(algorithm="adema", label="AdEMA", lr=1e-3, beta=0.999, decay=0.999),
    dict(algorithm="adamw", label="AdamW", lr=0.01),   # the reference's AdamW(lr=0.01), weight decay 0.01
]
