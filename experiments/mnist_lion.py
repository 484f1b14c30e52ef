"""Bring your own optimizer: Lion (experiments/plugins/lion.py) against AdamW on MNIST, both tuned."""
# The optimizer is a file next to this config, named as "plugins/lion.py:Lion": no registration,
# no edit of the app. Its parameters (lr, betas, weight_decay) come from its constructor, and the
# run folder keeps a copy of the file and its SHA-256, so the record alone reproduces the runs.
# Lion moves every weight by lr per step, so its good learning rates are 3-10x smaller than
# AdamW's: each gets 6 Sobol' trials over its own four decades on a validation split, then 3 seeds.
name = "mnist_lion"
dataset = "mnist"
model = "mlp"
model_args = dict(hidden=[256])
batch_size = 64
epochs = 1
eval_every = 200
seeds = [0, 1, 2]
val_split = 10000
tune = dict(budget=6, metric="val_acc", sampler="sobol", seeds=[0])
runs = [
    dict(algorithm="plugins/lion.py:Lion", label="Lion", lr=loguniform(1e-6, 1e-2)),
    dict(algorithm="adamw", label="AdamW", lr=loguniform(1e-5, 1e-1)),
]
