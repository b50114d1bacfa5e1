"""The leaderboard's client side: `attnrepro submit RUN_DIR --board NAME` and `attnrepro leaderboard export`.

The server comes from --server, else $ATTNREPRO_LEADERBOARD_URL; the token from $ATTNREPRO_TOKEN; else
`~/.config/attnrepro/leaderboard.yaml` ({server: URL, token: TOKEN}). A submission carries the run's outputs
for the board's split and its provenance; the scores the run computed go along as claims the server ignores.
Every submission of the same outputs of a run has the same Idempotency-Key, so a retry (ours, on a dropped
connection, or the user's) is stored once.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import re
import time
from pathlib import Path
from urllib.parse import quote

import yaml

from reproductions.common.errors import AttnreproError
from reproductions.common.io import atomic_write_text

CONFIG_FILE = Path.home() / ".config" / "attnrepro" / "leaderboard.yaml"
DEFAULT_SERVER = "http://127.0.0.1:8000"


def client_settings(server: str | None = None, token: str | None = None) -> tuple[str, str | None]:
    saved = {}
    path = Path(os.environ.get("ATTNREPRO_LEADERBOARD_CONFIG", CONFIG_FILE))
    if path.is_file():
        try:
            saved = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise AttnreproError(f"{path} is not valid YAML ({err}); it holds 'server: URL' and 'token: TOKEN'"
                                 ) from None
    server = server or os.environ.get("ATTNREPRO_LEADERBOARD_URL") or saved.get("server") or DEFAULT_SERVER
    token = token or os.environ.get("ATTNREPRO_TOKEN") or saved.get("token")
    return server.rstrip("/"), token


def _request(method: str, url: str, retries: int = 3, **kwargs):
    """One HTTP request, retried on connection errors and 5xx answers (with the same body and key)."""
    import httpx

    for attempt in range(retries + 1):
        try:
            response = httpx.request(method, url, timeout=300, **kwargs)
        except httpx.TransportError as err:
            if attempt == retries:
                raise AttnreproError(f"could not reach {url} ({err}); is the server running?") from None
        else:
            if response.status_code < 500 or attempt == retries:
                return response
        time.sleep(2 ** attempt)
    raise AssertionError("unreachable")


def _finite(value):
    """`value` with NaN and infinities as null: the server refuses them (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _detail(response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:500]


def get_board(server: str, name: str) -> dict:
    response = _request("GET", f"{server}/api/boards/{name}")
    if response.status_code != 200:
        raise AttnreproError(f"{server}: {_detail(response)}")
    return response.json()


def run_submission(run_dir: Path, board: dict) -> tuple[bytes, dict]:
    """The outputs file and metadata of a run directory for `board`; errors say what to run first."""
    from reproductions import tasks
    from reproductions.common import rundir

    run_dir = Path(run_dir)
    run = rundir.RunDir(run_dir)  # provenance.json and config.yaml read with clear errors
    config, provenance = run.config, run.provenance
    metrics = run.metrics()
    data = config.get("data", {})
    if data.get("dataset") != board["dataset"] or (board.get("pair") and data.get("pair") != board["pair"]):
        raise AttnreproError(f"{run_dir} was trained on {data.get('dataset')} {data.get('pair') or ''}; board "
                             f"{board['name']} scores {board['dataset']} {board.get('pair') or ''}")
    split = board["split"]
    outputs = tasks.get(board["task"]).hyps_path(run_dir, split)
    if not outputs.is_file():
        raise AttnreproError(f"{outputs} is missing: decode the board's split first with "
                             f"`attnrepro evaluate {run_dir} --split {split}`")
    limit = data.get("eval_limit")
    if limit and board.get("segments") and limit < board["segments"]:
        raise AttnreproError(f"{run_dir} decoded only the first {limit} segments (data.eval_limit={limit}); the board "
                             f"needs all {board['segments']}: train with --set data.eval_limit=null")
    scored = metrics.get("splits", {}).get(split, {})
    training = metrics.get("training", {})
    compute = {k: training[k] for k in ("wall_time_s", "train_time_s", "steps", "target_tokens_per_s", "training_flops",
                                        "parameters", "devices", "accelerator", "device_hours") if k in training}
    compute.update({k: v for k, v in provenance.get("machine", {}).items() if k in ("processor", "cpus")})
    meta = {
        "model": f"{provenance['reproduction']} ({provenance['preset']}, seed {provenance['seed']})",
        "reproduction": provenance["reproduction"],
        "preset": provenance["preset"],
        "config": config,
        # A run trained outside a git checkout records "unknown": it is submitted without a commit (the board shows
        # none) rather than with a value the server would refuse as not a commit hash.
        "commit": commit if (commit := provenance.get("git", {}).get("commit")) not in (None, "", "unknown") else None,
        "dirty": provenance.get("git", {}).get("dirty"),
        "seed": provenance["seed"],
        "wandb_url": (metrics.get("wandb") or {}).get("url"),
        "compute": compute,
        "claimed_scores": {c: scored[c] for c in board["metric"]["columns"] if isinstance(scored.get(c), (int, float))},
    }
    return outputs.read_bytes(), meta


def submit(run_dir: Path | str, board_name: str, server: str | None = None, token: str | None = None,
           model: str | None = None, wandb_url: str | None = None, notes: str | None = None) -> dict:
    server, token = client_settings(server, token)
    if not token:
        raise AttnreproError("no API token: set ATTNREPRO_TOKEN or put 'token: ...' in "
                             f"{CONFIG_FILE} (the server's admin creates one)")
    board = get_board(server, board_name)
    if board["status"] != "open":
        raise AttnreproError(f"board {board_name} is closed: {board['reason']}")
    data, meta = run_submission(Path(run_dir), board)
    meta = {k: v for k, v in {**meta, "model": model or meta["model"], "wandb_url": wandb_url or meta["wandb_url"],
                              "notes": notes}.items() if v not in (None, {}, "")}
    identity = [board_name, hashlib.sha256(data).hexdigest(), str(Path(run_dir).resolve()), meta.get("seed")]
    key = "run-" + hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:40]
    response = _request("POST", f"{server}/api/boards/{board_name}/submissions",
                        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
                        data={"metadata": json.dumps(_finite(meta), allow_nan=False)},
                        files={"outputs": (Path(run_dir).name, data)})
    if response.status_code not in (200, 201):
        raise AttnreproError(f"{server} refused the submission ({response.status_code}): {_detail(response)}")
    return {**response.json(), "url": server + response.json()["url"]}


