"""GradMax's student-teacher experiment (Evci et al. 2022, Student_Teacher notebook) with a TINY arm.

Teacher 10-10-10 without biases, weights U[-1, 1], ReLU; 1000 samples x ~ N(0, I). The student
starts with 5 hidden units and gets +1 neuron every 200 full-batch SGD steps (5 growths, then 500
more steps). "big" is the 10-wide student trained from scratch for the same number of steps."""
# Expected: GradMax ends below random; TINY drops the loss at each growth; all approach "big".
name = "growth_student_teacher"
dataset = "student_teacher"
dataset_args = dict(n=1000, n_test=1000, d_in=10, hidden=10, d_out=10, seed=0)
model = "growing_mlp"
model_args = dict(hidden_size=5, number_hidden_layers=1, activation="relu1", bias=False)
batch_size = None                      # full batch
epochs = None
max_steps = 1500                       # 5 growths x 200 steps + 500
seeds = [0, 1, 2]
log_every = 10                         # growth steps always get a row of their own
eval_every = 50
_common = dict(grow_every=200, neurons_per_growth=1, target_width=10, statistics_samples=1000,
               optimizer="SGD", optimizer_args=dict(lr=0.01))
# lr 0.01 is the notebook's 0.1: our loss sums the 10 outputs' squared errors, Keras's MSE averages
# them, so our gradient is 10x theirs.
runs = [
    dict(algorithm="growth", label="GradMax", method="gradmax", gradmax_scale=1.0, **_common),
    dict(algorithm="growth", label="random", method="random", gradmax_scale=1.0, **_common),
    dict(algorithm="growth", label="TINY", method="tiny", **_common),
    dict(algorithm="growth", label="big (10 wide)", method="none", start_width=10, **_common),
]
