"""`attnrepro explore RUN_DIR [RUN_DIR ...]`: a local web page that looks inside trained runs.

Type a sentence (translation) or pick or upload an image (captioning); every run given answers the same input
side by side: its output, the beam's alternatives with their scores, and what it attended to, drawn by the
page (explore_page/explore.js) as SVG from the JSON of the run's task (`Task.attend`, the same path as the
report's gallery). Runs are addressed by their index in the list given or by their folder's name, never by a
path; test images by their id in the run's test split. Routes:

    GET  /                                   the page (a permalink: ?text=...&image=ID&view=...&layer=&head=)
    GET  /api/runs                           the runs: id, name, reproduction, input ("text" or "image")
    GET  /api/gallery                        the papers' figures these runs can draw (harness/gallery.py)
    POST /api/runs/RUN/attend                JSON {"text": "..."} or {"example": "ID"} -> Task.attend's answer
    POST /api/runs/RUN/upload                an image file as the body -> Task.attend's answer
    GET  /api/runs/RUN/images/ID             a test image of the run's dataset
"""

from __future__ import annotations

import io
import re
import threading
import time
import warnings
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from reproductions.common.errors import AttnreproError

PAGE = Path(__file__).with_name("explore_page")
MAX_TEXT_CHARS = 500  # a sentence, not a document (the task refuses more than 100 tokens too)
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 4096 * 4096  # larger images are refused before they are decoded (decompression bombs)
RATE = (20, 10.0)  # decodes per client per 10 seconds
EXAMPLES = 30  # test inputs offered per run
MAX_RUNS = 12  # models held in memory at once
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


@dataclass
class Run:
    id: str  # its index in the list given
    name: str  # its folder's name, made URL-safe (and unique)
    loaded: object  # reproductions.loading.LoadedModel
    task: object  # reproductions.common.task.Task
    examples: list[dict] = field(default_factory=list)

    def info(self) -> dict:
        from reproductions import registry

        repro = registry.get(self.loaded.reproduction)
        setting = self.task.setting(vars(self.loaded.cfg.data))
        return {"id": self.id, "name": self.name, "reproduction": repro.name, "model": repro.title,
                "role": repro.role, "setting": setting, "input": self.task.explore_input,
                "examples": [{k: e[k] for k in ("id", "label", "text") if k in e} for e in self.examples]}


def expand(targets: list[Path]) -> list[Path]:
    """Run directories and .ckpt files as given; a folder of runs (a reproduce's or a sweep's out) -> its runs."""
    from reproductions.common.rundir import RunDir

    found: list[Path] = []
    for target in map(Path, targets):
        found += [target] if target.is_file() else [run.path for run in RunDir.find([target])]
    if len(found) > MAX_RUNS:
        raise AttnreproError(f"{len(found)} runs given; the explorer loads at most {MAX_RUNS}: name the runs to "
                             "compare")
    return found


def load_runs(run_dirs: list[Path], device: str) -> list[Run]:
    """Each run's scored checkpoint, loaded once, and its test inputs; a bad run is one clear error."""
    from reproductions import tasks
    from reproductions.loading import load_model

    from .evaluate import locate

    runs, names = [], set()
    for i, run_dir in enumerate(expand(run_dirs)):
        _, ckpt = locate(run_dir)
        loaded = load_model(ckpt, device)
        folder = Path(run_dir).resolve()
        folder = folder.parent.parent if folder.is_file() else folder  # RUN_DIR/checkpoints/X.ckpt
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.name).strip(".-") or "run"
        name = name if name not in names else f"{name}-{i}"
        names.add(name)
        task = tasks.get(loaded.task)
        runs.append(Run(str(i), name, loaded, task, task.examples(loaded, EXAMPLES)))
    return runs


class RateLimit:
    """At most `requests` decodes per client address in any `per_s` seconds; the next one is answered 429."""

    def __init__(self, requests: int, per_s: float):
        self.requests, self.per_s = requests, per_s
        self.hits: dict[str, deque] = defaultdict(deque)
        self.lock = threading.Lock()

    def check(self, client: str) -> None:
        now = time.monotonic()
        with self.lock:
            hits = self.hits[client]
            while hits and hits[0] <= now - self.per_s:
                hits.popleft()
            if len(hits) >= self.requests:
                wait = max(1, round(hits[0] + self.per_s - now))
                raise HTTPException(429, f"more than {self.requests} requests in {self.per_s:g} s; retry in {wait} s",
                                    headers={"Retry-After": str(wait)})
            hits.append(now)
            if len(self.hits) > 10000:  # forget idle clients
                for key in [k for k, v in self.hits.items() if not v]:
                    del self.hits[key]


class AttendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    example: str | None = Field(None, max_length=200)


