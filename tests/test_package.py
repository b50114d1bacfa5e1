"""The package as a user installs it: a wheel built from the sdist, installed into a fresh virtual environment.

The wheel must carry every file the code reads at run time (presets, paper numbers, boards, templates,
migrations, data lists), and the installed `attnrepro` must work from outside the checkout. The fresh
environment reuses this environment's installed dependencies through a `.pth` line naming its site-packages;
Python does not read the `.pth` files inside a folder named that way, so the editable install of the checkout
stays out of sight.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from reproductions import registry

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "leaderboards", "reproductions")


def _run(args: list, env: dict | None = None, cwd: Path | None = None, timeout: float = 300):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def data_files() -> list[str]:
    """The files, other than Python modules, that the code opens from its own folders."""
    files, base = set(), registry.ROOT.parent  # the checkout, or site-packages where tox installed the package
    for repro in registry.REPRODUCTIONS.values():
        presets = repro.presets()
        assert "tiny" in presets, repro.name
        files.update(repro.config_path(p).relative_to(base).as_posix() for p in presets)
        files.add((repro.folder / "paper_results.yaml").relative_to(base).as_posix())
    lb = REPO / "leaderboards"
    for pattern in ("boards/*.yaml", "templates/*.html", "migrations/env.py", "migrations/script.py.mako",
                    "migrations/versions/*.py"):
        found = sorted(lb.glob(pattern))
        assert found, f"leaderboards/{pattern}: nothing in the checkout"
        files.update(p.relative_to(REPO).as_posix() for p in found)
    files.update(p.relative_to(REPO).as_posix() for p in (REPO / "reproductions/common/data").rglob("*.tsv"))
    files.update(p.relative_to(REPO).as_posix() for p in (REPO / "harness/explore_page").rglob("*.*"))  # the explorer
    return sorted(files)


def modules() -> list[str]:
    """Every Python file of the three packages in the checkout (a folder without __init__.py included)."""
    return sorted(p.relative_to(REPO).as_posix() for name in PACKAGES for p in (REPO / name).rglob("*.py")
                  if "__pycache__" not in p.parts)


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """The environment of a command run from `venv`: no PYTHONPATH, W&B off, the test's own cache and data
    (read from os.environ when called: conftest sets them for each test)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(WANDB_MODE="disabled", WANDB_SILENT="true", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               VIRTUAL_ENV=str(venv), **extra)
    return env


def source_tree(dest: Path) -> Path:
    """What a clean clone holds for the build (the files git tracks or would add), copied to `dest`. Not the
    checkout itself: setuptools also packs whatever its attnrepro.egg-info/SOURCES.txt lists from earlier
    builds, and a wheel built in place keeps what build/lib holds, so a file the configuration misses could
    still ride along there."""
    wanted = ["pyproject.toml", "README.md", "LICENSE", *PACKAGES]
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *wanted], cwd=REPO)
    if listed.returncode == 0:
        for rel in filter(None, listed.stdout.split("\0")):
            if (REPO / rel).is_file():  # not a tracked file deleted in the working tree
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, dest / rel)
    else:  # not a git checkout
        for name in wanted:
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(REPO / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The sdist, and the wheel built from it (as pip builds from an sdist), into a temporary folder."""
    src, out = source_tree(tmp_path_factory.mktemp("src")), tmp_path_factory.mktemp("dist")
    result = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, src], cwd=src)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    wheels, sdists = sorted(out.glob("attnrepro-*.whl")), sorted(out.glob("attnrepro-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="module")
def fresh(dist, tmp_path_factory) -> dict:
    """A new virtual environment with the wheel installed and this environment's dependencies visible."""
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    result = _run([sys.executable, "-m", "venv", "--without-pip", venv])
    assert result.returncode == 0, result.stderr
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    assert site.is_dir() and site.resolve().is_relative_to(venv.resolve()), site
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_attnrepro_test_deps.pth").write_text("".join(f"{p}\n" for p in ours))
    env = clean_env(venv)
    # pip from this environment (seen through the .pth line); --ignore-installed: the checkout's editable
    # install is visible as installed metadata, and must be neither "already satisfied" nor uninstalled
    result = _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "--no-compile",
                   "--disable-pip-version-check", "--quiet", dist["wheel"]], env=env, cwd=root)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return {"root": root, "venv": venv, "python": python, "bin": venv / "bin" / "attnrepro", "site": site,
            "version": dist["wheel"].name.split("-")[1]}


