"""Run directories: where a run keeps its config, provenance, metrics, outputs and checkpoints.

    RUN_DIR/
      config.yaml        the resolved config
      command.txt        the command line that started the run
      provenance.json    git commit, package versions, data checksums, seed, machine
      metrics.json       per split: BLEU, chrF, signatures, BLEU by length; training: wall time, steps, tokens/s
      hyps/SPLIT.txt     one hypothesis per line
      checkpoints/       best.ckpt (lowest validation loss), last.ckpt
      logs/metrics.csv   learning curves (Lightning's CSV logger); wandb/ when W&B is on
      run.lock           held by the one process that writes the run (RunLock)
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from importlib import metadata
from pathlib import Path

import yaml

from reproductions.common.checkpoint import CheckpointError
from reproductions.common.errors import AttnreproError
from reproductions.common.io import atomic_write_json, atomic_write_text, file_sha256

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
        # an installed package may sit inside someone else's repository (a venv in their project): only a
        # checkout of attnrepro itself (an editable install, or a venv inside the checkout) has a commit to record
        if not _is_attnrepro_checkout(git("rev-parse", "--show-toplevel")):
            return {"commit": "unknown", "dirty": False}
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {"commit": commit or "unknown", "dirty": dirty}


def _is_attnrepro_checkout(toplevel: str) -> bool:
    """Whether a repository root is a checkout of this project: its pyproject.toml names the attnrepro package."""
    pyproject = Path(toplevel) / "pyproject.toml" if toplevel else None
    try:
        text = pyproject.read_text() if pyproject is not None and pyproject.is_file() else ""
    except OSError:
        return False
    return re.search(r'^name\s*=\s*"attnrepro"\s*$', text, re.MULTILINE) is not None


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
            "run_id": uuid.uuid4().hex,  # stored in every checkpoint, so a checkpoint names the run it is of
            **(extra or {}),
        },
    )


def _read_mapping(path: Path, what_to_do: str, kind: str, parse, errors: tuple) -> dict:
    """A run file holding a mapping; damage is one line naming the file, what is wrong and `what_to_do`."""
    try:
        data = parse(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AttnreproError(f"{path} is missing; {what_to_do}") from None
    except (*errors, UnicodeDecodeError):
        raise AttnreproError(f"{path} is not valid {kind}; {what_to_do}") from None
    except OSError as err:
        raise AttnreproError(f"cannot read {path} ({err.strerror})") from None
    if not isinstance(data, dict):
        raise AttnreproError(f"{path} does not hold a {kind} mapping; {what_to_do}")
    return data


def read_json(path: Path, what_to_do: str) -> dict:
    """A run file holding a JSON mapping (provenance.json, metrics.json)."""
    return _read_mapping(path, what_to_do, "JSON", json.loads, (ValueError,))


def read_yaml(path: Path, what_to_do: str) -> dict:
    """A run file holding a YAML mapping (config.yaml)."""
    return _read_mapping(path, what_to_do, "YAML", yaml.safe_load, (yaml.YAMLError,))


def read_metrics(run_dir: Path) -> dict:
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return {}
    return read_json(path, f"delete it and run `attnrepro evaluate {run_dir}` to score the run again")


def update_metrics(run_dir: Path, section: str, values: dict) -> dict:
    metrics = read_metrics(run_dir)
    metrics.setdefault(section, {}).update(values)
    atomic_write_json(Path(run_dir) / "metrics.json", metrics)
    return metrics


LOCK_FILE = "run.lock"


class RunDirBusy(AttnreproError):
    """Another live process writes this run directory."""


class RunLock:
    """One writer per run directory: an exclusive lock (fcntl.flock) on RUN_DIR/run.lock, held for the life of
    the run. The kernel releases it when the process ends, however it ends (SIGKILL included), so a lock that
    is still held always means a live writer; the file names that writer (pid, host, start) for the message."""

    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise AttnreproError(f"cannot write the run directory {self.run_dir} ({err.strerror}); choose a "
                                 "writable --run-dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirBusy(busy_message(self.run_dir, lock_holder(self.run_dir) or {})) from None
        holder = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": dt.datetime.now().isoformat(timespec="seconds")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


def clear_run_dir(run_dir: Path) -> None:
    """Remove what a dead attempt left in a run directory, all but its lock file (call it holding the RunLock)."""
    for entry in Path(run_dir).iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def lock_holder(run_dir: Path | str) -> dict | None:
    """The live process that holds the run directory's lock ({pid, host, started}), or None when none does."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        try:
            return json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            return {}
    finally:
        os.close(fd)


