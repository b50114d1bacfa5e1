"""Without a data root every file comes from its public source: here a loopback mirror in the real URL layout
(tests/mirror.py), reached through ATTNREPRO_MIRROR. Downloads are verified, land atomically, and a corrupt,
truncated or unreachable source is one clear DataError that leaves nothing half-written in the cache."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mirror import Mirror, public_layout

from reproductions.captioning.data import captions
from reproductions.common.data.sources import DataError, resolve
from reproductions.common.io import file_sha256
from reproductions.translation.data import files as translation


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("ATTNREPRO_DATA", raising=False)
    monkeypatch.setenv("ATTNREPRO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def few_images(data_root, tmp_path, monkeypatch) -> list[str]:
    """The shipped image list cut to 20 images (enough for the threaded download path)."""
    lines = captions.FLICKR8K_IMAGE_LIST.read_text().splitlines()
    short = tmp_path / "flickr8k_images.tsv"
    short.write_text("\n".join(lines[:22]) + "\n")
    monkeypatch.setattr(captions, "FLICKR8K_IMAGE_LIST", short)
    return list(captions.flickr8k_image_list())


def _leftovers(cache: Path) -> list[Path]:
    """Half-written things anywhere in the cache: HF's `.incomplete` downloads (downloads/), atomic writes'
    `.tmp` files, the token cache's `.tmp-PID` folders and the image download's `.Images.partial` folder."""
    return sorted(p for p in cache.rglob("*")
                  if p.name.endswith((".incomplete", ".tmp", ".partial")) or ".tmp-" in p.name)


def test_the_shipped_image_list_is_the_8091_images_of_the_data_root(data_root):
    listed = captions.flickr8k_image_list()
    assert len(listed) == 8091
    present = {p.name for p in (data_root / captions.FLICKR8K_IMAGES).glob("*.jpg")}
    assert set(listed) == present
    for name in sorted(listed)[:: 997]:  # a sample: the full check is the download below
        assert file_sha256(data_root / captions.FLICKR8K_IMAGES / name) == listed[name]


def test_text_files_come_from_the_mirror_verified(data_root, cache, monkeypatch):
    with Mirror(public_layout(data_root, images=[])) as mirror:
        monkeypatch.setenv("ATTNREPRO_MIRROR", mirror.url)
        files = [translation.multi30k_file("val", "de"), translation.wmt14_file("newstest2014", "de", "en-de"),
                 captions.FLICKR8K_TOKENS, captions.FLICKR8K_SPLITS["dev"]]
        for file in files:
            path = resolve(file)
            assert path == cache / "data" / file.relpath
            assert mirror.served[mirror.path_of(file.url)] == 1
        assert len(translation.load_split("multi30k", "en-de", "val")) == 1014
        assert [mirror.served[mirror.path_of(f.url)] for f in files] == [1, 1, 1, 1]  # the cache answers now
    assert gzip.decompress((cache / "data" / files[1].relpath).read_bytes()).count(b"\n") == 3003
    assert _leftovers(cache) == []


@pytest.mark.parametrize("file, fault, message", [
    (captions.FLICKR8K_SPLITS["dev"], "corrupt", "fails its checksum"),  # served as plain text
    (captions.FLICKR8K_SPLITS["dev"], "truncated", "try again later"),  # the client sees the short body
    (translation.multi30k_file("val", "en"), "corrupt", "broken gzip file"),  # served gzipped
    (translation.multi30k_file("val", "en"), "truncated", "try again later"),
])
def test_a_bad_text_download_is_one_error_and_stores_nothing(data_root, cache, monkeypatch, file, fault, message):
    with Mirror(public_layout(data_root, images=[])) as mirror:
        monkeypatch.setenv("ATTNREPRO_MIRROR", mirror.url)
        mirror.faults[mirror.path_of(file.url)] = fault
        with pytest.raises(DataError, match=f"{file.relpath} from {mirror.url}.*{message}") as err:
            resolve(file)
        assert "\n" not in str(err.value)
        assert not (cache / "data" / file.relpath).exists() and _leftovers(cache) == []
        del mirror.faults[mirror.path_of(file.url)]
        assert resolve(file).is_file()  # the next try fetches it afresh, not the bad copy


@pytest.mark.parametrize("fault, message", [
    ("corrupt", "1 downloaded Flickr8k image.*{name}.*19 verified ones kept: run again"),  # caught by its sha256
    ("truncated", "could not download 20 Flickr8k images from {url}/.*run again"),  # the client sees the short body
])
def test_images_are_downloaded_verified_and_the_folder_appears_whole(data_root, cache, few_images, monkeypatch,
                                                                     fault, message):
    with Mirror(public_layout(data_root, images=few_images)) as mirror:
        monkeypatch.setenv("ATTNREPRO_MIRROR", mirror.url)
        bad = mirror.path_of(captions.FLICKR8K_IMAGES_URL + few_images[3])
        mirror.faults[bad] = fault
        with pytest.raises(DataError, match=message.format(name=few_images[3], url=mirror.url)) as err:
            captions.flickr8k_images()
        assert "\n" not in str(err.value)
        folder = cache / "data" / captions.FLICKR8K_IMAGES
        partial = folder.with_name(".Images.partial")  # the resume folder: verified images only, never a bad one
        assert not folder.exists() and _leftovers(cache) == [partial]
        expected = captions.flickr8k_image_list()
        assert all(file_sha256(p) == expected[p.name] for p in partial.iterdir())
        assert few_images[3] not in {p.name for p in partial.iterdir()}
        del mirror.faults[bad]
        assert captions.flickr8k_images() == folder
        assert mirror.served[bad] == 2 and sum(mirror.served.values()) == 21  # the 19 good ones were kept
    assert sorted(p.name for p in folder.iterdir()) == sorted(few_images)
    assert _leftovers(cache) == []
    assert all(file_sha256(folder / n) == sha for n, sha in captions.flickr8k_image_list().items())


def test_a_flickr8k_split_reads_downloaded_images_without_a_data_root(data_root, cache, few_images, monkeypatch):
    with Mirror(public_layout(data_root, images=few_images)) as mirror:
        monkeypatch.setenv("ATTNREPRO_MIRROR", mirror.url)
        folder = captions.flickr8k_images()
        assert captions._image_dir(None, captions.FLICKR8K_IMAGES) == folder


def test_an_unreachable_mirror_says_what_to_do(cache, few_images, monkeypatch):
    monkeypatch.setenv("ATTNREPRO_MIRROR", "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(DataError, match="could not download 20 Flickr8k images from http://127.0.0.1:9/") as err:
        captions.flickr8k_images()
    assert captions.FLICKR8K_FORM in str(err.value) and "data.images_dir" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_a_tiny_run_trains_on_downloaded_data_through_the_real_command(data_root, cache, tmp_path):
    """What a user without a data folder runs: every file the run reads comes through the download path (the
    mirror stands in for GitHub), then it trains and scores as usual."""
    run_dir = tmp_path / "run"
    with Mirror(public_layout(data_root, images=[])) as mirror:
        env = {**os.environ, "ATTNREPRO_CACHE": str(cache), "ATTNREPRO_MIRROR": mirror.url, "WANDB_MODE": "disabled"}
        env.pop("ATTNREPRO_DATA", None)
        result = subprocess.run([sys.executable, "-m", "harness.cli", "train", "cho2014", "--preset", "tiny",
                                 "--pair", "en-de", "--run-dir", str(run_dir)],
                                capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    test = json.loads((run_dir / "metrics.json").read_text())["splits"]["test_2016_flickr"]
    assert test["sentences"] > 0 and 0 <= test["bleu"] <= 100 and test["chrf"] > 0
    for split, lang in [("train", "en"), ("train", "de"), ("test_2016_flickr", "de")]:
        file = translation.multi30k_file(split, lang)
        assert mirror.served[mirror.path_of(file.url)] == 1
        assert (cache / "data" / file.relpath).is_file()
    assert _leftovers(cache) == []
