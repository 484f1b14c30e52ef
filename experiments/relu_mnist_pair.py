"""Two-layer ReLU on a real-data case: MNIST digits 4 against 9 as +-1 regression.

Inputs are the 784 pixels in [0, 1]; F = (1/n) sum (f(x) - y)^2 with y = +1 for a 4 and -1 for a 9;
test_sign_acc is the accuracy of sign(f) on the pair's test images. Minibatch Adam on both layers.
The convex solve is not run here: an interior-point step costs about (P (d+1) + n)^3, which for
d = 784 pixels is out of reach; see experiments/relu_teacher_2d.py and bench/convex_vs_gd.py.
"""
name = "relu_mnist_pair"
dataset = "mnist_pair"
dataset_args = dict(digits=(4, 9), n=2000, n_test=1000)   # first 2000 / 1000 images of the pair
model = "two_layer_relu"
# pre-activations ~ 0.05 * |x| ~ 0.5; output weights +-0.1 keep the initial output O(1)
model_args = dict(width=100, init="normal", scale=0.05, signs="mixed", output_scale=0.1)
batch_size = 64
epochs = 20
seeds = [0]
threads = 1                  # a small model: one CPU thread is fastest (no thread contention)
log_every = 20
eval_every = 100
snapshot_every = 500         # neuron snapshots are 100 x 785 numbers each
target_metric = "test_sign_acc"
runs = [
    dict(algorithm="relu_gd", label="Adam both layers", optimizer="adam", lr=1e-3, beta=1e-4),
]
