"""Two-layer ReLU on a planted 2-D teacher: gradient descent against the convex reformulation.

y = sum_{j<3} a_j relu(w_j . (x, 1)) on 100 points of [-1, 1]^2 (dataset "teacher", k = 3 neurons),
the case where the answer is known: at small beta the convex solution has about k active blocks and
recovers the teacher's neurons; GD from a small random init should find them too.
Patterns for the convex solve are sampled (500 Gaussian gates per solve) plus the network's own;
each further solve adds fresh gates and keeps the active ones, so its objective never increases.
"""
name = "relu_teacher_2d"
dataset = "teacher"
dataset_args = dict(n=100, d=2, k=3, seed=0, n_test=200)
model = "two_layer_relu"
model_args = dict(width=50, init="normal", scale=0.1, signs="mixed", train_output=True)
dtype = "float64"            # the gap to the convex optimum is read down to ~1e-6
batch_size = None            # full batch
epochs = None
max_steps = 10000
seeds = [0]
threads = 1                  # a small model: one CPU thread is fastest (no thread contention)
log_every = 100
snapshot_every = 200
_beta = 1e-4                 # small weight decay: the teacher is (nearly) the optimum
runs = [
    dict(algorithm="relu_gd", label="Adam", optimizer="adam", lr=1e-2, beta=_beta,
         convex_reference=True, reference_gates=500),
    dict(algorithm="relu_gd", label="GD", optimizer="sgd", lr=0.1, beta=_beta),
    dict(algorithm="relu_convex", label="convex (3 solves)", beta=_beta, n_gates=500, max_solves=3),
]