# -- export --------------------------------------------------------------------------------------------------


# A board's name becomes a file name: a plain one, so that no server can make the export write outside --out.
FILE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _board_stem(name, server: str, out: Path) -> str:
    """`name` if it is a plain file name; else AttnreproError naming the file refused and why."""
    if isinstance(name, str) and FILE_STEM.fullmatch(name) and ".." not in name:
        return name
    text = str(name)
    why = ("an absolute path" if text.startswith(("/", "\\")) or Path(text).is_absolute() or text[1:2] == ":"
           else "a path that leaves the folder ('..')" if ".." in text
           else "a path, not a plain file name" if "/" in text or "\\" in text
           else "not a plain file name (letters, digits, '_', '.', '-')")
    raise AttnreproError(f"{server} named a board {text[:100]!r}: refused to write {text[:100]!r}.md and .html under "
                         f"{out}, since it is {why}; nothing was written")


def export(out: Path | str, server: str | None = None) -> list[Path]:
    """Write every board of `server` as Markdown and HTML into `out` (index.html/README.md and one pair per board).
    Only inside `out`: every file name is checked before anything is written, and each file is written whole
    (a temporary file renamed into place)."""
    from .app import page_templates, render

    server, _ = client_settings(server)
    response = _request("GET", f"{server}/api/boards")
    if response.status_code != 200:
        raise AttnreproError(f"{server}: {_detail(response)}")
    out = Path(out)
    pages, files = page_templates(), {}
    boards = response.json()
    index = ["# attnrepro leaderboards", "", f"Exported from {server}. Scores computed by the server; paper rows are "
             "reported by the papers, not verified.", "", "| board | task | split | primary | submissions | status |",
             "|---|---|---|---|---:|---|"]
    for summary in boards:
        stem = _board_stem(summary.get("name"), server, out)
        board = get_board(server, quote(stem, safe=""))
        if board.get("name") != stem:
            _board_stem(board.get("name"), server, out)  # a hostile name is refused as such ...
            raise AttnreproError(f"{server} answered for board {stem!r} with board {board.get('name')!r}; nothing "
                                 "was written")  # ... and a mere mismatch too
        files[f"{stem}.html"] = render(pages, "board.html", server=server, static=True, board=board)
        files[f"{stem}.md"] = board_markdown(board, server)
        status = "open" if board["status"] == "open" else f"closed: {_md(board['reason'])}"
        index.append(f"| [{_md(board['title'])}]({stem}.md) | {board['task']} | {_md(board['split'])} | "
                     f"{board['metric']['primary']} | {board['submissions']} | {status} |")
    files["index.html"] = render(pages, "index.html", server=server, static=True, boards=boards)
    files["README.md"] = "\n".join(index) + "\n"
    inside = out.resolve()
    for name in files:  # the last word: every path stays directly inside --out
        if (inside / name).resolve().parent != inside:
            raise AttnreproError(f"refused to write {name!r}: it would land outside {out}; nothing was written")
    written = []
    for name, text in files.items():
        atomic_write_text(out / name, text)
        written.append(out / name)
    return written


def board_markdown(board: dict, server: str) -> str:
    columns = board["columns"]
    lines = [f"# {_md(board['title'])}", "",
             f"{board['dataset']} {board['split']}{', ' + board['pair'] if board.get('pair') else ''}; ranked by "
             f"**{board['metric']['primary']}**; {board['metric']['name']} {board['metric']['version']}, signature "
             f"`{board['metric']['signature']}`.", "",
             "| rank | model | " + " | ".join(columns) + " | by | submitted |",
             "|---|---|" + "---:|" * len(columns) + "---|---|"]
    for row in board["rows"]:
        scores = " | ".join("–" if row["scores"].get(c) is None else f"{row['scores'][c]:.2f}" for c in columns)
        if row["kind"] == "paper":  # a number of the paper's own convention sits beside the column, unranked
            beside = row.get("beside") or {}
            scores = " | ".join(f"{row['scores'][c]:.2f}" if row["scores"].get(c) is not None
                                else f"_{_md(beside[c])}_" if c in beside else "–" for c in columns)
            source = _md(row["source"])
            lines.append(f"| paper | {_md(row['model'])} (reported, not verified; {source}) | {scores} | | |")
        else:
            link = f"{server}/submissions/{row['id']}"
            lines.append(f"| {row['rank']} | [{_md(row['model'])}]({link}) | {scores} | {_md(row['user'])} | "
                         f"{row['submitted']} |")
    return "\n".join(lines) + "\n"


def _md(text: str | None) -> str:
    """User text inside a Markdown table: HTML-escaped (Markdown renders raw HTML) and without cell breaks."""
    text = html.escape(str(text or ""))
    for char in "\\|[]`*_":
        text = text.replace(char, "\\" + char)
    return " ".join(text.split())