def wait_for_writer(run_dir: Path | str, timeout_s: float, poll_s: float = 0.5) -> dict | None:
    """Wait up to `timeout_s` for the process that holds the run's lock to end; -> its holder if it still
    does. A requeued job's new attempt can start before the old attempt's process has finished exiting."""
    deadline = time.monotonic() + timeout_s
    while (holder := lock_holder(run_dir)) is not None and time.monotonic() < deadline:
        time.sleep(poll_s)
    return holder


def busy_message(run_dir: Path, holder: dict) -> str:
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    since = f" since {holder['started']}" if holder.get("started") else ""
    return (f"{run_dir} is being written by another process ({who}{since}); wait for it to finish or stop it, "
            f"then `attnrepro train --resume {run_dir}`")


def run_id(run_dir: Path) -> str | None:
    """The run's identity from provenance.json (None for runs of older releases)."""
    path = Path(run_dir) / "provenance.json"
    return read_json(path, "start a new run").get("run_id") if path.is_file() else None


def check_new_run_dir(run_dir: Path) -> None:
    if run_dir.exists() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        raise AttnreproError(f"run directory {run_dir} already holds a run; choose another --run-dir "
                             f"(or `attnrepro train --resume {run_dir}` to continue it)")


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Temporary files of atomic writes (a dot, the file's name, a random part, `.tmp`) that a killed writer
    left; call under the lock."""
    stale = [p for p in Path(run_dir).rglob(".*.tmp") if p.is_file() and "wandb" not in p.parts]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def is_rank_zero() -> bool:
    """True in the process that owns the run directory: rank 0 of a DDP job (Lightning, torchrun and SLURM
    set these variables in every process they start), or a plain single process."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "0") != "0":
            return False
    return True


class RunDir:
    """A run's directory, read through one door by everything that reads runs (the report, evaluate, resume, the
    figures, the benchmarks, the leaderboard client, the tasks' significance tests): config.yaml,
    provenance.json, metrics.json, hyps/, checkpoints/, figures/. Damage to a file is one line naming it and what
    to do. The writers are `start_run`, `update_metrics` and the run's `RunLock`."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @staticmethod
    def is_run(path: Path | str) -> bool:
        """Whether `path` holds a run (its provenance.json)."""
        return (Path(path) / "provenance.json").is_file()

    @classmethod
    def find(cls, targets: list[Path | str]) -> list[RunDir]:
        """The runs at or below `targets` (run directories or folders of them, e.g. a sweep's), each once."""
        paths: list[Path] = []
        for target in map(Path, targets):
            if not target.exists():
                raise AttnreproError(f"{target} does not exist; give run directories or sweep folders")
            found = [target] if cls.is_run(target) else sorted(
                p.parent for p in target.rglob("provenance.json") if "wandb" not in p.parts)
            if not found:
                raise AttnreproError(f"{target} holds no runs (no provenance.json below it)")
            paths += found
        return [cls(path) for path in dict.fromkeys(paths)]

    @functools.cached_property
    def provenance(self) -> dict:
        """What the run was started with (reproduction, preset, seed, commit, machine, data checksums)."""
        if not self.is_run(self.path):
            raise AttnreproError(f"{self.path} is not a run directory (provenance.json is missing)")
        provenance = read_json(self.path / "provenance.json", "the run cannot be resumed or reported; start a new run")
        missing = [k for k in ("reproduction", "preset", "seed") if k not in provenance]
        if missing:
            raise AttnreproError(f"{self.path / 'provenance.json'} has no '{missing[0]}'; start a new run")
        return provenance

    @functools.cached_property
    def config(self) -> dict:
        """The resolved config the run was started with (config.yaml), as a mapping."""
        return read_yaml(self.path / "config.yaml",
                         "restore it (the config the run was started with) or start a new run")

    def check(self) -> RunDir:
        """Read provenance.json and config.yaml now, so that damage to either is said before any work; -> self."""
        _ = (self.provenance, self.config)
        return self

    @property
    def reproduction(self) -> str:
        return self.provenance["reproduction"]

    @property
    def preset(self) -> str:
        return self.provenance["preset"]

    @property
    def seed(self) -> int:
        return self.provenance["seed"]

    @property
    def started(self) -> bool:
        """Whether a run was started here (its config.yaml is written), finished or not."""
        return (self.path / "config.yaml").is_file()

    def metrics(self) -> dict:
        """metrics.json as it is now ({} before the run has any): training, splits, status."""
        return read_metrics(self.path)

    def scored(self) -> bool:
        """Whether the run's test splits are scored."""
        return bool(self.metrics().get("splits"))

    def hyps(self, task, split: str) -> Path:
        """The hypothesis file of `split` (its suffix is the task's)."""
        return task.hyps_path(self.path, split)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    def scored_checkpoint(self) -> Path:
        """The checkpoint whose scores the run reports (metrics.json `training.scored_checkpoint`: averaged.ckpt
        with `train.average_last`), else best.ckpt, else last.ckpt."""
        scored = self.metrics().get("training", {}).get("scored_checkpoint")
        if scored:
            if not (self.checkpoints / scored).is_file():
                raise CheckpointError(f"{self.checkpoints / scored} is missing: the run's scores are of that "
                                      "checkpoint; give another .ckpt of the run explicitly to use it instead")
            return self.checkpoints / scored
        for name in ("best.ckpt", "last.ckpt"):
            if (self.checkpoints / name).is_file():
                return self.checkpoints / name
        raise CheckpointError(f"{self.path} holds no checkpoints/best.ckpt or checkpoints/last.ckpt; "
                              "is it a run directory?")


def resume_candidates(run_dir: Path) -> list[Path]:
    """checkpoints/resume.ckpt and last.ckpt that exist, newest first."""
    candidates = [p for p in (Path(run_dir) / "checkpoints" / n for n in ("resume.ckpt", "last.ckpt")) if p.is_file()]
    return sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True)



def checksum_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".sha256")


