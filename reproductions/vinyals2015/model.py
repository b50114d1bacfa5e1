"""Show and Tell (Vinyals et al. 2015, arXiv:1411.4555v2): the fixed-vector baseline of Show, Attend and Tell.

The image I, through the CNN and an embedding W_I, is the LSTM's input once, before the first word:

    x_{-1} = W_I CNN(I)                              (Eq. 10)
    x_t = W_e S_t,  t in {0..N-1}                    (Eq. 11)
    p_{t+1} = LSTM(x_t),  t in {0..N-1}              (Eq. 12)

so the LSTM sees the image only at t = -1 and must carry everything it needs about it in its state: the
fixed-vector bottleneck that attention removes. `FixedImage` below is that block (here CNN(I) is the mean of
the encoder's feature map, the same features the attention models attend over). The embeddings, LSTM, output
layer and vocabulary are those of `reproductions.xu2015` (`reproductions.captioning.decoder`).
"""

from __future__ import annotations

import torch
from torch import nn

from reproductions.captioning.config import CaptionConfig, CaptionLossConfig, CaptionModelConfig
from reproductions.captioning.decoder import Captioner
from reproductions.captioning.encoders import spec


class FixedImage(nn.Module):
    """Show and Tell: the image is the LSTM's input once, at t = -1 (Vinyals Eqs. 10-12); no per-step context."""

    attends, lstm_input = False, 0

    def __init__(self, cfg: CaptionModelConfig, feature_dim: int):
        super().__init__()
        self.image_embed = nn.Linear(feature_dim, cfg.embed_dim)  # W_I, on the mean-pooled CNN feature

    def start(self, features: torch.Tensor, lstm: nn.LSTMCell, sample: bool) -> dict:
        zeros = features.new_zeros(features.size(0), lstm.hidden_size)
        h, c = lstm(self.image_embed(features.mean(1)), (zeros, zeros))  # t = -1: the image, once
        return {"h": h, "c": c}

    def forward(self, state: dict, h_prev: torch.Tensor, sample: bool):
        return None, None, {}

    def loss(self, extras: dict, step_mask: torch.Tensor, nll: torch.Tensor, cfg: CaptionLossConfig):
        return None, {}


def build(cfg: CaptionConfig, vocab_size: int) -> Captioner:
    if cfg.model.context != "fixed":
        raise ValueError(f"vinyals2015 is the fixed-vector model: model.context must be fixed, got "
                         f"'{cfg.model.context}'")
    return Captioner(cfg.model, vocab_size, FixedImage(cfg.model, spec(cfg.data.encoder).dim))
