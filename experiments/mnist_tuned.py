"""SGD, PersistentSGD, AdEMA and AdamW on MNIST, each at its own best learning rate: a fair comparison."""
# The default experiment compares the reference's own hyperparameters, which favour some optimizers
# by accident (PersistentSGD's effective step lr/(1-decay) is 1.0, AdEMA's lr*(1-decay) is 1e-6).
# Here every optimizer gets the same tuning budget: 8 learning rates drawn by a scrambled Sobol'
# sequence over a log range of four to five decades, each trained on seed 0 and judged on a
# validation split of 10000 training images (never on the test set); the best point is then trained
# on three seeds, whose test accuracy is the comparison. The sampler's seed is shared, so every
# optimizer tries the same relative positions in its range. 44 runs of two epochs: about a minute
# on a 2-core CPU (two worker processes).
name = "mnist_tuned"
dataset = "mnist"
model = "mlp"
model_args = dict(hidden=[256], activation="relu")
batch_size = 64
epochs = 2
eval_every = 250          # validation and test metrics 7 times per run, not only at the epoch ends
seeds = [0, 1, 2]
val_split = 10000         # the last 10000 of 60000 is the usual MNIST split; ours is drawn by a fixed seed
tune = dict(budget=8, metric="val_acc", sampler="sobol", seeds=[0])
runs = [
    dict(algorithm="sgd", label="SGD", lr=loguniform(1e-3, 10.0)),          # effective step: lr
    dict(algorithm="persistent_sgd", label="PersistentSGD", lr=loguniform(1e-5, 1e-1), decay=0.99),   # lr / (1 - decay)
    dict(algorithm="adema", label="AdEMA", lr=loguniform(1e-1, 1e4), beta=0.999, decay=0.999),  # lr * (1 - decay)
    dict(algorithm="adamw", label="AdamW", lr=loguniform(1e-5, 1e-1)),
]
