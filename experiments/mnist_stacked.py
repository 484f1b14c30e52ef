"""Stacked training: 3 learning rates x 3 seeds of AdamW and of PersistentSGD on MNIST, 9 runs a stack.

A seed study of a learning-rate grid; each optimizer's 9 runs train as one stacked model (README
"Stacked training")."""
# stack=True trains runs that differ only in seed and parameter values as one model: the 9 copies
# of the 784-256-10 MLP share each forward and backward (batched matmuls), each keeps its own
# optimizer, batch order, record and status. Numbers equal the separate runs' to rounding; set
# stack=False (or run `python main.py mnist_stacked stack=False`) to train them one by one.
name = "mnist_stacked"
note = "3 lr x 3 seeds of AdamW and PersistentSGD, each optimizer's 9 runs as one stack"
dataset = "mnist"
model = "mlp"
model_args = dict(hidden=[256])
batch_size = 64
epochs = 1
seeds = [0, 1, 2]
stack = True
runs = [
    dict(algorithm="adamw", label="AdamW", lr=grid([1e-3, 3e-3, 1e-2])),
    dict(algorithm="persistent_sgd", label="PersistentSGD", lr=grid([3e-3, 1e-2, 3e-2]), decay=0.9),
]
