"""The optimiser of :class:`~au_face.training.task.AUFaceTask`: AdamW with linear warm-up and cosine decay."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig


@dataclass
class OptimizerConfig:
    """AdamW learning rate and weight decay; warm-up over ``warmup_fraction`` of the steps."""

    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05

    def build(self, params: Iterable[torch.nn.Parameter], total_steps: int) -> OptimizerLRSchedulerConfig:
        """What ``configure_optimizers`` returns: the optimiser and a per-step schedule."""
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        total = max(1, total_steps)
        warmup = max(1, int(self.warmup_fraction * total))

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
