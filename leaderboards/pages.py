"""The HTML pages: the same views as the JSON API, rendered (no JavaScript; every user string escaped)."""


from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from .api import SubmissionId
from .service import Service
from .views import board_view, render, submission_view


def router(service: Service) -> APIRouter:
    pages = APIRouter(default_response_class=HTMLResponse)

    @pages.get("/")
    def index():
        return render(service.pages, "index.html", boards=service.boards_summary())

    @pages.get("/boards/{name}")
    def board_page(name: str, sort: str | None = None, order: str | None = None):
        board = service.board(name)
        with service.sessions() as session:
            return render(service.pages, "board.html", board=board_view(session, board, sort, order))

    @pages.get("/submissions/{submission_id}")
    def submission_page(submission_id: SubmissionId):
        with service.sessions() as session:
            return render(service.pages, "submission.html", s=submission_view(session, submission_id))

    return pages
