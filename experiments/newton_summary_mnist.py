"""NewtonSummary (canonical partition, cubic regularisation) against AdamW and SGD with momentum
on MNIST with a tanh MLP: same initial weights and batch order for all three, over seeds."""
# The reference's MLP setup at small scale: tanh 784-128-64-10, batch 100, summaries every 10 steps
# on a separate stream of hg batches of 100. Hyperparameters as in the reference's scripts
# (damping .1-.3, lambda_int 1, remove_negative, mom_lrs .5, EMA direction .9/.9); the baselines
# use the usual MNIST learning rates. The lr-per-subset figure shows what NewtonSummary chose.
name = "newton_summary_mnist"
dataset = "mnist"
model = "mlp"
model_args = dict(hidden=[128, 64], activation="tanh")
batch_size = 100
epochs = 2                        # ~1200 steps; raise for the full picture
seeds = [0, 1, 2]
log_every = 20                    # rows carry lr_group_<i> for the lr plot
runs = [
    dict(algorithm="newton_summary", label="NewtonSummary d=.3", partition="canonical", damping=0.3,
         damping_int=1.0, period_hg=10, mom_lrs=0.5, remove_negative=True, momentum=0.9,
         momentum_damp=0.9, hg_batch_size=100),
    dict(algorithm="adamw", label="AdamW 1e-3", lr=1e-3, weight_decay=0.0),
    dict(algorithm="sgd", label="SGD 0.05 m.9", lr=0.05, momentum=0.9),
]