def write_checksum(checkpoint: Path, digest: str) -> None:
    atomic_write_text(checksum_path(checkpoint), digest + "\n")


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint cannot be resumed from (its checksum differs, unreadable, truncated, non-finite weights),
    or None if it can. Checkpoints of older releases have no checksum file and are judged on the rest."""
    import torch

    recorded = checksum_path(path)
    if recorded.is_file() and recorded.read_text().strip() != file_sha256(path):
        return "damaged: its sha256 differs from the one recorded when it was written"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or damaged file: torch raises several kinds
        return f"unreadable ({type(err).__name__})"
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        return "holds no weights"
    bad = next((k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()
                and not torch.isfinite(v).all()), None)
    return f"non-finite weights ({bad})" if bad else None


def newest_checkpoint(run_dir: Path, say=print) -> Path:
    """The checkpoint to resume from: the newest of checkpoints/resume.ckpt and last.ckpt that is whole and
    finite; a damaged newer one is passed over with a line saying so."""
    candidates = resume_candidates(run_dir)
    if not candidates:
        raise AttnreproError(f"{run_dir} has no checkpoint to resume from (checkpoints/resume.ckpt or last.ckpt)")
    problems = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            for skipped in problems:
                say(f"passing over {skipped}")
            return path
        problems.append(f"{path} ({problem})")
    raise AttnreproError(f"{run_dir} has no usable checkpoint to resume from: {'; '.join(problems)}; start a new run")


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
