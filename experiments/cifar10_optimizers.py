"""CIFAR-10 with resnet20, crop+flip and a cosine schedule: SGD momentum, AdamW, PersistentSGD, AdEMA."""
# The standard recipe (He et al. 2016's ResNet-20 with random crops and flips; a cosine learning
# rate after a short warmup) for four optimizers, three seeds each, every optimizer from the same
# initial weights and batch order per seed. The learning rates are the usual ones for SGD (0.1,
# momentum 0.9) and AdamW (1e-3, weight decay 5e-4 * 10); PersistentSGD and AdEMA get the same
# effective step as SGD (lr / (1 - decay) = 0.1 * 10 and lr * (1 - decay) = 1): tune them with
# experiments/mnist_tuned.py's protocol for a fair comparison.
# Needs the CIFAR-10 files: ./setup.sh --cifar-dir DIR, or --with-cifar on a connected machine.
# Cost: a resnet20 step at batch 128 takes 444 ms on one core of this project's 2-core Xeon (256 ms
# on both), 2.9 minutes an epoch; the 12 runs of 30 epochs take about 9 hours with two workers. On a
# GPU an epoch takes seconds (not measured: no GPU has run this project yet). The data path
# (batches, crops, flips, normalisation) is 3 ms a batch (bench/cifar_epoch.py).
name = "cifar10_optimizers"
dataset = "cifar10"
augment = dict(crop=4, flip=True)
model = "resnet20"
batch_size = 128
epochs = 30
eval_every = None          # at each epoch end
seeds = [0, 1, 2]
_schedule = dict(kind="cosine", warmup=390)   # one epoch of warmup, then cosine to 0
runs = [
    dict(algorithm="sgd", label="SGD momentum", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule=_schedule),
    dict(algorithm="adamw", label="AdamW", lr=1e-3, weight_decay=5e-3, schedule=_schedule),
    dict(algorithm="persistent_sgd", label="PersistentSGD", lr=0.01, decay=0.9, schedule=_schedule),
    dict(algorithm="adema", label="AdEMA", lr=10.0, beta=0.999, decay=0.9, schedule=_schedule),
]
