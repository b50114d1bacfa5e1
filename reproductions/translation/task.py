"""Translation: parallel text in, detokenised text out, scored by sacreBLEU against raw references."""

from __future__ import annotations

from pathlib import Path

from ..common.task import Column, Task

SAMPLES = 3  # test sentences drawn with their attention in a run's figures
TABLE_ROWS = 20  # sample outputs in the W&B table


class TranslationTask(Task):
    name = "translation"
    metric_title = "sacreBLEU"
    columns = (Column("bleu", "BLEU"), Column("chrf", "chrF"))
    headline = "bleu"
    hyp_suffix = ".txt"
    takes_pair = True
    batch_keys = ("src", "tgt_in", "tgt_out")
    segment = "sentences"
    paper_columns = (Column("tok_bleu", "tok BLEU (papers')"), Column("tok_bleu_no_unk", "tok BLEU, No UNK"),
                     Column("lc_tok_bleu", "lc tok BLEU (Multi30k)"))
    board_metric = "sacrebleu"
    board_needs_images = False
    command = "translate"
    explore_input = "text"

    def setting(self, data_cfg: dict) -> str:
        return data_cfg.get("pair") or data_cfg.get("dataset", "")

    # -- training ----------------------------------------------------------------------------------------------

    def check_data(self, cfg) -> None:
        from reproductions.common.data.sources import resolve
        from reproductions.translation.data.files import files_of

        d = cfg.data
        splits = [d.val_split, *d.test_splits]  # the test splits too: scored after training, found missing now
        if not (d.dataset == "wmt14" and d.train_split == "train"):  # WMT14's training data streams from its source
            splits.insert(0, d.train_split)
        for split in splits:
            for file in files_of(d.dataset, d.pair, split):
                resolve(file)

    def check_scoring(self, cfg) -> None:
        """sacreBLEU and sacremoses are Python dependencies: nothing outside Python to check."""

    def data_module(self, cfg, seed: int, cache_dir: Path):
        from reproductions.translation.data.datamodule import TranslationDataModule

        data = TranslationDataModule(cfg.data, seed=seed, cache_dir=cache_dir)
        data.load()
        return data

    def lightning_module(self, repro, cfg, data):
        from reproductions.translation.module import TranslationModule

        model = repro.build(cfg, len(data.src_vocab), len(data.tgt_vocab))
        return TranslationModule(model, cfg, repro.name, data.src_vocab, data.tgt_vocab)

    def provenance(self, data, cfg) -> dict:
        return {"train_pairs": len(data.train_set), "train_pairs_dropped_by_max_len": data.dropped,
                "vocab_sizes": [len(data.src_vocab), len(data.tgt_vocab)]}

    def step_budget(self, trainer, data, train_cfg):
        from reproductions.translation.data.datamodule import apply_step_budget

        return apply_step_budget(trainer, data, train_cfg)

    def sample_batch(self, data, size: int = 32) -> dict:
        from reproductions.common.data.batching import collate_pairs

        return collate_pairs([data.train_set[i] for i in range(min(size, len(data.train_set)))])

    # -- checkpoints and scoring -------------------------------------------------------------------------------

    def model_from_checkpoint(self, repro, cfg, meta: dict):
        from reproductions.common.data.vocab import Vocab

        src_vocab, tgt_vocab = Vocab.from_json(meta["src_vocab"]), Vocab.from_json(meta["tgt_vocab"])
        return repro.build(cfg, len(src_vocab), len(tgt_vocab)), src_vocab, tgt_vocab

    def evaluate(self, loaded, run_dir, splits, device, logger=None):
        from reproductions.common.io import atomic_write_text
        from reproductions.translation.data.files import checksums, load_split, split_available
        from reproductions.translation.decoding import translate_texts
        from reproductions.translation.metrics import no_unk_flags, translation_scores

        cfg = loaded.cfg
        decode, data = cfg.decode, cfg.data
        if splits:
            wanted, skipped = list(splits), {}
        else:  # the configured test splits that this machine has
            wanted = [s for s in data.test_splits if split_available(data.dataset, data.pair, s)]
            skipped = {s: "not under the data root" for s in data.test_splits if s not in wanted}
        results = {}
        for split in wanted:
            pairs = load_split(data.dataset, data.pair, split, data.eval_limit)
            srcs, refs = list(pairs["src"]), list(pairs["tgt"])
            hyps, raw = translate_texts(loaded.model, loaded.src_vocab, loaded.tgt_vocab, srcs, decode, device,
                                        desc=f"{split} (beam {decode.beam})")
            # sacreBLEU (primary) and the papers' conventions, Bahdanau et al.'s [UNK] kept for the latter
            scores = translation_scores(
                hyps, refs, dataset=data.dataset, pair=data.pair, split=split,
                hyps_with_unk=[loaded.tgt_vocab.decode(h.tokens, keep_unk=True) for h in raw],
                no_unk=no_unk_flags(loaded.src_vocab, loaded.tgt_vocab, srcs, refs),
                srcs=srcs, length_buckets=decode.length_buckets)
            scores.update({
                "beam": decode.beam,
                "length_penalty": decode.length_penalty,
                "checkpoint": loaded.path.name,
                "data_checksums": checksums(data.dataset, data.pair, [split]),
            })
            results[split] = scores
            if run_dir is not None:
                # One hypothesis per line (`common.submissions.split_lines`): a line break inside one would shift
                # every later line, so it becomes a space.
                lines = (" ".join(h.splitlines()) for h in hyps)
                atomic_write_text(self.hyps_path(run_dir, split), "".join(f"{line}\n" for line in lines))
            if logger is not None:
                logger.log_metrics({f"test/{split}/{c.key}": scores[c.key] for c in self.columns})
        return results, skipped

    def run_figures(self, loaded, run_dir, out, splits):
        from reproductions.common.plots import attention_heatmap, bleu_by_length_plot
        from reproductions.common.submissions import read_hyp_lines
        from reproductions.translation.data.files import load_split
        from reproductions.translation.decoding import translate_texts

        figures: dict[str, list[Path]] = {}
        if not splits:
            return figures, []
        split = next(iter(splits))
        data = loaded.cfg.data
        pairs = load_split(data.dataset, data.pair, split, TABLE_ROWS)
        srcs, refs = list(pairs["src"]), list(pairs["tgt"])
        hyps_file = self.hyps_path(run_dir, split)
        hyps = read_hyp_lines(hyps_file)[: len(srcs)] if hyps_file.exists() else []
        table = [{"source": s, "reference": r, "hypothesis": h} for s, r, h in zip(srcs, refs, hyps)]
        _, raw = translate_texts(loaded.model, loaded.src_vocab, loaded.tgt_vocab, srcs[:SAMPLES], loaded.cfg.decode,
                                 keep_attention=True, progress=False)
        for i, (text, hyp) in enumerate(zip(srcs, raw)):
            if hyp.attention is None:  # a fixed-vector model
                break
            path = out / f"attention_{split}_{i + 1}.png"
            attention_heatmap(hyp.attention.cpu().numpy(), loaded.src_vocab.tokens(text) + ["</s>"],
                              [loaded.tgt_vocab.id_to_token(t) for t in hyp.tokens] + ["</s>"], path,
                              title=f"{loaded.reproduction}: {text[:50]}")
            figures.setdefault("attention", []).append(path)
        for name, scores in splits.items():
            if scores.get("bleu_by_length"):
                path = out / f"bleu_by_length_{name}.png"
                bleu_by_length_plot({loaded.reproduction: scores["bleu_by_length"]}, path,
                                    title=f"{loaded.reproduction}, {name}: BLEU by source length")
                figures.setdefault("bleu_by_length", []).append(path)
        return figures, table

    def paired_test(self, split, paper_run, base_run):
        from sacrebleu.metrics import BLEU
        from sacrebleu.significance import PairedTest

        from reproductions.common.rundir import RunDir
        from reproductions.common.submissions import read_hyp_lines
        from reproductions.translation.data.files import load_split

        paper, base = RunDir(paper_run), RunDir(base_run)
        hyp_a, hyp_b = paper.hyps(self, split), base.hyps(self, split)
        if not (hyp_a.is_file() and hyp_b.is_file()):
            return None
        config = paper.config["data"]
        refs = list(load_split(config["dataset"], config["pair"], split, config.get("eval_limit"))["tgt"])
        systems = [("baseline", read_hyp_lines(hyp_b)), ("paper", read_hyp_lines(hyp_a))]
        if any(len(h) != len(refs) for _, h in systems):
            return None
        _, scores = PairedTest(systems, {"BLEU": BLEU()}, [refs], test_type="bs", n_samples=1000)()
        return {"test": "sacreBLEU paired bootstrap (1000 resamples)", "p_value": scores["BLEU"][1].p_value}

    # -- looking inside a model ------------------------------------------------------------------------------

    def attend(self, loaded, item, device="cpu"):
        from .attend import attend_text

        return attend_text(loaded, item, device)

    def examples(self, loaded, n):
        from reproductions.translation.data.files import load_split, split_available

        data = loaded.cfg.data
        split = next((s for s in data.test_splits if split_available(data.dataset, data.pair, s)), None)
        if split is None:
            return []
        sources = list(load_split(data.dataset, data.pair, split, n)["src"])
        return [{"id": f"{split}:{i + 1}", "label": text, "text": text} for i, text in enumerate(sources)]

    # -- leaderboards ------------------------------------------------------------------------------------------

    def board_references(self, texts):
        from reproductions.common.submissions import split_lines

        return split_lines(texts[0]), None

    def parse_submission(self, data, board):
        from reproductions.common.submissions import parse_translation_outputs

        source = f"{board.split}.{board.pair.split('-')[0] if board.pair else 'src'}"
        return parse_translation_outputs(data, board.segments, what=source, max_line_chars=board.limits.max_line_chars)

    def score(self, hyps, refs):
        from reproductions.translation.metrics import corpus_scores

        return corpus_scores(hyps, refs)
