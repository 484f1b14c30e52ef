"""Layer-wise reparametrisation invariance: the scaled_mlp computes the same function as the plain
tanh MLP at init, but stores W_i / a_i and b_i / c_i. NewtonSummary (canonical partition) follows
the same trajectory whatever the scales; AdamW does not.

Run it twice and overlay the two records:
    python main.py experiments/newton_summary_invariance.py
    python main.py experiments/newton_summary_invariance.py name=newton_summary_invariance_unscaled "model_args={'hidden': [64], 'activation': 'tanh'}"
    python plot.py results/<scaled run> results/<unscaled run>
The NewtonSummary loss curves coincide (measured: max relative difference of the training-loss rows
8e-7 over the 300 steps, rounding growing along the trajectory); the AdamW ones differ by up to 95%.
"""
name = "newton_summary_invariance"
dataset = "mnist"
subset = 5000                     # small and float64: the two runs agree to ~1e-8 (W / a is rounded in float32 at build)
dtype = "float64"
model = "scaled_mlp"
model_args = dict(hidden=[64], activation="tanh", weight_scales=[10.0, 0.1], bias_scales=[0.2, 5.0])
batch_size = 100
epochs = None                     # 300 steps are 6 epochs of the subset: max_steps alone stops the runs
max_steps = 300
eval_every = 50
log_every = 10
seeds = [0]
runs = [
    dict(algorithm="newton_summary", label="NewtonSummary", partition="canonical", damping=0.3,
         damping_int=1.0, period_hg=10, mom_lrs=0.5, remove_negative=True, momentum=0.9,
         momentum_damp=0.9, hg_batch_size=100),
    dict(algorithm="adamw", label="AdamW 1e-3", lr=1e-3, weight_decay=0.0),
]
