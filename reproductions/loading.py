"""A trained model back from an attnrepro checkpoint: the registry entry it names builds the network and its
task rebuilds the vocabularies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import registry, tasks
from .common.checkpoint import CheckpointError, read_checkpoint
from .common.errors import AttnreproError


@dataclass
class LoadedModel:
    model: object  # nn.Module in eval mode
    cfg: object
    reproduction: str
    src_vocab: object | None  # Vocab; None where the input is not text (captioning)
    tgt_vocab: object  # Vocab of the output text
    path: Path
    task: str  # the registry entry's task
    run_id: str | None = None  # the run that wrote the checkpoint (None for checkpoints of older releases)


def load_model(path: Path | str, device: str = "cpu") -> LoadedModel:
    ckpt = read_checkpoint(path)
    meta = ckpt["attnrepro"]
    try:
        repro = registry.get(meta["reproduction"])
        cfg = repro.config_from_dict(meta["config"], f"{path} (stored config)")
        model, src_vocab, tgt_vocab = tasks.get(repro.task).model_from_checkpoint(repro, cfg, meta)
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
    except AttnreproError:
        raise
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} does not fit its own config ({err}); it is damaged") from None
    model.to(device).eval()
    return LoadedModel(model, cfg, repro.name, src_vocab, tgt_vocab, Path(path), repro.task, meta.get("run_id"))
