"""Run directories: where a run keeps its config, provenance, metrics, outputs and checkpoints.

    RUN_DIR/
      config.yaml        the resolved config
      command.txt        the command line that started the run
      provenance.json    git commit, package versions, data checksums, seed, machine
      metrics.json       per split: BLEU, chrF, signatures, BLEU by length; training: wall time, steps, tokens/s
      hyps/SPLIT.txt     one hypothesis per line
      checkpoints/       best.ckpt (lowest validation loss), last.ckpt
      logs/metrics.csv   learning curves (Lightning's CSV logger); wandb/ when W&B is on
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml

from reproductions.common.errors import AttnreproError
from reproductions.common.io import atomic_write_json, atomic_write_text

PACKAGES = ("attnrepro", "torch", "pytorch-lightning", "sacrebleu", "tokenizers", "datasets", "wandb", "numpy")


def default_run_dir(name: str, preset: str, tag: str, seed: int) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / name / f"{preset}-{tag}-seed{seed}-{stamp}"


def git_commit() -> dict:
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {"commit": commit or "unknown", "dirty": dirty}


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine() -> dict:
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": _torch_threads(),
    }


def _torch_threads() -> int | None:
    if "torch" not in sys.modules:
        return None
    return sys.modules["torch"].get_num_threads()


def start_run(run_dir: Path, cfg_dict: dict, seed: int, checksums: dict, extra: dict | None = None) -> None:
    """Write config, command and provenance before training starts, so even a crashed run says what it was."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg_dict, sort_keys=False))
    atomic_write_text(run_dir / "command.txt", shlex.join(sys.argv) + "\n")
    atomic_write_json(
        run_dir / "provenance.json",
        {
            "seed": seed,
            "git": git_commit(),
            "packages": package_versions(),
            "machine": machine(),
            "data_checksums": checksums,
            "started": dt.datetime.now().isoformat(timespec="seconds"),
            **(extra or {}),
        },
    )


def read_metrics(run_dir: Path) -> dict:
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise AttnreproError(f"{path} is not valid JSON; delete it and run `attnrepro evaluate {run_dir}`") from None


def update_metrics(run_dir: Path, section: str, values: dict) -> dict:
    metrics = read_metrics(run_dir)
    metrics.setdefault(section, {}).update(values)
    atomic_write_json(Path(run_dir) / "metrics.json", metrics)
    return metrics


def check_new_run_dir(run_dir: Path) -> None:
    if run_dir.exists() and any(run_dir.iterdir()):
        raise AttnreproError(f"run directory {run_dir} already holds a run; choose another --run-dir")
