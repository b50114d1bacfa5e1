"""Reading an attnrepro checkpoint (a Lightning .ckpt file). Building the model it holds needs the registry:
`reproductions.loading.load_model`."""

from __future__ import annotations

from pathlib import Path

from .errors import AttnreproError


class CheckpointError(AttnreproError):
    pass


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
