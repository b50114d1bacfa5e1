"""`attnrepro explore` as a user meets it: tiny runs of each kind behind the page, the JSON the page draws from
equal to what the decoders compute, hostile inputs answered with one clear 4xx while the server keeps serving,
and the page itself in headless Chromium (Playwright): type a sentence, switch layer and head, hover a word,
upload an image. Screenshots of each view go to $ATTNREPRO_TEST_ARTEFACTS/explore (else pytest's tmp dir)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from harness.explore import MAX_TEXT_CHARS, create_app, load_runs
from reproductions.common.data.vocab import EOS_ID
from reproductions.translation.decoding import translate_texts

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("ATTNREPRO_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SENTENCE = "A man in an orange hat is looking at a dog."
TRANSLATION_RUNS = ("vaswani2017", "bahdanau2014", "cho2014")
CAPTION_RUNS = ("xu2015-hard", "vinyals2015")


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory, data_root):
    """Tiny runs (seconds each, in this process, not scored: the explorer needs only their weights)."""
    from harness.train import train

    root = tmp_path_factory.mktemp("explore-runs")
    names = TRANSLATION_RUNS + (CAPTION_RUNS if (data_root / "flickr8k" / "Images").is_dir() else ())
    return {name: train(name, "tiny", run_dir=root / name, wandb="disabled", devices=1, evaluate_after=False)
            for name in names}


@pytest.fixture(scope="module")
def runs(run_dirs):
    return load_runs(list(run_dirs.values()), "cpu")


@pytest.fixture(scope="module")
def client(runs):
    return TestClient(create_app(runs, rate=(10_000, 10.0)))


def _run(runs, reproduction):
    return next(r for r in runs if r.loaded.reproduction == reproduction)


def _attend(client, run, **body) -> dict:
    response = client.post(f"/api/runs/{run.id}/attend", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_transformers_every_layer_and_head_equals_what_the_decoder_computed(client, runs):
    run = _run(runs, "vaswani2017")
    model, cfg = run.loaded.model, run.loaded.cfg
    answer = _attend(client, run, text=SENTENCE)
    cross = torch.tensor(answer["views"]["cross"]["weights"])  # (L, h, T, S)
    assert cross.shape[:2] == (cfg.model.layers, cfg.model.heads)
    assert {"encoder", "decoder", "cross"} == set(answer["views"]) and answer["attends"]
    for layer in range(cfg.model.layers):
        for head in range(cfg.model.heads):
            model.attention_view = (layer, head)  # what beam search keeps: this head, cached decoding
            try:
                texts, hyps = translate_texts(model, run.loaded.src_vocab, run.loaded.tgt_vocab, [SENTENCE],
                                              cfg.decode, keep_attention=True, progress=False)
            finally:
                model.attention_view = (-1, None)
            assert texts[0] == answer["output"] == answer["alternatives"][0]["output"]
            assert torch.allclose(cross[layer, head], hyps[0].attention, atol=1e-5)
    encoder = torch.tensor(answer["views"]["encoder"]["weights"])
    src = torch.tensor([run.loaded.src_vocab.encode(SENTENCE) + [EOS_ID]])
    assert torch.allclose(encoder, model.encoder_self_attention(src).detach(), atol=1e-5)
    decoder = torch.tensor(answer["views"]["decoder"]["weights"])
    assert torch.allclose(decoder.sum(-1), torch.ones(decoder.shape[:-1]), atol=1e-4)
    assert decoder.triu(1).abs().max() == 0  # no look ahead (§3.2.3)


def test_rnnsearch_alignment_equals_the_decoders_and_the_baseline_has_none(client, runs):
    run = _run(runs, "bahdanau2014")
    answer = _attend(client, run, text=SENTENCE)
    _, hyps = translate_texts(run.loaded.model, run.loaded.src_vocab, run.loaded.tgt_vocab, [SENTENCE],
                              run.loaded.cfg.decode, keep_attention=True, progress=False)
    cross = answer["views"]["cross"]
    assert torch.allclose(torch.tensor(cross["weights"])[0, 0], hyps[0].attention, atol=1e-5)
    assert len(cross["rows"]) == len(hyps[0].tokens) + 1 and cross["cols"][-1] == "</s>"
    scores = [a["score"] for a in answer["alternatives"]]
    assert scores == sorted(scores, reverse=True) and len(scores) <= run.loaded.cfg.decode.beam
    baseline = _attend(client, _run(runs, "cho2014"), text=SENTENCE)
    assert baseline["attends"] is False and baseline["views"] == {} and baseline["output"]


def test_hostile_inputs_get_clear_4xx_and_the_server_keeps_serving(client, runs):
    run = _run(runs, "vaswani2017")
    cases = [
        (client.post(f"/api/runs/{run.id}/attend", json={"text": "x" * (MAX_TEXT_CHARS + 1)}), 422, "text"),
        (client.post(f"/api/runs/{run.id}/attend", json={"text": "a " * 150}), 400, "tokens is over the limit"),
        (client.post(f"/api/runs/{run.id}/attend", json={"text": "a", "path": "/etc/passwd"}), 422, "path"),
        (client.post("/api/runs/..%2F..%2Fetc%2Fpasswd/attend", json={"text": "a"}), 404, "nothing at"),
        (client.post("/api/runs/..%5C..%5Cetc/attend", json={"text": "a"}), 404, "no run"),
        (client.post("/api/runs/99/attend", json={"text": "a"}), 404, "GET /api/runs"),
        (client.get(f"/api/runs/{run.id}/images/..%2F..%2Fconfig.yaml"), 404, "nothing at"),
        (client.get(f"/api/runs/{run.id}/images/..config.yaml"), 404, "no test input"),
        (client.get("/static/..%2F..%2Fexplore.py"), 404, "nothing at"),
        (client.post(f"/api/runs/{run.id}/attend", content=b"x" * (9 * 2**20)), 413, "limit"),
    ]
    for response, status, fragment in cases:
        assert response.status_code == status, (response.status_code, response.text)
        assert fragment in response.json()["detail"], response.json()
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert client.post(f"/api/runs/{run.id}/attend", json={"text": SENTENCE}).status_code == 200


def test_hostile_uploads_and_the_rate_limit(runs):
    captioner = next((r for r in runs if r.task.explore_input == "image"), None)
    if captioner is None:
        pytest.skip("Flickr8k images not under the data root")
    from PIL import Image

    client = TestClient(create_app(runs, rate=(6, 60.0)))
    huge = io.BytesIO()
    Image.new("L", (5000, 5000)).save(huge, "PNG")  # 25 megapixels in ~25 KB: refused before it is decoded
    cases = [
        (client.post(f"/api/runs/{captioner.id}/upload", content=b"%PDF-1.4 not an image"), 400, "not an image"),
        (client.post(f"/api/runs/{captioner.id}/upload", content=huge.getvalue()), 413, "megapixels"),
        (client.post(f"/api/runs/{captioner.id}/upload", content=b""), 400, "empty"),
        (client.post(f"/api/runs/{captioner.id}/attend", json={"text": "a dog"}), 400, "takes images"),
    ]
    for response, status, fragment in cases:
        assert response.status_code == status, (response.status_code, response.text)
        assert fragment in response.json()["detail"]
    example = captioner.examples[0]["id"]
    assert client.post(f"/api/runs/{captioner.id}/attend", json={"example": example}).status_code == 200
    statuses = [client.post(f"/api/runs/{captioner.id}/attend", json={"example": example}).status_code
                for _ in range(3)]
    assert statuses[-1] == 429 and 200 in statuses
    assert client.get("/api/runs").status_code == 200  # listing is not rate limited


def test_hard_attention_gives_a_map_and_a_sampled_location_per_word(client, runs):
    captioner = next((r for r in runs if r.loaded.reproduction == "xu2015-hard"), None)
    if captioner is None:
        pytest.skip("Flickr8k images not under the data root")
    answer = _attend(client, captioner, example=captioner.examples[0]["id"])
    view = answer["views"]["image"]
    weights = torch.tensor(view["weights"])
    assert weights.shape == (len(view["rows"]), view["grid"] ** 2)
    assert torch.allclose(weights.sum(-1), torch.ones(len(view["rows"])), atol=1e-4)
    assert len(view["locations"]) == len(view["rows"])
    assert all(weights[t, s] > 0 for t, s in enumerate(view["locations"]))
    baseline = _attend(client, _run(runs, "vinyals2015"), example=captioner.examples[0]["id"])
    assert not baseline["attends"]


# -- the page in Chromium ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(runs):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(runs, rate=(10_000, 10.0)), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not uv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> Path:
    root = os.environ.get("ATTNREPRO_TEST_ARTEFACTS")
    folder = Path(root) / "explore" if root else tmp_path_factory.mktemp("explore-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium here: install Debian's chromium or set ATTNREPRO_CHROMIUM")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def _cells(page, selector: str) -> dict[tuple[int, int], float]:
    cells = page.eval_on_selector_all(f"{selector} rect.cell",
                                      "els => els.map(e => [+e.dataset.row, +e.dataset.col, +e.dataset.weight])")
    return {(r, c): w for r, c, w in cells}


def _assert_matrix(cells: dict, weights: torch.Tensor) -> None:
    assert len(cells) == weights.numel()
    got = torch.tensor([[cells[(r, c)] for c in range(weights.shape[1])] for r in range(weights.shape[0])])
    assert torch.allclose(got, weights.float(), atol=1e-5)


def test_type_a_sentence_switch_layer_and_head_hover_a_word(browser, server, runs, client, artefacts):
    transformer = _run(runs, "vaswani2017")
    answer = _attend(client, transformer, text=SENTENCE)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server)
    page.fill("#text", SENTENCE)
    page.click("#translate")
    card = f"#run-{transformer.id}"
    page.wait_for_selector(f"{card} svg.matrix")
    assert page.inner_text(f"{card} .output") == answer["output"]
    cross = torch.tensor(answer["views"]["cross"]["weights"])
    _assert_matrix(_cells(page, f"{card} svg.matrix"), cross[-1].mean(0))  # default: last layer, mean over heads
    page.screenshot(path=str(artefacts / "translate-cross-mean.png"), full_page=True)

    page.select_option("#view", "encoder")
    page.select_option("#layer", "0")
    page.select_option("#head", "1")
    page.wait_for_selector(f"{card} svg.matrix[data-view='encoder'][data-head='1']")
    _assert_matrix(_cells(page, f"{card} svg.matrix"), torch.tensor(answer["views"]["encoder"]["weights"])[0, 1])
    assert "view=encoder" in page.url and "head=1" in page.url and "text=" in page.url

    page.hover(f"{card} .row-label[data-row='2']")
    assert "active" in page.get_attribute(f"{card} .row-label[data-row='2']", "class")
    assert page.locator(f"{card} .col-label.attended").count() >= 1
    assert page.inner_text(f"{card} .hover-info").startswith(answer["views"]["encoder"]["rows"][2])
    page.screenshot(path=str(artefacts / "translate-encoder-layer0-head1-hover.png"), full_page=True)
    with page.expect_download() as download:
        page.click(f"{card} .download-svg")
    assert download.value.path().read_text().startswith("<svg")
    assert download.value.suggested_filename.endswith("-encoder-L0-1.svg")

    page.select_option("#head", "all")
    page.wait_for_selector(f"{card} .overview figure")
    assert page.locator(f"{card} .overview figure").count() == cross.shape[0] * cross.shape[1]
    page.screenshot(path=str(artefacts / "translate-all-heads.png"), full_page=True)
    page.select_option("#view", "decoder")
    page.select_option("#head", "0")
    page.wait_for_selector(f"{card} svg.matrix[data-view='decoder'][data-head='0']")
    _assert_matrix(_cells(page, f"{card} svg.matrix"), torch.tensor(answer["views"]["decoder"]["weights"])[-1, 0])
    page.screenshot(path=str(artefacts / "translate-decoder-self-head0.png"), full_page=True)
    assert "no attention to show" in page.inner_text(f"#run-{_run(runs, 'cho2014').id}")

    permalink = page.get_attribute("#permalink", "href")
    page.goto(server + permalink)  # the input and the view come back from the address
    page.wait_for_selector(f"{card} svg.matrix[data-view='decoder'][data-head='0']")
    assert page.input_value("#text") == SENTENCE
    page.wait_for_selector("body[data-gallery='done']", timeout=60_000)  # the CSP allows no eval
    page.screenshot(path=str(artefacts / "start-page-gallery.png"), full_page=True)
    assert not errors, errors
    page.close()


def test_upload_an_image_and_see_a_map_per_word(browser, server, runs, client, data_root, artefacts):
    captioner = next((r for r in runs if r.loaded.reproduction == "xu2015-hard"), None)
    if captioner is None:
        pytest.skip("Flickr8k images not under the data root")
    image = data_root / "flickr8k" / "Images" / captioner.examples[1]["id"]
    answer = client.post(f"/api/runs/{captioner.id}/upload", content=image.read_bytes()).json()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server)
    page.set_input_files("#upload", str(image))
    card = f"#run-{captioner.id}"
    page.wait_for_selector(f"{card} svg.image-maps")
    view = answer["views"]["image"]
    assert page.inner_text(f"{card} .output") == answer["output"]
    assert page.locator(f"{card} svg .panel").count() == len(view["rows"])
    cells = _cells(page, f"{card} svg.image-maps")
    assert torch.allclose(torch.tensor([[cells[(t, i)] for i in range(view["grid"] ** 2)]
                                        for t in range(len(view["rows"]))]), torch.tensor(view["weights"]), atol=1e-6)
    assert page.locator(f"{card} svg rect.sampled").count() == len(view["rows"])  # hard: the sampled locations
    page.wait_for_selector(f"#run-{_run(runs, 'vinyals2015').id} .no-attention")
    page.screenshot(path=str(artefacts / "caption-upload-hard.png"), full_page=True)
    page.close()


def test_the_gallery_draws_what_the_runs_allow_and_names_the_run_it_needs(runs, tmp_path):
    from harness.gallery import write_gallery

    given = [(r.loaded.path.parent.parent, r.loaded.reproduction, r.info()["setting"]) for r in runs]
    paths, lines = write_gallery(given, tmp_path)
    names = [p.name for p in paths]
    assert "gallery-vaswani2017-fig3-5-1.png" in names and all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    assert not any("bahdanau2014" in n for n in names)  # the tiny runs are en-de: Fig. 3 needs en-fr
    assert any("Fig. 3" in line and "needs a bahdanau2014 run on en-fr" in line for line in lines)
    assert any("the baseline cho2014 wrote" in line and "no attention to show" in line for line in lines)
    assert any("needs a xu2015 run" in line for line in lines)
    from harness.gallery import FIGURES

    assert [f.wanted for f in FIGURES][:2] == ["a bahdanau2014 run on en-fr", "a vaswani2017 run on en-* (any target)"]
    if any(r.loaded.reproduction == "xu2015-hard" for r in runs):
        assert "gallery-xu2015-fig2-3-hard-1.png" in names


def test_the_command_serves_a_folder_of_runs_on_loopback(run_dirs, tmp_path):
    import subprocess
    import sys

    import httpx
    from test_cli import assert_clean_error, attnrepro

    assert_clean_error(attnrepro("explore", str(tmp_path / "nowhere")), "nowhere", "does not exist")
    assert_clean_error(attnrepro("explore", str(tmp_path)), "holds no runs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = next(iter(run_dirs.values())).parent
    server = subprocess.Popen([sys.executable, "-m", "harness.cli", "explore", str(folder), "--port", str(port),
                               "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, listed = time.time() + 60, None
        while listed is None and time.time() < deadline and server.poll() is None:
            try:
                listed = httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=2).json()
            except httpx.TransportError:
                time.sleep(0.3)
        assert listed is not None, server.stdout.read() if server.poll() is not None else "no answer in 60 s"
        assert sorted(r["reproduction"] for r in listed) == sorted(run_dirs)
    finally:
        server.terminate()
        server.wait(10)
