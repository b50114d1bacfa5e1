"""A loopback stand-in for raw.githubusercontent.com: serves a data root's files at their public URL paths.

Every data file the project downloads is named by a pinned-commit URL on raw.githubusercontent.com
(`reproductions.common.data.sources.GITHUB_RAW`). This server answers those same paths from a local data
root such as $ATTNREPRO_DATA (each file at its `relpath`), so `ATTNREPRO_MIRROR=http://127.0.0.1:PORT` makes
every download in the product go through it. Faults can be set per path: a corrupt body or one cut short
mid-transfer.

    python tests/mirror.py --root "$ATTNREPRO_DATA" --port 8765     # then: ATTNREPRO_MIRROR=http://127.0.0.1:8765
"""

from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

from reproductions.captioning.data import captions
from reproductions.common.data.sources import GITHUB_RAW
from reproductions.translation.data import files as translation


def public_layout(root: Path, images: list[str] | None = None) -> dict[str, Path]:
    """URL path -> the data root's file, for every checksummed data file and the Flickr8k images
    (`images`: these names only; default all of the shipped list)."""
    files = translation.all_files() + [captions.FLICKR8K_TOKENS, *captions.FLICKR8K_SPLITS.values()]
    layout = {urlparse(f.url).path: root / f.relpath for f in files}
    image_url = urlparse(captions.FLICKR8K_IMAGES_URL).path
    for name in images if images is not None else captions.flickr8k_image_list():
        layout[image_url + name] = root / captions.FLICKR8K_IMAGES / name
    return layout


class Mirror:
    """`with Mirror(layout) as m:` serves `layout` on a free loopback port at `m.url`; `m.faults[path]`
    is "corrupt" or "truncated"; `m.served` counts the GETs of each path."""

    def __init__(self, layout: dict[str, Path], port: int = 0):
        self.layout, self.faults, self.served = layout, {}, {}
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, body: bool):
                path = urlparse(self.path).path
                file = mirror.layout.get(path)
                if file is None or not file.is_file():
                    self.send_error(404)
                    return
                data = file.read_bytes()
                fault = mirror.faults.get(path)
                if fault == "corrupt":
                    data = data[:-64] + bytes(b ^ 0xFF for b in data[-64:])
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not body:
                    return
                mirror.served[path] = mirror.served.get(path, 0) + 1
                self.wfile.write(data[: len(data) // 2] if fault == "truncated" else data)
                if fault == "truncated":
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Mirror:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def path_of(self, url: str) -> str:
        """The served path of a public URL (its path on raw.githubusercontent.com)."""
        assert url.startswith(GITHUB_RAW + "/"), url
        return urlparse(url).path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="a data root such as $ATTNREPRO_DATA")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    mirror = Mirror(public_layout(args.root.resolve()), args.port)
    print(f"serving {len(mirror.layout)} files of {args.root} at {mirror.url}", flush=True)
    mirror.server.serve_forever()


if __name__ == "__main__":
    main()
