"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): a user's optimizer in one file.

    m_hat = beta1 m + (1 - beta1) g          the update direction interpolates momentum and gradient
    p    <- p (1 - lr wd) - lr sign(m_hat)   every coordinate moves by exactly lr (plus decay)
    m    <- beta2 m + (1 - beta2) g          the momentum is updated after, with its own rate

experiments/mnist_lion.py compares it with AdamW; README "Bring your own" explains how.
"""
import torch


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        if lr <= 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(m * beta1 + p.grad * (1 - beta1)), alpha=-group["lr"])
                m.mul_(beta2).add_(p.grad, alpha=1 - beta2)