def checked_image(body: bytes) -> io.BytesIO:
    """An uploaded file that PIL reads as an image of at most MAX_PIXELS, else a 400 or 413 saying why."""
    from PIL import Image

    if not body:
        raise HTTPException(400, "upload: the body is empty; send an image file (JPEG, PNG, ...)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(body)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise HTTPException(413, f"upload: {width}x{height} pixels is over the limit of "
                                             f"{MAX_PIXELS // 10**6} megapixels; resize the image")
                image.verify()
    except HTTPException:
        raise
    except Exception as err:  # PIL's errors on a non-image or a broken one are of many types
        raise HTTPException(400, f"upload: not an image that can be read ({type(err).__name__}); send a JPEG or "
                                 "PNG file") from None
    return io.BytesIO(body)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) past `limit` bytes whether or not it announced its length."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise HTTPException(413, f"upload: the body is over the limit of {limit // 2**20} MiB")
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise HTTPException(413, f"upload: the body is over the limit of {limit // 2**20} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


class Explorer:
    """The runs and what decodes with them: one decode at a time (the models share the CPU or the GPU)."""

    def __init__(self, runs: list[Run], device: str, rate: tuple[int, float] = RATE):
        self.runs, self.device = runs, device
        self.by_key = {**{r.id: r for r in runs}, **{r.name: r for r in runs}}
        self.rate = RateLimit(*rate)
        self.lock = threading.Lock()

    def run(self, key: str) -> Run:
        if key not in self.by_key:
            raise HTTPException(404, f"run: no run '{key[:80]}' here; GET /api/runs lists the runs this explorer was "
                                     "started with")
        return self.by_key[key]

    def attend(self, run: Run, item) -> dict:
        with self.lock:
            try:
                answer = run.task.attend(run.loaded, item, self.device)
            except AttnreproError as err:
                raise HTTPException(400, str(err)) from None
        return {"run": run.id, **answer}

    def example(self, run: Run, example_id: str) -> dict:
        found = next((e for e in run.examples if e["id"] == example_id), None)
        if found is None:
            raise HTTPException(404, f"example: no test input '{example_id[:80]}' for run {run.name}; GET /api/runs "
                                     "lists them")
        return found


def create_app(runs: list[Run], device: str = "cpu", rate: tuple[int, float] = RATE) -> FastAPI:
    explorer = Explorer(runs, device, rate)
    app = FastAPI(title="attnrepro explore", docs_url=None, redoc_url=None, openapi_url=None)
    _install_guard(app)
    app.mount("/static", StaticFiles(directory=PAGE / "static"), name="static")

    @app.get("/", response_class=HTMLResponse)
    def page():
        return HTMLResponse((PAGE / "index.html").read_text(encoding="utf-8"))

    @app.get("/api/runs")
    def list_runs():
        return [r.info() for r in explorer.runs]

    @app.get("/api/gallery")
    def gallery():
        from .gallery import explorer_gallery

        return explorer_gallery([(r.id, r.loaded.reproduction, r.info()["setting"]) for r in explorer.runs])

    @app.post("/api/runs/{key}/attend")
    def attend(key: str, body: AttendRequest, request: Request):
        run = explorer.run(key)
        explorer.rate.check(request.client.host if request.client else "")
        if (body.text is None) == (body.example is None):
            raise HTTPException(422, "give one of text (a sentence) or example (a test input's id)")
        if body.text is not None:
            if run.task.explore_input != "text":
                raise HTTPException(400, f"text: run {run.name} takes images; pick an example or upload one")
            return explorer.attend(run, body.text)
        found = explorer.example(run, body.example)
        return explorer.attend(run, found.get("text", found.get("path")))

    @app.post("/api/runs/{key}/upload")
    async def upload(key: str, request: Request):
        run = explorer.run(key)
        explorer.rate.check(request.client.host if request.client else "")
        if run.task.explore_input != "image":
            raise HTTPException(400, f"upload: run {run.name} translates text; send {{\"text\": ...}} to attend")
        image = checked_image(await read_body(request, MAX_UPLOAD_BYTES))
        return await run_in_threadpool(explorer.attend, run, image)

    @app.get("/api/runs/{key}/images/{example_id}")
    def image(key: str, example_id: str):
        run = explorer.run(key)
        found = explorer.example(run, example_id)
        if "path" not in found:
            raise HTTPException(404, f"example: {example_id[:80]} is text, not an image")
        return FileResponse(found["path"])

    return app


def _install_guard(app: FastAPI) -> None:
    """Security headers on every answer, a body limit on every request, errors as {"detail": one line}."""

    @app.middleware("http")
    async def guard(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_UPLOAD_BYTES:
            response = JSONResponse({"detail": f"the body is over the limit of {MAX_UPLOAD_BYTES // 2**20} MiB"}, 413)
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, err: RequestValidationError):
        parts = [f"{'.'.join(str(x) for x in e['loc'][1:]) or 'body'}: {e['msg']}" for e in err.errors()]
        return JSONResponse({"detail": "; ".join(parts)}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        detail = err.detail
        if err.status_code == 404 and detail == "Not Found":
            detail = f"nothing at {request.url.path[:100]}; / is the page and /api/runs lists the runs"
        return JSONResponse({"detail": detail}, err.status_code, headers=getattr(err, "headers", None))


def explore(run_dirs: list[Path], host: str = "127.0.0.1", port: int = 8008, device: str = "auto") -> None:
    import uvicorn

    from reproductions.common.precision import training_device

    device = training_device(device)  # auto: the GPU when there is one
    runs = load_runs(run_dirs, device)
    print(f"attnrepro explore: {len(runs)} runs on {device}; open http://{host}:{port}/ (Ctrl-C stops)")
    uvicorn.run(create_app(runs, device), host=host, port=port, log_level="warning")
