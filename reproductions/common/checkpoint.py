"""Loading a trained model back from an attnrepro checkpoint (a Lightning .ckpt file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .data.vocab import Vocab
from .errors import AttnreproError


class CheckpointError(AttnreproError):
    pass


@dataclass
class LoadedModel:
    model: object  # nn.Module in eval mode
    cfg: object
    reproduction: str
    src_vocab: Vocab | None  # None for captioning
    tgt_vocab: Vocab  # the output vocabulary (captions, for captioning)
    path: Path
    task: str = "translation"


def read_checkpoint(path: Path | str) -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        # Our own files: they hold the config and vocabularies besides tensors, hence weights_only=False.
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}); re-train, or use another "
            "checkpoint of the run (checkpoints/last.ckpt or the best one)"
        ) from None
    if not isinstance(ckpt, dict) or "attnrepro" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not an attnrepro checkpoint (no 'attnrepro' section); was it "
                              "written by `attnrepro train`?")
    return ckpt


def load_model(path: Path | str, device: str = "cpu") -> LoadedModel:
    from .. import registry

    ckpt = read_checkpoint(path)
    meta = ckpt["attnrepro"]
    try:
        repro = registry.get(meta["reproduction"])
        cfg = repro.config_from_dict(meta["config"], f"{path} (stored config)")
        if repro.task == "captioning":
            src_vocab, tgt_vocab = None, Vocab.from_json(meta["vocab"])
            model = repro.build(cfg, len(tgt_vocab))
        else:
            src_vocab, tgt_vocab = Vocab.from_json(meta["src_vocab"]), Vocab.from_json(meta["tgt_vocab"])
            model = repro.build(cfg, len(src_vocab), len(tgt_vocab))
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
    except AttnreproError:
        raise
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} does not fit its own config ({err}); it is damaged") from None
    model.to(device).eval()
    return LoadedModel(model, cfg, repro.name, src_vocab, tgt_vocab, Path(path), repro.task)
