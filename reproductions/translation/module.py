"""The LightningModule shared by every translation reproduction: loss, logging, optimiser, schedule.

All the maths lives in the plain `nn.Module` a reproduction's `build()` returns; this class only calls
it, so RNNsearch, RNNencdec and the Transformer train under exactly the same loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..common.data.vocab import PAD_ID, Vocab
from ..common.lightning_base import AttnreproModule


class TranslationModule(AttnreproModule):
    task = "translation"

    def __init__(self, model: torch.nn.Module, cfg, reproduction: str, src_vocab: Vocab, tgt_vocab: Vocab):
        super().__init__(model, cfg, reproduction)
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab

    def _loss_sum(self, batch: dict, label_smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
        logits, _ = self.model(batch["src"], batch["tgt_in"])  # (B, T, V)
        target = batch["tgt_out"]  # (B, T)
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(),
            target.flatten(),
            ignore_index=PAD_ID,
            label_smoothing=label_smoothing,
            reduction="sum",
        )
        return loss, (target != PAD_ID).sum()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self._count_batch()
        loss_sum, ntok = self._loss_sum(batch, self.cfg.train.label_smoothing)
        total_ntok = ntok
        if self.trainer.world_size > 1:  # per-token mean over all ranks' tokens (DDP then averages gradients)
            total_ntok = self.all_gather(ntok).sum()
        if self.cfg.optim.loss_scale == "batch_sum":
            # DDP averages the ranks' gradients and Lightning divides each accumulated batch's loss by their
            # number: undo both, so the gradient is that of the step's whole summed NLL
            loss = loss_sum * self.trainer.world_size * self.trainer.accumulate_grad_batches
        else:
            loss = loss_sum * self.trainer.world_size / total_ntok
        self._count_tokens(total_ntok)
        # Tensors, not numbers: Lightning reads on_step metrics when it writes them (every log_every_n_steps),
        # so the host never waits for the device here. batch_size only weights epoch means, which these are not.
        self.log("train/loss", loss_sum.detach() / ntok, prog_bar=True, batch_size=1)
        self.log("train/tokens", self._tokens_seen_tensor(), batch_size=1)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._add_validation(*self._loss_sum(batch, 0.0))  # perplexity of the true distribution, no smoothing

    def _checkpoint_extra(self) -> dict:
        return {"src_vocab": self.src_vocab.to_json(), "tgt_vocab": self.tgt_vocab.to_json()}
