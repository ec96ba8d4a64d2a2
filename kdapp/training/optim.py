"""How every model in a run learns."""
import math

import torch


class AdamCosine:
    """Adam with its learning rate cosine-decayed to 0 over the run, and optional gradient
    clipping: the one way every model in a run learns, so the KD student and its baseline
    differ only in their loss. With constant=True the rate stays at lr instead, as stochastic
    weight averaging wants it (kdapp.training.teachers.train_teacher's swa)."""

    def __init__(self, params, lr, total_steps, clip_grad_norm=None, constant=False):
        self.params, self.clip = list(params), clip_grad_norm
        self.optimizer = torch.optim.Adam(self.params, lr=lr)
        cosine = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, (lambda step: 1.0) if constant else cosine)

    def step(self, loss):
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        self.scheduler.step()

