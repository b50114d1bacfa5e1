"""The project's structure: baselines train under exactly their paper model's settings, the checklist of
reproductions/README.md adds a fourth paper, the harness never branches on the task, and the CLI's import path
stays free of torch."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reproductions import registry, tasks
from reproductions.common.config import to_dict

REPO = Path(__file__).resolve().parents[1]


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("baseline", [r.name for r in registry.REPRODUCTIONS.values() if r.presets_from])
def test_a_baseline_trains_under_its_paper_models_presets(baseline):
    """Identical settings by construction: the resolved configs differ only in the keys the registry fixes."""
    base = registry.get(baseline)
    paper = registry.get(base.presets_from)
    assert base.presets() == paper.presets()
    for preset in base.presets():
        own = dict(base.preset_overrides).get(preset, ())
        declared = {o.split("=")[0] for o in base.fixed + paper.fixed + tuple(own)}
        a, b = _flatten(to_dict(base.load_config(preset))), _flatten(to_dict(paper.load_config(preset)))
        differing = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        assert differing <= declared, (preset, differing - declared)


def test_rnnencdec_keeps_its_own_paper_budget():
    """Bahdanau et al. Table 2: RNNencdec-50 6.00e5 and -30 8.46e5 updates, RNNsearch-50 2.88e5 and -30 4.71e5."""
    steps = {(n, p): registry.get(n).load_config(p).train.max_steps
             for n in ("bahdanau2014", "cho2014") for p in ("paper", "paper30")}
    assert steps == {("bahdanau2014", "paper"): 288000, ("bahdanau2014", "paper30"): 471000,
                     ("cho2014", "paper"): 600000, ("cho2014", "paper30"): 846000}


def test_every_paper_is_compared_on_its_baselines_task():
    for paper in registry.papers():
        assert registry.get(paper.baseline).task == paper.task
        assert paper.task in tasks.TASKS


def test_the_harness_and_boards_do_not_branch_on_the_task():
    """What differs between tasks lives in the task objects (reproductions/tasks/): no comparison with a task
    and no table keyed by a task's name anywhere else."""
    names = "|".join(tasks.TASKS)
    pattern = re.compile(rf'task (==|!=)|(==|!=) ["\']({names})["\']|["\']({names})["\']\s*:|hasattr\(.*collate')
    hits = [f"{path.relative_to(REPO)}:{n}" for folder in ("harness", "leaderboards", "reproductions")
            for path in sorted((REPO / folder).rglob("*")) if path.suffix in (".py", ".html")
            and "tasks" not in path.relative_to(REPO).parts
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert len(hits) <= 2, hits


# The rooms of the code, bottom up; a room imports only from rooms below it (so there is no circle either).
PAPER_FOLDERS = sorted({r.folder.name for r in registry.REPRODUCTIONS.values()})
WINGS = ["translation", "captioning"]  # one per task, above the core and below the paper folders
LAYERS = [["common"], WINGS, ["tasks", *PAPER_FOLDERS], ["registry"], ["paper_results", "loading"], ["leaderboards"],
          ["harness"]]


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "reproductions":
        return parts[0] if parts[0] in ("harness", "leaderboards") else None
    return parts[1] if len(parts) > 1 else None  # the package itself (`from reproductions import x`): x counts


def _imports(path: Path) -> set[str]:
    """The project modules a file imports (relative imports resolved), with each imported name as a module too."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            found |= {name} | {f"{name}.{alias.name}" for alias in node.names}
    return found


def test_every_import_goes_down_the_layers():
    level = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
    upward = []
    for folder in ("reproductions", "harness", "leaderboards"):
        for path in sorted((REPO / folder).rglob("*.py")):
            here = _room(".".join(path.relative_to(REPO).with_suffix("").parts))
            for module in _imports(path):
                there = _room(module)
                if here is None or there is None or there == here:
                    continue
                assert here in level and there in level, f"{path.relative_to(REPO)}: {here} or {there} has no layer"
                if level[there] >= level[here]:
                    upward.append(f"{path.relative_to(REPO)} ({here}) imports {module} ({there})")
    assert not upward, upward


def test_no_function_is_longer_than_60_lines():
    long = [f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for folder in ("harness", "reproductions") for path in sorted((REPO / folder).rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60]
    assert not long, long


def test_the_cli_imports_no_torch():
    code = "import sys, harness.cli; harness.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_list_prints_the_registry_as_json():
    out = subprocess.run([sys.executable, "-m", "harness.cli", "list", "--json"], capture_output=True, text=True,
                         cwd=REPO, check=True)
    entries = {e["name"]: e for e in json.loads(out.stdout)}
    assert set(entries) == set(registry.REPRODUCTIONS)
    assert entries["cho2014"]["presets_from"] == "bahdanau2014"
    assert entries["vaswani2017"]["baseline"] == "cho2014"


def test_list_never_truncates_names_or_presets_in_a_narrow_pipe():
    out = subprocess.run([sys.executable, "-m", "harness.cli", "list"], capture_output=True, text=True, cwd=REPO,
                         check=True, env={**__import__("os").environ, "COLUMNS": "80"})
    words = set(re.findall(r"[\w.-]+", out.stdout))
    assert "…" not in out.stdout
    for repro in registry.REPRODUCTIONS.values():
        assert repro.name in words
        assert set(repro.presets()) <= words


# A fourth paper, added by the checklist of reproductions/README.md, in a temporary folder.
TOY_MODEL = '''
"""Luong et al. 2015 style dot-product attention, for the checklist test: only the context block is new."""
from torch import nn

from reproductions.common.attention import DotAttention
from reproductions.translation.rnn import RNNTranslationConfig, assemble


class DotContext(nn.Module):
    def __init__(self, annotation_dim, hidden):
        super().__init__()
        self.attention = DotAttention(hidden, annotation_dim, general=True)
        self.W_s = nn.Linear(annotation_dim // 2, hidden)
        self.dim = annotation_dim

    def start(self, enc):
        import torch

        return torch.tanh(self.W_s(enc.first_backward)), {"annotations": enc.annotations, "mask": enc.mask}

    def forward(self, s_prev, memory):
        a = memory["annotations"]
        return self.attention(s_prev, a, a, memory["mask"])


def build(cfg: RNNTranslationConfig, src_vocab_size, tgt_vocab_size):
    m = cfg.model
    return assemble(m, src_vocab_size, tgt_vocab_size, bidirectional=True,
                    make_context=lambda dim: DotContext(dim, m.hidden))
'''


# A captioning paper by the same checklist: its own context block in the shared caption decoder.
TOY_CAPTIONER = '''
"""Dot-product attention over the image, for the checklist test: only the context block is new."""
import torch
from torch import nn

from reproductions.common.attention import masked_softmax, weighted_sum
from reproductions.captioning.config import CaptionConfig
from reproductions.captioning.decoder import Captioner
from reproductions.captioning.encoders import spec


class DotImageAttention(nn.Module):
    attends = True

    def __init__(self, hidden, feature_dim):
        super().__init__()
        self.lstm_input = feature_dim
        self.W = nn.Linear(hidden, feature_dim, bias=False)
        self.init_h, self.init_c = nn.Linear(feature_dim, hidden), nn.Linear(feature_dim, hidden)

    def start(self, features, lstm, sample):
        mean = features.mean(1)
        return {"h": torch.tanh(self.init_h(mean)), "c": torch.tanh(self.init_c(mean)), "features": features}

    def forward(self, state, h_prev, sample):
        feats = state["features"]
        alpha = masked_softmax(torch.bmm(feats, self.W(h_prev).unsqueeze(-1)).squeeze(-1), None)
        return weighted_sum(alpha, feats), alpha, {}

    def loss(self, extras, step_mask, nll, cfg):
        return None, {}


def build(cfg: CaptionConfig, vocab_size):
    return Captioner(cfg.model, vocab_size, DotImageAttention(cfg.model.hidden_dim, spec(cfg.data.encoder).dim))
'''


@pytest.mark.slow
def test_the_checklist_adds_a_paper_from_a_folder(tmp_path, data_root, monkeypatch):
    from harness.train import train
    from reproductions.loading import load_model

    folder = tmp_path / "toy2099"
    (folder / "configs").mkdir(parents=True)
    (folder / "model.py").write_text(textwrap.dedent(TOY_MODEL))
    (folder / "README.md").write_text("# toy2099\n")
    (folder / "configs" / "tiny.yaml").write_text(
        (registry.get("bahdanau2014").config_folder / "tiny.yaml").read_text())
    (folder / "paper_results.yaml").write_text("cells: []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = registry.Reproduction(
        name="toy2099", title="DotSearch", paper="Toy et al. 2099", arxiv="0000.00000v1", task="translation",
        role="paper", baseline="cho2014", builder="toy2099.model:build",
        config_class="reproductions.translation.rnn:RNNTranslationConfig", datasets=("multi30k",), folder_path=folder)
    registry.register(entry)
    try:
        assert registry.get("toy2099").presets() == ["tiny"]
        run = train("toy2099", "tiny", run_dir=tmp_path / "run", wandb="disabled")
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["splits"]["test_2016_flickr"]["sentences"] == 20
        assert (run / "hyps" / "test_2016_flickr.txt").is_file()
        assert load_model(run / "checkpoints" / "last.ckpt").reproduction == "toy2099"
        with pytest.raises(ValueError, match="registered already"):
            registry.register(entry)
    finally:
        registry.REPRODUCTIONS.pop("toy2099", None)


@pytest.mark.slow
def test_the_checklist_adds_a_captioning_paper_from_a_folder(tmp_path, data_root, monkeypatch):
    from harness.train import train
    from reproductions.loading import load_model

    if not (data_root / "flickr8k" / "Images").is_dir():
        pytest.skip("Flickr8k images not under the data root")
    folder = tmp_path / "toycap2099"
    (folder / "configs").mkdir(parents=True)
    (folder / "model.py").write_text(textwrap.dedent(TOY_CAPTIONER))
    (folder / "README.md").write_text("# toycap2099\n")
    (folder / "configs" / "tiny.yaml").write_text((registry.get("xu2015").config_folder / "tiny.yaml").read_text())
    (folder / "paper_results.yaml").write_text("cells: []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = registry.Reproduction(
        name="toycap2099", title="Show, Dot and Tell", paper="Toy et al. 2099", arxiv="0000.00000v1",
        task="captioning", role="paper", baseline="vinyals2015", builder="toycap2099.model:build",
        config_class="reproductions.captioning.config:CaptionConfig", datasets=("flickr8k",), folder_path=folder)
    registry.register(entry)
    try:
        run = train("toycap2099", "tiny", overrides=["train.max_steps=3"], run_dir=tmp_path / "run",
                    wandb="disabled")
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["splits"]["test"]["cider_d"] is not None and metrics["training"]["steps"] == 3
        assert (run / "hyps" / "test.json").is_file()
        loaded = load_model(run / "checkpoints" / "last.ckpt")
        assert loaded.reproduction == "toycap2099" and loaded.model.attends
    finally:
        registry.REPRODUCTIONS.pop("toycap2099", None)
