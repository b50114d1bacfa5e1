"""Optimisers and learning-rate schedules from an `OptimConfig`, for every reproduction's LightningModule."""

from __future__ import annotations

import torch

from .config import ConfigError


def inverse_sqrt(step: int, warmup: int) -> float:
    """Vaswani et al. 2017 (arXiv:1706.03762v7), Eq. 3 without its d_model^-0.5 factor, which is `optim.lr`:
    lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5). LambdaLR counts from 0; the paper from 1."""
    step, warmup = step + 1, max(warmup, 1)
    return min(step**-0.5, step * warmup**-1.5)


def cooldown_factor(progress: float, cooldown: float) -> float:
    """The multiplier of the learning rate at `progress` (0..1) through a run's budget: 1, then falling linearly
    to 0 over the last `cooldown` of it. A budget of minutes leaves the learning rate high at its end under
    Eq. 3's inverse square root or a plateau schedule; a linear cooldown to zero at the end of a fixed budget
    (Hägele et al. 2024, arXiv:2405.18392, "warmup-stable-decay") anneals instead."""
    if cooldown <= 0:
        return 1.0
    return min(1.0, max(0.0, (1.0 - progress) / cooldown))


PLATEAU_BY_MODULE = 10**9  # a frequency in epochs that Lightning never reaches


def configure_optimizers(opt, params):
    """What `LightningModule.configure_optimizers` returns for the config section `opt`. Adam on CUDA is the
    fused kernel (one launch for all parameters, no host synchronisation; Lightning has moved the model to
    its device before it asks for the optimiser), except with gradient clipping: Lightning's mixed-precision
    plugin refuses to clip for an optimiser that unscales gradients itself, as the fused one does, so that
    case takes the multi-tensor (`foreach`) kernels, which do not synchronise either."""
    params = list(params)
    if not 0.0 <= opt.cooldown < 1.0:
        raise ConfigError(f"config: 'optim.cooldown' must be a fraction of the budget in [0, 1), got {opt.cooldown!r}")
    if opt.name == "adadelta":  # Bahdanau et al. App. B.2: eps 1e-6, rho 0.95
        optimizer = torch.optim.Adadelta(params, lr=opt.lr, rho=opt.rho, eps=opt.eps, weight_decay=opt.weight_decay)
    elif opt.name == "rmsprop":  # Xu et al. §5.2: RMSProp for Flickr8k (decay rate in `rho`)
        optimizer = torch.optim.RMSprop(params, lr=opt.lr, alpha=opt.rho, eps=opt.eps, weight_decay=opt.weight_decay)
    else:
        fused = bool(params) and all(p.is_cuda for p in params) and not getattr(opt, "clip_norm", None)
        optimizer = torch.optim.Adam(params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
                                     weight_decay=opt.weight_decay, fused=fused or None)
    if opt.schedule == "inverse_sqrt":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: inverse_sqrt(step, opt.warmup_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
    if opt.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=opt.plateau_factor, patience=opt.plateau_patience
        )
        # Stepped by the module once after each validation (AttnreproModule.step_plateau), never by Lightning:
        # Lightning steps it at epoch ends, which a budget validating every N steps need not align with (no
        # validation yet, or one validation read twice and counted as a stall). Configured here all the same, so
        # that checkpoints carry its state and a resumed run continues it exactly.
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss",
                                                         "interval": "epoch", "frequency": PLATEAU_BY_MODULE}}
    return optimizer
