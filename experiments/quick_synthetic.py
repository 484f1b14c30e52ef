"""A seconds-long sanity run: the three optimizers of default.py on synthetic Gaussian clusters."""
# No download needed; handy to check an installation or a new algorithm end to end.
name = "quick_synthetic"
dataset = "synthetic_classification"
dataset_args = dict(n=2048, d=20, classes=4, separation=2.0, seed=0)
model = "mlp"
model_args = dict(hidden=[32])
batch_size = 64
epochs = 3
seeds = [0, 1]
log_every = 8
runs = [
    dict(algorithm="persistent_sgd", label="PersistentSGD", lr=0.01, decay=0.9),
    dict(algorithm="adema", label="AdEMA", lr=1.0, beta=0.99, decay=0.9),
    dict(algorithm="adamw", label="AdamW", lr=1e-3),
]
