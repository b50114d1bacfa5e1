"""Figures people would rather look at than read: alignment heatmaps (Bahdanau et al. Fig. 3) and
BLEU by source sentence length (Fig. 2). Files are written atomically; matplotlib runs headless."""

from __future__ import annotations

from pathlib import Path

from .io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int) -> None:
    """Lay out, write (atomically: a figure is whole or absent) and close a figure."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    _pyplot().close(fig)


def attention_heatmap(weights, src_tokens: list[str], tgt_tokens: list[str], path: Path | str, title: str = "",
                      axes: tuple[str, str] = ("source", "output")) -> None:
    """weights (T, S): row i is the alignment of target token i over the source tokens; `axes` names the columns
    and the rows (self-attention: ("source", "source") or ("output so far", "output"))."""
    plt = _pyplot()
    weights = weights[: len(tgt_tokens), : len(src_tokens)]
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(src_tokens) + 1.5), max(3, 0.4 * len(tgt_tokens) + 1.2)))
    ax.imshow(weights, cmap="gray", vmin=0.0, vmax=1.0, aspect="auto")  # white = high weight, as in Fig. 3
    ax.set_xticks(range(len(src_tokens)), src_tokens, rotation=90)
    ax.set_yticks(range(len(tgt_tokens)), tgt_tokens)
    ax.xaxis.tick_top()
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    if title:
        ax.set_title(title, pad=12, fontsize=9)
    _save(fig, path, dpi=120)


def bleu_by_length_plot(series: dict[str, list[dict]], path: Path | str, title: str = "") -> None:
    """series: model label -> `metrics.bleu_by_length` rows; one line per model, bucket sizes annotated."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, rows in series.items():
        xs = [r["min_len"] if r["max_len"] is None else (r["min_len"] + r["max_len"]) / 2 for r in rows]
        ax.plot(xs, [r["bleu"] for r in rows], marker="o", label=label)
    any_rows = next(iter(series.values()), [])
    for r in any_rows:
        x = r["min_len"] if r["max_len"] is None else (r["min_len"] + r["max_len"]) / 2
        ax.annotate(f"n={r['n']}", (x, 0), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=7)
    ax.set_xlabel("source sentence length (words)")
    ax.set_ylabel("BLEU (sacreBLEU)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "BLEU by source sentence length")
    _save(fig, path, dpi=120)


def caption_attention_plot(image, words: list[str], weights, grid: int, path: Path | str, title: str = "") -> None:
    """Xu et al. Figs. 2-3: the image, then one panel per generated word with its attention map.
    image (H, W, 3) uint8; weights (len(words), grid * grid), the alpha of each word over the locations."""
    import numpy as np

    plt = _pyplot()
    panels = len(words) + 1
    cols = min(panels, 6)
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    height, width = image.shape[:2]
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(image)
    axes.flat[0].set_title("image", fontsize=9)
    for ax, word, alpha in zip(list(axes.flat)[1:], words, weights):
        amap = np.asarray(alpha, dtype=float).reshape(grid, grid)
        ax.imshow(image)
        # bilinear upsampling over the whole image, white = attended (as the paper's figures)
        ax.imshow(amap / max(amap.max(), 1e-12), cmap="gray", alpha=0.6, extent=(0, width, height, 0),
                  interpolation="bilinear", vmin=0.0, vmax=1.0)
        ax.set_title(word, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=9)
    _save(fig, path, dpi=100)


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(float(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "") and r.get("step")]
    return [p[0] for p in points], [p[1] for p in points]


def learning_curves_plot(runs: dict[str, list[dict]], path: Path | str, title: str = "") -> None:
    """runs: label -> rows of a run's logs/metrics.csv. Left: training and validation loss by step; right:
    validation loss by wall-clock minutes (from the `time/minutes` column the harness logs)."""
    import numpy as np

    plt = _pyplot()
    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (label, rows) in enumerate(runs.items()):
        color = f"C{i % 10}"
        steps, train = _series(rows, "train/loss")
        if steps:
            by_step.plot(steps, train, color=color, alpha=0.35, lw=1)
        val_steps, val = _series(rows, "val/loss")
        if val_steps:
            by_step.plot(val_steps, val, color=color, marker="o", ms=3, label=label)
        time_steps, minutes = _series(rows, "time/minutes")
        if val_steps and time_steps:
            by_time.plot(np.interp(val_steps, time_steps, minutes), val, color=color, marker="o", ms=3, label=label)
    by_step.set_xlabel("step")
    by_step.set_ylabel("loss (faint: training; dots: validation)")
    by_time.set_xlabel("wall-clock minutes of training")
    by_time.set_ylabel("validation loss")
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title or "learning curves")
    _save(fig, path, dpi=110)


def cost_plot(runs: list[dict], path: Path | str) -> None:
    """The cost of each run: wall-clock minutes (device-hours when on GPUs) and training FLOPs."""
    plt = _pyplot()
    labels = [r["label"] for r in runs]
    minutes = [r.get("wall_time_s", 0) / 60 for r in runs]
    flops = [r.get("training_flops", 0) or 0 for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, max(3, 0.3 * len(runs) + 1.5)))
    left.barh(labels, minutes, color="C0")
    left.set_xlabel("wall-clock minutes of training")
    for label, m, r in zip(labels, minutes, runs):
        if r.get("devices", 1) and r.get("device_hours"):
            left.annotate(f"{r['device_hours']:.2f} device-h", (m, label), fontsize=7, va="center")
    right.barh(labels, flops, color="C1")
    right.set_xscale("log" if any(flops) else "linear")
    right.set_xlabel("training FLOPs (matrix products, forward + backward)")
    right.set_yticks([])
    fig.suptitle("cost per run")
    _save(fig, path, dpi=110)


def plot_paths(path: Path, count: int) -> list[Path]:
    """One figure per sentence or image: FILE.png for the first, FILE-2.png, FILE-3.png ... for the rest."""
    return [path if i == 0 else path.with_name(f"{path.stem}-{i + 1}{path.suffix}") for i in range(count)]


def attention_heads_plot(weights, tokens: list[str], path: Path | str, title: str = "") -> None:
    """Vaswani et al. Figs. 3-5: one panel per head of a layer's self-attention. weights (h, S, S): row i is
    where token i attends; white = high weight, as in `attention_heatmap`."""
    plt = _pyplot()
    heads = weights.shape[0]
    cols = min(heads, 4)
    rows = (heads + cols - 1) // cols
    side = max(3.0, 0.28 * len(tokens) + 1.2)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= heads:
            ax.axis("off")
            continue
        ax.imshow(weights[h, : len(tokens), : len(tokens)], cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
        ax.xaxis.tick_top()
        ax.set_title(f"head {h}", fontsize=8, pad=40)
    if title:
        fig.suptitle(title, fontsize=9)
    _save(fig, path, dpi=110)
