"""The RNN loss scale under Adadelta: the per-token mean NLL against GroundHog's NLL summed over the minibatch.

Trains a reduced RNNsearch (the `quick` preset's sizes) on Multi30k en-de twice from the same initial weights and
batches, with the paper's optimiser (Adadelta, rho 0.95, eps 1e-6, gradient norm clipped at 1, 80 sentences per
step, float32), once with `optim.loss_scale=token_mean` and once with `batch_sum`. For every step it records the
gradient norm before clipping, whether the clip bound, and the norm of the update; at the end the validation NLL
per token. Prints a table by step range and writes JSON with the commit, the machine and both configs.

    python benchmarks/loss_scale.py                         # 200 steps each way (a few minutes on 2 CPU cores)
    python benchmarks/loss_scale.py --steps 20 --out /tmp/x  # a smoke run
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import torch
from rich.console import Console

from harness import quiet_known_noise
from harness.benchmark import provenance
from harness.tables import Col, print_table
from reproductions import registry
from reproductions.common.data.sources import cache_root
from reproductions.common.io import atomic_write_json

PAPER_OPTIMISER = ["optim.name=adadelta", "optim.lr=1.0", "optim.eps=1e-6", "optim.rho=0.95", "optim.clip_norm=1.0",
                   "optim.schedule=constant", "optim.cooldown=0.0", "data.batch_sentences=80", "data.max_tokens=null",
                   "train.precision=32-true"]


def run(loss_scale: str, steps: int, seed: int, cache: Path) -> dict:
    import pytorch_lightning as pl

    from reproductions.translation.data.datamodule import TranslationDataModule
    from reproductions.translation.module import TranslationModule

    class Record(pl.Callback):
        def __init__(self):
            self.grad_norms, self.update_norms, self.before = [], [], None

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # before the clip
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            self.grad_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
            self.before = [p.detach().clone() for p in pl_module.parameters()]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            deltas = [(p.detach() - b).norm() for p, b in zip(pl_module.parameters(), self.before)]
            self.update_norms.append(float(torch.linalg.vector_norm(torch.stack(deltas))))

    repro = registry.get("bahdanau2014")
    overrides = [*PAPER_OPTIMISER, f"optim.loss_scale={loss_scale}", f"train.max_steps={steps}"]
    cfg = repro.load_config("quick", overrides)
    data = TranslationDataModule(cfg.data, seed=seed, cache_dir=cache)
    data.load()
    torch.manual_seed(seed)
    module = TranslationModule(repro.build(cfg, len(data.src_vocab), len(data.tgt_vocab)), cfg, "bahdanau2014",
                               data.src_vocab, data.tgt_vocab)
    record = Record()
    pl.seed_everything(seed, verbose=False)
    trainer = pl.Trainer(max_steps=steps, max_epochs=1000, logger=False, enable_progress_bar=True,
                         enable_model_summary=False, enable_checkpointing=False, use_distributed_sampler=False,
                         accelerator="cpu", precision="32-true", gradient_clip_val=cfg.optim.clip_norm,
                         callbacks=[record], num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    module.eval()
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for batch in data.val_dataloader():
            loss_sum, ntok = module._loss_sum(batch, 0.0)
            nll, tokens = nll + float(loss_sum), tokens + int(ntok)
    return {"loss_scale": loss_scale, "parameters": sum(p.numel() for p in module.parameters()),
            "grad_norms": record.grad_norms, "update_norms": record.update_norms,
            "val_nll_per_token": nll / tokens, "overrides": overrides}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/loss-scale"))
    args = parser.parse_args(argv)
    quiet_known_noise()
    console, load_before = Console(), os.getloadavg()
    runs = {scale: run(scale, args.steps, args.seed, cache_root() / "vocab") for scale in ("token_mean", "batch_sum")}

    edges = sorted({0, min(10, args.steps), min(50, args.steps), args.steps})
    ranges = [(a, b) for a, b in zip(edges, edges[1:]) if b > a]
    rows = []
    for a, b in ranges:
        row = [f"steps {a + 1}-{b}"]
        for scale in runs:
            grads, updates = runs[scale]["grad_norms"][a:b], runs[scale]["update_norms"][a:b]
            row += [f"{_mean(grads):.3g}", f"{sum(g > 1.0 for g in grads) / len(grads):.0%}", f"{_mean(updates):.3g}"]
        rows.append(row)
    rows.append(["val NLL/token", f"{runs['token_mean']['val_nll_per_token']:.3f}", "", "",
                 f"{runs['batch_sum']['val_nll_per_token']:.3f}", "", ""])
    columns = [Col("")] + [Col(f"{scale} {what}", "number") for scale in runs
                           for what in ("grad norm", "clip binds", "update norm")]
    print_table(console, f"RNNsearch (quick sizes, {runs['token_mean']['parameters'] / 1e6:.1f}M parameters), "
                f"Adadelta, {args.steps} steps", columns, rows)
    ratio = _mean([s / m for s, m in zip(runs["batch_sum"]["grad_norms"][:10], runs["token_mean"]["grad_norms"][:10])])
    console.print(f"gradient norm, first 10 steps: batch_sum / token_mean = {ratio:.0f}x")
    atomic_write_json(args.out / "result.json", {
        "benchmark": "loss_scale", "steps": args.steps, "seed": args.seed, **provenance(load_before),
        "summary": {"ranges": [f"{a + 1}-{b}" for a, b in ranges], "rows": rows, "first_steps_grad_ratio": ratio},
        "runs": runs})
    console.print(f"record: {args.out / 'result.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
