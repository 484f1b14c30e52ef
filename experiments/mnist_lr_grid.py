"""The effective step size explains the reference comparison: a small learning-rate grid on MNIST."""
# PersistentSGD(lr, decay) is heavy-ball momentum with effective step lr/(1-decay); AdEMA moves by
# lr*(1-decay) times an EMA of gradients. With matched effective steps the curves collapse onto plain
# SGD's; the summary table prints each run's effective step next to its accuracy. Two epochs keep
# this to minutes on a laptop CPU; raise epochs for the full picture.
name = "mnist_lr_grid"
dataset = "mnist"
model = "mlp"
model_args = dict(hidden=[256])
batch_size = 64
epochs = 2
seeds = [0, 1]
runs = [
    dict(algorithm="sgd", label="SGD eff 0.1", lr=0.1),
    dict(algorithm="persistent_sgd", label="PersistentSGD eff 0.1 (decay .99)", lr=1e-3, decay=0.99),
    dict(algorithm="persistent_sgd", label="PersistentSGD eff 0.3 (decay .9)", lr=3e-2, decay=0.9),
    dict(algorithm="persistent_sgd", label="PersistentSGD eff 1.0 (reference)", lr=1e-2, decay=0.99),
    dict(algorithm="adema", label="AdEMA eff 0.1", lr=100.0, beta=0.999, decay=0.999),
    dict(algorithm="adamw", label="AdamW 1e-3", lr=1e-3),
    dict(algorithm="adamw", label="AdamW 1e-2 (reference)", lr=1e-2),
]
