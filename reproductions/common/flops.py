"""Training cost in floating-point operations (the cost column of Vaswani et al. 2017, Table 2).

The forward and backward pass of one sample batch are counted with torch's FlopCounterMode; FLOPs per
target token times the target tokens trained on gives the run's total. Matrix products dominate and are
counted exactly; element-wise operations are not counted, so this is a slight underestimate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .data.vocab import PAD_ID


def flops_per_target_token(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                           keys: tuple[str, str, str] = ("src", "tgt_in", "tgt_out")) -> float:
    """keys: the batch's (source, decoder input, target) entries, as the run's task names them."""
    was_training = model.training
    model.train()
    source, target_in, target = (batch[k] for k in keys)
    with FlopCounterMode(display=False) as counter:
        logits, _ = model(source, target_in)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD_ID)
        loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return counter.get_total_flops() / int((target != PAD_ID).sum())
