"""What the pages and the JSON API show: one dict per page (served as JSON, rendered as HTML), and the
templates that render them."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from fastapi import HTTPException
from jinja2 import Environment, PackageLoader, select_autoescape

from . import db
from .boards import Board


def board_view(session, board: Board, sort: str | None, order: str | None) -> dict:
    columns = list(board.metric.columns)
    sortable = columns + ["model", "submitted"]
    sort = sort or board.metric.primary
    if sort not in sortable:
        raise HTTPException(400, f"sort: unknown column {sort!r}; one of {', '.join(sortable)}")
    if order not in (None, "asc", "desc"):
        raise HTTPException(400, "order: asc or desc")
    out = []
    for row, rank in db.ranked(session, board.name):
        out.append({"kind": "submission", "rank": rank, "id": row.id, "model": row.model, "user": row.user.name,
                    "reproduction": row.reproduction, "scores": row.scores, "commit": row.commit,
                    "wandb_url": row.wandb_url, "submitted": row.created_at.isoformat(timespec="seconds")})
    for paper in board.paper_rows:
        out.append({"kind": "paper", "rank": None, "id": None, "model": paper["model"], "user": None,
                    "reproduction": paper.get("reproduction"), "scores": paper["scores"], "source": paper["source"],
                    "beside": paper.get("beside", {}),  # numbers of another convention: shown, never sorted on
                    "commit": None, "wandb_url": None, "submitted": None})
    descending = (order or ("asc" if sort in ("model", "submitted") else "desc")) == "desc"

    def value(row):
        return row["scores"].get(sort) if sort in columns else row[sort]

    # Stable sorts: rows that tie keep the ranking's order; rows without the column (paper rows) go last.
    out = (sorted((r for r in out if value(r) is not None), key=value, reverse=descending)
           + [r for r in out if value(r) is None])
    return {**board.public(), "columns": columns, "sort": sort, "order": "desc" if descending else "asc",
            "rows": out, "submissions": sum(r["kind"] == "submission" for r in out)}


def submission_view(session, submission_id: int) -> dict:
    row = session.get(db.Submission, submission_id)
    if row is None:
        raise HTTPException(404, f"no submission #{submission_id}")
    return {
        "id": row.id, "board": row.board, "model": row.model, "user": row.user.name,
        "rank": db.rank_of(session, row), "scores": row.scores,
        "primary": row.primary_score, "signature": row.signature, "metric_version": row.metric_version,
        "score_detail": row.score_detail, "reproduction": row.reproduction, "preset": row.preset,
        "config": row.config, "commit": row.commit, "seed": row.seed, "wandb_url": row.wandb_url,
        "compute": row.compute, "claimed_scores": row.claimed_scores, "notes": row.notes,
        "segments": row.segments, "outputs_sha256": row.outputs_sha256,
        "submitted": row.created_at.isoformat(timespec="seconds"),
    }


def receipt(session, row: db.Submission, replayed: bool) -> dict:
    return {"id": row.id, "board": row.board, "model": row.model, "scores": row.scores, "primary": row.primary_score,
            "rank": db.rank_of(session, row), "signature": row.signature,
            "url": f"/submissions/{row.id}", "replayed": replayed}


def render(pages: Environment, template: str, server: str | None = None, static: bool = False, **context) -> str:
    """A page of the live site, or (static=True) of the exported copy whose detail links point at `server`."""
    board = context.get("board")

    def sort_link(column: str) -> str:
        if static or board is None:
            return "#ranking"
        flip = board["sort"] == column and board["order"] == "desc"
        order = "asc" if flip or (board["sort"] != column and column in ("model", "submitted")) else "desc"
        return f"?{urlencode({'sort': column, 'order': order})}"

    links = {
        "home": "index.html" if static else "/",
        "board_link": (lambda name: f"{quote(name)}.html") if static else (lambda name: f"/boards/{quote(name)}"),
        "submission_link": lambda i: f"{(server or '').rstrip('/')}/submissions/{int(i)}",
        "sort_link": sort_link,
    }
    return pages.get_template(template).render(**links, **context)


def page_templates() -> Environment:
    """The HTML templates (autoescaped: every user-supplied string is shown as text)."""
    env = Environment(loader=PackageLoader("leaderboards", "templates"), autoescape=select_autoescape(default=True))
    env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    env.filters["num"] = lambda value: "–" if value is None else f"{value:.2f}"
    return env