def test_wheel_and_sdist_carry_the_code_and_its_data(dist):
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == set(PACKAGES), sorted(top)  # no tests/, benchmarks/, plans/
    missing = [f for f in data_files() + modules() if f not in names]
    assert not missing, f"not in {dist['wheel'].name}: {missing}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "attnrepro = harness.cli:main" in zipfile.ZipFile(dist["wheel"]).read(entry_points).decode()

    with tarfile.open(dist["sdist"]) as sdist:
        prefix = f"attnrepro-{dist['wheel'].name.split('-')[1]}/"
        in_sdist = {m.name.removeprefix(prefix) for m in sdist.getmembers()}
    missing = [f for f in ["pyproject.toml", "README.md", "LICENSE", *data_files()] if f not in in_sdist]
    assert not missing, f"not in {dist['sdist'].name}: {missing}"


def test_installed_wheel_imports_from_its_site_packages(fresh):
    code = ("import importlib.metadata as m, harness, leaderboards, reproductions; "
            "print(harness.__file__, leaderboards.__file__, reproductions.__file__, "
            "m.distribution('attnrepro').locate_file(''), m.version('attnrepro'), sep='\\n')")
    result = _run([fresh["python"], "-c", code], env=clean_env(fresh["venv"]), cwd=fresh["root"])
    assert result.returncode == 0, result.stderr[-3000:]
    *files, dist_root, version = result.stdout.strip().splitlines()
    for name, file in zip(PACKAGES, files):
        assert Path(file).resolve() == (fresh["site"] / name / "__init__.py").resolve(), (name, file)
    assert Path(dist_root).resolve() == fresh["site"].resolve() and version == fresh["version"]


def test_installed_command_lists_and_versions(fresh):
    result = _run([fresh["bin"], "list"], env=clean_env(fresh["venv"]), cwd=fresh["root"])
    assert result.returncode == 0, result.stderr[-3000:]
    for name in registry.REPRODUCTIONS:
        assert name in result.stdout, name
    result = _run([fresh["bin"], "list", "--json"], env=clean_env(fresh["venv"]), cwd=fresh["root"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tiny" in result.stdout  # the presets: each reproduction's configs/*.yaml, read from the wheel
    result = _run([fresh["bin"], "--version"], env=clean_env(fresh["venv"]), cwd=fresh["root"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[:2] == ["attnrepro", fresh["version"]], result.stdout


def test_installed_command_trains_a_tiny_model(fresh, data_root):
    run_dir = fresh["root"] / "run"
    # the venv sits inside someone else's repository: its commit is not attnrepro's and must not be recorded
    subprocess.run(["git", "init", "-q", str(fresh["root"])], check=True)
    env = clean_env(fresh["venv"], ATTNREPRO_DATA=str(data_root))
    result = _run([fresh["bin"], "train", "cho2014", "--preset", "tiny", "--pair", "en-de", "--run-dir", run_dir],
                  env=env, cwd=fresh["root"], timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["splits"]["test_2016_flickr"]["sentences"] > 0
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["packages"]["attnrepro"] == fresh["version"]
    assert provenance["git"] == {"commit": "unknown", "dirty": False}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_installed_command_serves_the_leaderboard(fresh):
    db, env = f"sqlite:///{fresh['root'] / 'leaderboard.db'}", clean_env(fresh["venv"])
    result = _run([fresh["bin"], "leaderboard", "migrate", "--db", db], env=env, cwd=fresh["root"])
    assert result.returncode == 0, result.stderr[-3000:]  # the Alembic migrations, from the wheel
    port, log = _free_port(), fresh["root"] / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([str(fresh["bin"]), "leaderboard", "serve", "--host", "127.0.0.1", "--port",
                                   str(port), "--db", db], env=env, cwd=fresh["root"], stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        deadline, page = time.time() + 120, None
        while time.time() < deadline and page is None:
            assert server.poll() is None, f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}"
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                page = response.text if response.status_code == 200 else None
            except httpx.TransportError:
                pass
            time.sleep(0.0 if page else 0.3)
        assert page is not None, f"no page in 120 s:\n{log.read_text()[-3000:]}"
        assert re.search(r"<h1>\s*Boards\s*</h1>", page), page[:2000]  # the templates, from the wheel
        assert "multi30k-2016-en-de" in page  # the boards, from the wheel
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
