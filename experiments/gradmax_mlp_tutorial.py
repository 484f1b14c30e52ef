"""GradMax step by step (the reference's gradmax_mlp_tutorial): a 2-hidden-layer GrowingMLP of width 2
on the MultiSin regression, grown with function-preserving GradMax neurons every 3 epochs."""
# Train -> collect statistics -> top singular vectors of M2 as outgoing weights (incoming = 0) ->
# norm rule for the amplitude -> commit; the loss must not jump at a growth (function unchanged).
name = "gradmax_mlp_tutorial"
dataset = "multi_sin"                 # y_d = sum_i sin((i+1) x_i + d), x ~ N(0, I_10), 3 outputs
dataset_args = dict(n=10000, n_test=1000, seed=0)
model = "growing_mlp"
model_args = dict(hidden_size=2, number_hidden_layers=2, activation="relu1")  # ReLU with f'(0)=1: GradMax needs it
batch_size = 1000                      # 10 batches per epoch, as in the tutorial
epochs = 15                            # 4 growth cycles of 3 epochs, then 3 more epochs
seeds = [0]
log_every = 1                          # every step is a row, so every growth step is logged
runs = [
    dict(algorithm="growth", label="GradMax", method="gradmax", grow_every=3, grow_unit="epochs",
         neurons_per_growth=2, target_width=10, layer_choice="round_robin", gradmax_scale=1.0,
         optimizer="SGD", optimizer_args=dict(lr=0.01)),
    dict(algorithm="growth", label="no growth", method="none",
         optimizer="SGD", optimizer_args=dict(lr=0.01)),
]
