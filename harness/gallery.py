"""The papers' famous figures, drawn with the user's own runs (the report's gallery, the explorer's start page):
Bahdanau et al.'s alignments (Fig. 3, English to French), Vaswani et al.'s encoder heads (Figs. 3-5, on the
sentence that made them famous), Xu et al.'s per-word attention over an image (Figs. 2-3, soft and hard); each
beside its fixed-vector baseline on the same input, which has no attention to show. Where no run fits, a line
says which run would draw it. The drawing goes through the task objects (`Task.attend`), as the explorer does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    reproduction: str  # the paper model that draws it
    setting: str  # what its runs must have been trained on: a language pair's prefix ("en-": English source)
    inputs: tuple[str, ...]  # the paper's own example sentences; () for the run's first test images
    view: str  # the attention view drawn: "cross", "encoder" (every head of the last layer) or "image"
    needs: str  # how to get a run that draws it

    def fits(self, reproduction: str, setting: str) -> bool:
        return reproduction == self.reproduction and setting.startswith(self.setting)

    @property
    def wanted(self) -> str:
        """The run it needs, in words: "a bahdanau2014 run on en-fr", "a vaswani2017 run on en-* (any target)"."""
        if not self.setting:
            return f"a {self.reproduction} run"
        return f"a {self.reproduction} run on {self.setting}" + ("* (any target)" if self.setting.endswith("-") else "")


FIGURES = (
    Figure("bahdanau2014-fig3", "Bahdanau et al. 2014, Fig. 3: RNNsearch's alignments, English to French",
           "bahdanau2014", "en-fr",
           ("The agreement on the European Economic Area was signed in August 1992.",  # Fig. 3 (a)
            "This will change my future with my family, the man said."),  # Fig. 3 (d)
           "cross", "attnrepro train bahdanau2014 --preset quick --pair en-fr"),
    Figure("vaswani2017-fig3-5", "Vaswani et al. 2017, Figs. 3-5: the Transformer's encoder self-attention, every "
           "head of the last layer", "vaswani2017", "en-",
           ("The animal didn't cross the street because it was too tired.",), "encoder",
           "attnrepro train vaswani2017 --preset quick (any pair with English as the source)"),
    Figure("xu2015-fig2-3-soft", "Xu et al. 2015, Figs. 2-3: where each word looked (soft attention)", "xu2015", "",
           (), "image", "attnrepro train xu2015 --preset quick"),
    Figure("xu2015-fig2-3-hard", "Xu et al. 2015, Figs. 2-3: where each word looked (hard attention: the expected "
           "map)", "xu2015-hard", "", (), "image", "attnrepro train xu2015-hard --preset quick"),
)
IMAGES = 2  # test images drawn for Xu et al.'s figures


def _baseline(figure: Figure) -> str | None:
    from reproductions import registry

    return registry.get(figure.reproduction).baseline


def explorer_gallery(runs: list[tuple[str, str, str]]) -> list[dict]:
    """runs: (id, reproduction, setting) -> per figure, the run ids that draw it and its baseline's, with the
    inputs; or what it `needs`."""
    items = []
    for figure in FIGURES:
        run = next((rid for rid, repro, setting in runs if figure.fits(repro, setting)), None)
        item = {"key": figure.key, "title": figure.title, "view": figure.view, "inputs": list(figure.inputs)}
        if run is None:
            items.append({**item, "needs": f"needs {figure.wanted}: {figure.needs}"})
            continue
        setting = next(s for rid, _, s in runs if rid == run)
        base = next((rid for rid, repro, s in runs if repro == _baseline(figure) and s == setting), None)
        items.append({**item, "run": run, "baseline": base})
    return items


def _draw(figure: Figure, answer: dict, path: Path, label: str, image=None) -> None:
    """One figure of the gallery as a PNG (the explorer draws the same views as SVG)."""
    import numpy as np

    from reproductions.common.plots import attention_heads_plot, attention_heatmap, caption_attention_plot

    view = answer["views"][figure.view]
    weights = np.asarray(view["weights"])
    if figure.view == "image":
        caption_attention_plot(image, view["rows"], weights, view["grid"], path, title=f"{label}: {answer['output']}")
    elif figure.view == "encoder":  # every head of the last layer, as Figs. 4-5 show them side by side
        attention_heads_plot(weights[-1], view["cols"], path, title=f"{label}, encoder self-attention, last layer")
    else:  # the last layer's mean over heads (a single alignment for RNNsearch)
        attention_heatmap(weights[-1].mean(0), view["cols"], view["rows"], path, title=f"{label}: {answer['input']}")


def _inputs(figure: Figure, task, loaded) -> list[tuple[object, object]]:
    """(what the task attends to, the image array to draw under the maps or None) per input of the figure."""
    if figure.inputs:
        return [(text, None) for text in figure.inputs]
    from reproductions.captioning.encoders import read_image, spec

    size = spec(loaded.cfg.data.encoder).size
    pairs = []
    for example in task.examples(loaded, IMAGES):
        pixels = read_image(example["path"], size)
        pairs.append((example["path"], pixels.permute(1, 2, 0).clamp(0, 255).byte().numpy()))
    return pairs


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _load(run_dir: Path):
    """The run's scored model, or why it cannot be loaded (one line)."""
    from reproductions.common.errors import AttnreproError
    from reproductions.loading import load_model

    from .evaluate import locate

    try:
        return load_model(locate(run_dir)[1])
    except AttnreproError as err:
        return str(err)


def write_gallery(runs: list[tuple[Path, str, str]], out: Path) -> tuple[list[Path], list[str]]:
    """runs: (run dir, reproduction, setting) -> the gallery's PNGs under out/ and its lines (what the baseline
    produced on the same input; which run a figure would need)."""
    from reproductions import registry, tasks

    paths, lines = [], []
    for figure in FIGURES:
        found = next((r for r in runs if figure.fits(r[1], r[2])), None)
        if found is None:
            lines.append(f"{figure.title}: not drawn, it needs {figure.wanted} (`{figure.needs}`)")
            continue
        base = next((r for r in runs if r[1] == _baseline(figure) and r[2] == found[2]), None)
        models = [(run, _load(run[0])) for run in (found, base) if run is not None]
        if isinstance(models[0][1], str):  # a run reported from its records, its checkpoints gone
            lines.append(f"{figure.title}: not drawn, {models[0][1]}")
            continue
        if len(models) > 1 and isinstance(models[1][1], str):
            base, models = None, models[:1]
        task = tasks.get(models[0][1].task)
        for i, (item, image) in enumerate(_inputs(figure, task, models[0][1])):
            answer = task.attend(models[0][1], item)
            path = out / f"gallery-{figure.key}-{i + 1}.png"
            _draw(figure, answer, path, f"{registry.get(figure.reproduction).title} ({found[0].name})", image)
            paths.append(path)
            what = answer.get("input") or Path(item).name
            output = _short(answer["output"])
            lines.append(f"{figure.title}, input {i + 1} ({what}): {figure.reproduction} wrote “{output}”")
            if base is not None:
                output = _short(task.attend(models[1][1], item)["output"])
                lines.append(f"{figure.title}, input {i + 1}: the baseline {base[1]} wrote “{output}”; it reads one "
                             "fixed vector, so it has no attention to show")
    return paths, lines
