"""The harness around the reproductions: the `attnrepro` command line and what its commands run."""

from __future__ import annotations

import logging
import warnings

# Third-party messages that say nothing to an attnrepro user, each matched by its exact opening (and its logger or
# warning category), so that every other message, new ones included, still shows.
KNOWN_NOISE_LOGS = {
    # Lightning advertises its cloud logger whenever a Trainer has other loggers (ours: CSV and W&B)
    "pytorch_lightning.utilities.rank_zero": ("💡 Tip: For seamless cloud logging",),
    # said at every trainer.save_checkpoint() of ours: full checkpoints are what resumption needs
    "pytorch_lightning.trainer.connectors.checkpoint_connector": ("`weights_only` was not set",),
    # wandb (on the root logger) when a run's figures differ in size, as attention maps of different sentences do
    "root": ("Images sizes do not match",),
}
KNOWN_NOISE_WARNINGS = (
    # Lightning's own pytree helper (pytorch_lightning/utilities/_pytree.py, 2.6) uses torch's deprecated LeafSpec
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)


class _DropKnown(logging.Filter):
    def __init__(self, openings: tuple[str, ...]):
        super().__init__()
        self.openings = openings

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.openings)


def quiet_known_noise() -> None:
    """Silence the known third-party tips and deprecation warnings above, and only those. Cheap (no third-party
    import): the CLI calls it first, and a process that trains outside the CLI (a sweep's job) may call it too."""
    for name, openings in KNOWN_NOISE_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown(openings))
    for message, category in KNOWN_NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
