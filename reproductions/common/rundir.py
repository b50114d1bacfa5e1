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
    """Where a run ran. With torch loaded: whether the CPU multiplies bf16 natively (what `train.precision: auto`
    decides by) and the GPU's name; time-budgeted presets train as many steps as the machine allows."""
    facts = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "torch_threads": _torch_threads(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        from reproductions.common.precision import cpu_has_bf16

        facts["cpu_bf16"] = cpu_has_bf16()
        facts["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return facts


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def is_rank_zero() -> bool:
    """True in the process that owns the run directory: rank 0 of a DDP job (Lightning, torchrun and SLURM
    set these variables in every process they start), or a plain single process."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "0") != "0":
            return False
    return True


def read_run(run_dir: Path) -> dict:
    """What a run was started with: reproduction, preset, seed and the resolved config."""
    run_dir = Path(run_dir)
    try:
        provenance = json.loads((run_dir / "provenance.json").read_text())
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        return {"reproduction": provenance["reproduction"], "preset": provenance["preset"],
                "seed": provenance["seed"], "config": config}
    except FileNotFoundError as err:
        raise AttnreproError(f"{run_dir} is not a run directory ({Path(err.filename).name} is missing)") from None
    except (json.JSONDecodeError, yaml.YAMLError, KeyError) as err:
        raise AttnreproError(f"{run_dir}: provenance.json or config.yaml is damaged ({err}); start a new run") from None


def newest_checkpoint(run_dir: Path) -> Path:
    """The checkpoint to resume from: the newer of checkpoints/resume.ckpt and checkpoints/last.ckpt."""
    candidates = [p for p in (Path(run_dir) / "checkpoints" / n for n in ("resume.ckpt", "last.ckpt")) if p.is_file()]
    if not candidates:
        raise AttnreproError(f"{run_dir} has no checkpoint to resume from (checkpoints/resume.ckpt or last.ckpt); "
                             "it died before its first checkpoint: start it again")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def curves_until(run_dir: Path, checkpoint: Path) -> list[dict]:
    """Learning-curve rows of the steps the checkpoint holds (later rows are redone by the resumed run). Row
    `step` k is batch k (its learning rate, its loss): a checkpoint at global_step G holds batches 0..G-1. A
    graceful stop (SIGTERM on a SLURM requeue) flushes rows past the checkpoint; SIGKILL may not."""
    import csv

    import torch

    path = Path(run_dir) / "logs" / "metrics.csv"
    if not path.is_file():
        return []
    step = torch.load(checkpoint, map_location="cpu", weights_only=True).get("global_step", 0)
    with open(path, newline="") as fh:
        return [row for row in csv.DictReader(fh) if row.get("step") and int(float(row["step"])) < step]


def prepend_curves(run_dir: Path, rows: list[dict]) -> None:
    """Put the rows of earlier attempts before the resumed attempt's rows in logs/metrics.csv."""
    import csv
    import io

    path = Path(run_dir) / "logs" / "metrics.csv"
    new = list(csv.DictReader(open(path, newline=""))) if path.is_file() else []
    fields = list(dict.fromkeys([k for row in rows + new for k in row]))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows + new)
    atomic_write_text(path, out.getvalue())


def note_resume(run_dir: Path, checkpoint: Path, final_step: int) -> None:
    path = Path(run_dir) / "provenance.json"
    provenance = json.loads(path.read_text())
    provenance.setdefault("resumed", []).append({
        "at": dt.datetime.now().isoformat(timespec="seconds"), "from": Path(checkpoint).name,
        "git": git_commit(), "final_step": final_step,
    })
    atomic_write_json(path, provenance)
