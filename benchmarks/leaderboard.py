"""The leaderboard benchmark: how fast the server scores and stores submissions on full boards.

Starts `attnrepro leaderboard serve` in a subprocess (SQLite file by default, or --db URL), then
  1. submits --submissions translations of newstest2014 En-De (3003 lines) from --clients concurrent
     clients, each with its own user and token, and times every request (end to end: upload, checks,
     sacreBLEU BLEU + chrF, the transaction);
  2. submits one set of captions for the 1000 Flickr8k test images (pycocoevalcap, Java) and times it;
  3. checks that every submission was stored once, ranked by the score the benchmark computes itself.
Prints a table and writes result.json with the commit, the machine and the settings.

    python benchmarks/leaderboard.py                                   # SQLite, 100 submissions, 10 clients
    python benchmarks/leaderboard.py --db postgresql://postgres@127.0.0.1:55432/postgres

Targets: at least 1.5 translation submissions per second on 2 CPU cores with 2 server workers (scoring
one newstest2014 submission, BLEU + chrF, takes about 1 CPU-second and holds the GIL, so each worker
process scores one at a time), a captioning submission in under 60 seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import track

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from harness.benchmark import provenance  # noqa: E402
from harness.tables import Col, print_table  # noqa: E402
from reproductions.common.data.sources import DATA_ENV, data_root  # noqa: E402
from reproductions.common.io import atomic_write_json  # noqa: E402
from reproductions.translation.metrics import corpus_scores  # noqa: E402

TARGET = {"min_translation_submissions_per_s": 1.5, "max_caption_submission_s": 60.0}
# the references this benchmark reads itself; the server reads its boards' references from the same root
NEEDED = ("wmt14/2014/en-de/newstest2014.de.gz", "flickr8k/Flickr8k_text/Flickr_8k.testImages.txt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="database URL (default: a new SQLite file in a temporary folder)")
    parser.add_argument("--submissions", type=int, default=100)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="server processes (default: 2, one per core here)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "leaderboard")
    parser.add_argument("--references", type=Path, default=data_root(),
                        help=f"the boards' reference root, in the layout of the data folder (default: ${DATA_ENV})")
    args = parser.parse_args()
    data = args.references
    if data is None:
        raise SystemExit(f"leaderboard benchmark: no references: set {DATA_ENV} (or pass --references) to the data "
                         f"folder that holds {' and '.join(NEEDED)}")
    missing = [path for path in NEEDED if not (data / path).is_file()]
    if missing:
        raise SystemExit(f"leaderboard benchmark: {data} lacks {', '.join(missing)}: set {DATA_ENV} (or pass "
                         "--references) to the data folder that holds them")
    from lbsupport import Server, add_user, database, post

    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="attnrepro-lb-bench-"))
    with database("sqlite", tmp) if args.db is None else nullcontext(args.db) as url:
        server = Server(url, REPO / "leaderboards" / "boards", data, tmp / "server.log", workers=args.workers,
                        max_upload_mb=8).start()
        try:
            result = run(server, url, data, args, add_user, post)
        finally:
            server.stop()
    settings = vars(args) | {"results": str(args.results), "references": str(args.references)}
    result = {"benchmark": "leaderboard", "database": url.split("://")[0], "settings": settings, "target": TARGET,
              **result, **provenance(load_before)}
    atomic_write_json(args.results / "result.json", result)
    print(f"wrote {args.results / 'result.json'}")


def run(server, url: str, data: Path, args, add_user, post) -> dict:
    with gzip.open(data / "wmt14/2014/en-de/newstest2014.de.gz", "rt", encoding="utf-8") as f:
        refs = f.read().rstrip("\n").split("\n")
    tokens = [add_user(url, f"bench{c:02d}", daily_limit=10**6) for c in range(args.clients)]
    jobs = [(tokens[i % args.clients], i) for i in range(args.submissions)]

    def outputs(i: int) -> list[str]:  # a distinct quality per submission
        return [("Das ist ein Test ." if j % args.submissions <= i else ref) for j, ref in enumerate(refs)]

    def send(job):
        token, i = job
        body = "\n".join(outputs(i)).encode()
        started = time.perf_counter()
        with httpx.Client() as client:
            response = post(server.url, "newstest2014-en-de", token, body, {"model": f"sub{i:04d}"}, key=f"k{i}",
                            client=client)
        return i, response.status_code, response.json(), time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.clients) as pool:
        answers = list(track(pool.map(send, jobs), total=len(jobs), description="translation submissions"))
    wall = time.perf_counter() - started
    failed = [(i, status, body) for i, status, body, _ in answers if status != 201]
    if failed:
        raise SystemExit(f"{len(failed)} submissions failed, e.g. {failed[0]}")
    latencies = sorted(t for *_, t in answers)
    # The server's scores against our own, and the stored ranking.
    sample = [0, len(jobs) // 2, len(jobs) - 1]
    for i in sample:
        assert answers[i][2]["scores"]["bleu"] == corpus_scores(outputs(i), refs)["bleu"], i
    board = httpx.get(f"{server.url}/api/boards/newstest2014-en-de", timeout=60).json()
    stored = [r for r in board["rows"] if r["kind"] == "submission"]
    ranked_ok = len(stored) == len(jobs) and all(a["scores"]["bleu"] >= b["scores"]["bleu"]
                                                  for a, b in zip(stored, stored[1:]))

    images = (data / "flickr8k/Flickr8k_text/Flickr_8k.testImages.txt").read_text().split()
    captions = [{"image": image, "caption": "a dog runs through the grass"} for image in images]
    t0 = time.perf_counter()
    caption_answer = post(server.url, "flickr8k-test", tokens[0], json.dumps(captions).encode(), {"model": "constant"})
    caption_s = time.perf_counter() - t0
    if caption_answer.status_code != 201:
        raise SystemExit(f"caption submission failed: {caption_answer.text}")

    per_s = len(jobs) / wall
    rows = [
        ["translation submissions (newstest2014, 3003 lines)", str(len(jobs))],
        ["throughput", f"{per_s:.2f} submissions/s (target >= {TARGET['min_translation_submissions_per_s']})"],
        ["latency p50 / p95 / max", f"{statistics.median(latencies):.2f} / "
         f"{latencies[int(0.95 * (len(latencies) - 1))]:.2f} / {latencies[-1]:.2f} s"],
        ["stored once, ranked by server score", str(ranked_ok)],
        ["captioning submission (1000 images, pycocoevalcap)",
         f"{caption_s:.1f} s (target <= {TARGET['max_caption_submission_s']:.0f}); "
         f"CIDEr-D {caption_answer.json()['scores']['cider_d']:.2f}"],
    ]
    title = f"leaderboard server ({url.split('://')[0]}), {args.workers} workers, {args.clients} clients"
    print_table(Console(), title, [Col("measure", "text"), Col("value", "text")], rows)
    return {
        "translation": {"submissions": len(jobs), "wall_s": round(wall, 2), "per_s": round(per_s, 3),
                        "latency_s": {"p50": round(statistics.median(latencies), 3),
                                      "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
                                      "max": round(latencies[-1], 3)},
                        "stored_once_and_ranked": ranked_ok},
        "captioning": {"images": len(images), "seconds": round(caption_s, 2),
                       "scores": caption_answer.json()["scores"]},
        "targets_met": {"throughput": per_s >= TARGET["min_translation_submissions_per_s"],
                        "caption_latency": caption_s <= TARGET["max_caption_submission_s"]},
        "finished": dt.datetime.now().isoformat(timespec="seconds"),
    }


if __name__ == "__main__":
    main()
