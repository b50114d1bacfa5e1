"""What the routes share: the settings, the boards, the database sessions and the scoring worker."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException
from jinja2 import Environment
from sqlalchemy.orm import Session, sessionmaker

from . import db
from .boards import Board
from .scoring import ScoringWorker


@dataclass
class Service:
    settings: object  # app.Settings
    boards: dict[str, Board]
    sessions: sessionmaker[Session]
    scorer: ScoringWorker
    pages: Environment

    def board(self, name: str) -> Board:
        if name not in self.boards:
            raise HTTPException(404, f"no board named {name[:100]!r}; GET /api/boards lists them")
        return self.boards[name]

    def boards_summary(self) -> list[dict]:
        with self.sessions() as session:
            return [{**b.public(), "submissions": db.count_on_board(session, b.name)} for b in self.boards.values()]
