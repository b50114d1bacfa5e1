"""Captioning under Lightning: the training loop shared by Show and Tell and both Show, Attend and Tell
variants. It calls the model, adds the context block's own loss term and logs; the maths is in
`decoder.py`, the data in `data/datamodule.py`.

The loss is the per-word negative log-likelihood plus the context block's term (soft: lambda * Eq. 14; hard:
the REINFORCE surrogate of Eq. 12), both summed per caption and divided by the number of words, like the
likelihood. With `loss.capgen_scaling` (the paper presets) the block weighs its term against the likelihood
as the authors' capgen.py does (`CaptionLossConfig`; tests/test_capgen_reference.py). Each validation also
captions the validation images greedily and logs val/bleu4, the metric the paper stopped early on (§5.2).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..common.data.vocab import PAD_ID, Vocab
from ..common.lightning_base import AttnreproModule
from .config import CaptionConfig

VAL_BLEU_BATCH = 100  # images decoded together for val/bleu4


class CaptionModule(AttnreproModule):
    task = "captioning"

    def __init__(self, model: torch.nn.Module, cfg: CaptionConfig, reproduction: str, vocab: Vocab):
        super().__init__(model, cfg, reproduction)
        self.vocab = vocab

    @property
    def monitor(self) -> tuple[str, str]:
        """The validation metric that chooses best.ckpt and stops early: (name, mode)."""
        return ("val/bleu4", "max") if self.cfg.train.val_bleu else ("val/loss", "min")

    def _loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """(loss sum, nll sum, words) of a batch, and the parts to log."""
        logits, extras = self.model(batch["features"], batch["captions_in"])
        target = batch["captions_out"]
        mask = target != PAD_ID
        nll = F.cross_entropy(logits.transpose(1, 2).float(), target, ignore_index=PAD_ID, reduction="none").sum(1)
        extra_loss, parts = self.model.context_loss(extras, mask, nll, self.cfg.loss)
        loss = nll.sum() if extra_loss is None else nll.sum() + extra_loss
        return loss, nll.sum(), mask.sum(), parts

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self._count_batch()
        loss, nll, words, parts = self._loss(batch)
        self._count_tokens(words * self.trainer.world_size)  # on the device: no host sync per step
        self.log("train/loss", nll.detach() / words, prog_bar=True, batch_size=1)
        for key, value in parts.items():
            self.log(f"train/{key}", value, batch_size=1)
        return loss / words

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        _, nll, words, _ = self._loss(batch)
        self._add_validation(nll, words)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.cfg.train.val_bleu and getattr(datamodule, "val_images", None) is not None:
            # every rank decodes the same images with the same weights: the mean over ranks is that one value
            self.log("val/bleu4", self.validation_bleu(*datamodule.val_images), prog_bar=True, sync_dist=True)

    @torch.no_grad()
    def validation_bleu(self, store, rows: list[int], refs: list[list[str]]) -> float:
        """BLEU-4 (x100) of greedy captions of the validation images against their references, lower-cased
        and split on whitespace (pycocoevalcap's BLEU without its Java tokenizer).
        DEVIATION: greedy decoding for speed; the test splits are scored with beam search."""
        from ..common.beam import beam_search
        from .metrics import coco_bleu

        greedy = dataclasses.replace(self.cfg.decode, beam=1, length_penalty=0.0)
        hyps = []
        for start in range(0, len(rows), VAL_BLEU_BATCH):
            features = store[rows[start:start + VAL_BLEU_BATCH]].to(self.device)
            best = beam_search(self.model, features, greedy)
            hyps += [self.vocab.decode(h.tokens).lower() or "." for h in best]
        gts = {i: [" ".join(r.lower().split()) for r in rs] for i, rs in enumerate(refs)}
        bleu = coco_bleu(gts, {i: [h] for i, h in enumerate(hyps)})["bleu"][3]
        return round(100 * bleu, 4)

    def configure_callbacks(self):
        patience = self.cfg.train.early_stopping_patience
        if patience is None:
            return []
        from pytorch_lightning.callbacks import EarlyStopping

        name, mode = self.monitor
        return [EarlyStopping(monitor=name, mode=mode, patience=patience, check_on_train_epoch_end=False)]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict", {})
        for name in ("reward_baseline", "baseline_steps"):  # kept on the module by checkpoints of older releases
            if name in state:
                state[f"model.context.{name}"] = state.pop(name)

    def _checkpoint_extra(self) -> dict:
        return {"vocab": self.vocab.to_json()}
