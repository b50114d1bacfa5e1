"""Config sections of every captioning reproduction (data, model, loss, decoding), with the optimiser and
training sections every task shares (`reproductions.common.sections`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..common.sections import DecodeConfig, OptimConfig, TrainConfig


@dataclass
class CaptionDataConfig:
    dataset: Literal["flickr8k", "karpathy"] = "flickr8k"
    karpathy_json: str | None = None  # dataset_{flickr30k,coco}.json (Karpathy splits); dataset=karpathy only
    images_dir: str | None = None  # default: $ATTNREPRO_DATA/flickr8k/Images, or the JSON's folder
    train_split: str = "train"
    val_split: str = "dev"
    test_splits: list[str] = field(default_factory=lambda: ["test"])
    train_limit: int | None = None  # keep the first N images of the training split (tests)
    eval_limit: int | None = None  # keep the first N images of the validation and test splits
    # see encoders.ENCODERS
    encoder: Literal["efficientnet-lite0", "efficientnet-lite2", "vgg19", "resnet101"] = "efficientnet-lite0"
    encoder_weights: str | None = None  # a local weights file for vgg19/resnet101 (torchvision's .pth)
    feature_device: str = "auto"  # where features are extracted: auto (the GPU when there is one), cpu, cuda
    min_word_count: int = 5  # words seen fewer times in the training captions become <unk>
    max_vocab: int = 10000  # Xu et al. §5.1: 10k words for COCO
    max_len: int = 30  # training captions are cut to this many words
    batch_size: int = 64  # captions per batch
    num_workers: int = 0


@dataclass
class CaptionModelConfig:
    context: Literal["fixed", "soft", "hard"] = "soft"
    embed_dim: int = 512  # m
    hidden_dim: int = 512  # n, the LSTM
    attention_dim: int = 512  # hidden layer of f_att
    attention_layers: int = 1  # layers of f_att's annotation projection (capgen.py n_layers_att)
    init_layers: int = 1  # layers of f_init,h / f_init,c (capgen.py n_layers_init: extra ReLU layers first)
    dropout: float = 0.5
    gate: bool = True  # soft only: beta_t of §4.2.1
    # capgen.py (build_model, use_dropout) drops out h_t and the deep output's tanh'd sum, never E y_{t-1}.
    # DEVIATION (the default; the paper presets set false): E y_{t-1} is dropped too, at the LSTM input and in
    # the deep output.
    embedding_dropout: bool = True
    # capgen.py: `logit = tanh(logit)` between the deep output's sum and L_o; Eq. 7 has none. DEVIATION from
    # capgen.py (the default; the paper presets set true): Eq. 7 as printed.
    output_tanh: bool = False


@dataclass
class CaptionLossConfig:
    doubly_stochastic: float = 1.0  # lambda of Eq. 14 (soft attention); 0 disables
    # lambda_r of Eq. 12 on a per-word reward: capgen.py scales (baseline - mean_t cost) by 1/10.
    reinforce: float = 0.1
    entropy: float = 0.002  # lambda_e of Eq. 12 (capgen.py alpha_entropy_c=0.002)
    baseline_decay: float = 0.9  # b_k = 0.9 b_{k-1} + 0.1 log p(y | s_k, a) (§4.1)
    expected_prob: float = 0.5  # hard: probability that a caption uses alpha instead of samples (§4.1)
    # Weigh the context term against the likelihood as capgen.py does (tests/test_capgen_reference.py). Its
    # likelihood is the mean over the B captions of a minibatch (`cost.mean()`), its REINFORCE and entropy
    # gradients (`known_grads`) are sums over them and its Eq. 14 is `alpha_c * (...).sum(0).mean()`, a sum over
    # the captions and a mean over the L locations. So per caption its lambda_r, lambda_e count B times and its
    # lambda B / L times (64x; 64/196 = 0.33x with VGG-19). DEVIATION (the default false; the paper presets set
    # true): the lambdas apply per caption, as Eqs. 12 and 14 are written.
    capgen_scaling: bool = False


@dataclass
class CaptionDecodeConfig(DecodeConfig):
    """The shared decoding keys with the captioning defaults, and a fixed length limit (an image has no length
    to scale one by)."""

    beam: int = 3
    length_penalty: float = 0.0  # rank by log-probability
    batch_size: int = 50
    max_len: int = 30  # words at most

    def max_tokens(self, src_len):
        return src_len.new_full(src_len.shape, self.max_len)


@dataclass
class CaptionTrainConfig(TrainConfig):
    # §5.2: "early stopping on BLEU score": each validation greedily captions the validation images and logs
    # val/bleu4 (pycocoevalcap's BLEU on the whitespace tokens, no Java needed); best.ckpt is chosen on it.
    val_bleu: bool = True
    early_stopping_patience: int | None = None  # stop after this many validations without a better val/bleu4


@dataclass
class CaptionConfig:
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    model: CaptionModelConfig = field(default_factory=CaptionModelConfig)
    loss: CaptionLossConfig = field(default_factory=CaptionLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: CaptionTrainConfig = field(default_factory=CaptionTrainConfig)
    decode: CaptionDecodeConfig = field(default_factory=CaptionDecodeConfig)
