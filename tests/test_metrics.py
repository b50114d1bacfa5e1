"""The papers' scoring conventions beside sacreBLEU: tokenised BLEU (Moses, compound splitting), Bahdanau et
al.'s No-UNK subset, Multi30k's lowercased tokenised BLEU, and caption BLEU without the brevity penalty.

Expected values are counted by hand from the n-grams written out in the comments. sacreBLEU's default
smoothing ("exp") replaces the k-th zero n-gram precision, counting from the lowest order, by 1 / (2^k * guesses).
"""

from __future__ import annotations

import math

import pytest

from reproductions.translation.metrics import compound_split, moses_tokenize, tok_bleu, translation_scores


def geo(*precisions: float) -> float:
    return math.prod(precisions) ** (1 / len(precisions))


def test_moses_tokenisation_splits_punctuation_and_escapes_quotes():
    assert moses_tokenize('He said "no".', "en") == "He said &quot; no &quot; ."
    assert moses_tokenize("the man's dog, Rex.", "en") == "the man &apos;s dog , Rex ."
    assert moses_tokenize("un coup d'œil.", "fr") == "un coup d&apos; œil ."
    # no aggressive dash splitting unless asked (Moses -a writes @-@)
    assert moses_tokenize("E-Mail", "de") == "E-Mail"
    assert moses_tokenize("E-Mail", "de", aggressive_dash=True) == "E @-@ Mail"


def test_tok_bleu_punctuation():
    # the cat sat on the mat . / the cat sat on a mat .: 1-grams 6/7, 2-grams 4/6 (the-cat cat-sat sat-on mat-.),
    # 3-grams 2/5, 4-grams 1/4; equal lengths, no brevity penalty. Untokenised, "mat." would match nothing.
    score = tok_bleu(["the cat sat on the mat."], ["the cat sat on a mat."], "en")
    assert score["score"] == round(100 * geo(6 / 7, 4 / 6, 2 / 5, 1 / 4), 2) == 48.89
    assert score["signature"].startswith("moses:sacremoses-0.2.0,lang:en,escape:yes,aggressive-dash:no,"
                                         "compound-split:no,norm-punct:no,lc:no|")
    assert "tok:none" in score["signature"] and "case:mixed" in score["signature"]


def test_tok_bleu_quotes():
    # He said &quot; no &quot; . / He said &quot; yes &quot; .: 1-grams 5/6, 2-grams 3/5, 3-grams 1/4,
    # 4-grams 0/3 -> 1/(2*3) by smoothing
    score = tok_bleu(['He said "no".'], ['He said "yes".'], "en")["score"]
    assert score == round(100 * geo(5 / 6, 3 / 5, 1 / 4, 1 / 6), 2) == 37.99


def test_compound_splitting_of_a_german_hyphenated_compound():
    line = moses_tokenize("Ein Boston-Terrier läuft über saftig-grünes Gras.", "de", split_compounds=True)
    assert line == "Ein Boston ##AT##-##AT## Terrier läuft über saftig ##AT##-##AT## grünes Gras ."
    # as the Perl one-liner s{(\S)-(\S)}{$1 ##AT##-##AT## $2}g: matches do not overlap
    assert compound_split("a-b-c") == "a ##AT##-##AT## b-c"
    assert compound_split("Nord - Süd") == "Nord - Süd"


def test_compound_splitting_changes_tok_bleu_as_counted():
    hyps, refs = ["Ein Boston-Terrier läuft."], ["Ein Boston Terrier läuft."]
    # split: Ein Boston ##AT##-##AT## Terrier läuft . (6) / Ein Boston Terrier läuft . (5):
    # 1-grams 5/6, 2-grams 3/5, 3-grams 1/4 (Terrier-läuft-.), 4-grams 0/3 -> 1/6; hypothesis longer: BP 1
    split = tok_bleu(hyps, refs, "de", split_compounds=True)
    assert split["score"] == round(100 * geo(5 / 6, 3 / 5, 1 / 4, 1 / 6), 2) == 37.99
    assert "compound-split:##AT##" in split["signature"]
    # not split: Ein Boston-Terrier läuft . (4): 1-grams 3/4, 2-grams 1/3, 3-grams 0/2 -> 1/4, 4-grams 0/1 -> 1/4;
    # 4 tokens for 5: BP exp(1 - 5/4)
    plain = tok_bleu(hyps, refs, "de")["score"]
    assert plain == round(100 * math.exp(1 - 5 / 4) * geo(3 / 4, 1 / 3, 1 / 4, 1 / 4), 2) == 27.53


def test_bahdanau_all_and_no_unk_columns():
    hyps = ["the cat sat on the mat.", "is here."]  # what sacreBLEU scores: the unknown token dropped
    hyps_with_unk = ["the cat sat on the mat.", "<unk> is here."]
    refs = ["the cat sat on a mat.", "Zorg is here."]
    scores = translation_scores(hyps, refs, dataset="wmt14", pair="en-fr", split="newstest2014",
                                hyps_with_unk=hyps_with_unk, no_unk=[True, False])
    assert scores["no_unk_sentences"] == 1
    assert scores["tok_bleu_no_unk"] == 48.89  # the first sentence alone (test_tok_bleu_punctuation)
    # All, <unk> kept as one token that matches nothing: <unk> is here . / Zorg is here . adds
    # 1-grams 3/4, 2-grams 2/3, 3-grams 1/2, 4-grams 0/1 to the first sentence's counts; 11 tokens each side
    assert scores["tok_bleu"] == round(100 * geo(9 / 11, 6 / 9, 3 / 7, 1 / 5), 2) == 46.5
    assert scores["tok_bleu_unk_kept"] is True
    assert "lang:fr" in scores["tok_bleu_signature"] and "compound-split:no" in scores["tok_bleu_signature"]
    assert {"bleu", "chrf", "bleu_signature", "chrf_signature", "sentences"} <= set(scores)
    assert "lc_tok_bleu" not in scores  # Multi30k only


def test_en_de_uses_compound_splitting_and_keeps_sacrebleu_primary():
    scores = translation_scores(["Ein Boston-Terrier läuft."], ["Ein Boston Terrier läuft."], dataset="wmt14",
                                pair="en-de", split="newstest2014")
    assert scores["tok_bleu"] == 37.99 and "compound-split:##AT##" in scores["tok_bleu_signature"]
    assert scores["bleu"] != scores["tok_bleu"] and scores["bleu_signature"].startswith("nrefs:1|case:mixed")
    assert "tok_bleu_no_unk" not in scores


def test_vocab_decode_keeps_the_unknown_token_as_a_word():
    from reproductions.common.data.vocab import UNK_ID, train_vocab

    vocab = train_vocab(["the cat sat.", "the dog sat."], "word", 20)
    ids = vocab.encode("the zebra sat.")
    assert UNK_ID in ids
    assert vocab.decode(ids) == "the sat."
    assert vocab.decode(ids, keep_unk=True) == "the <unk> sat."
    assert vocab.decode(vocab.encode("zebra sat."), keep_unk=True) == "<unk> sat."


def test_multi30k_lc_tok_bleu_against_the_official_tokenised_references(data_root):
    from reproductions.translation.data.files import load_split, multi30k_tok_lines

    refs = list(load_split("multi30k", "en-de", "test_2016_flickr")["tgt"])
    # the raw references through the dataset's own pipeline give its tokenised references exactly
    scores = translation_scores(refs, refs, dataset="multi30k", pair="en-de", split="test_2016_flickr")
    assert scores["lc_tok_bleu"] == 100.0
    assert scores["lc_tok_refs"] == {"multi30k/task1/tok/test_2016_flickr.lc.norm.tok.de.gz":
                                     "c6a33d39d48f9f510de147651316cd9d918e09ad0219df734a2f16b6baccacc4"}
    assert "norm-punct:yes,lc:yes" in scores["lc_tok_bleu_signature"] and "case:lc" in scores["lc_tok_bleu_signature"]
    # a cased hypothesis scores the same: lowercasing is part of the convention
    upper = [r if "ß" in r else r.upper() for r in refs[:50]]  # "ß".upper() is "SS"
    lowered = translation_scores(upper, refs[:50], dataset="multi30k", pair="en-de", split="test_2016_flickr")
    assert lowered["lc_tok_bleu"] == 100.0 and lowered["bleu"] < 20
    tok, _ = multi30k_tok_lines("val", "fr")
    assert len(tok) == 1014
    blind = translation_scores(["Ein Hund."], ["Ein Hund."], dataset="multi30k", pair="en-de",
                               split="test_2018_flickr")
    assert blind["lc_tok_bleu"] is None and "test_2018_flickr.de" in blind["lc_tok_bleu_unavailable"]


def test_caption_bleu_without_brevity_penalty_is_the_geometric_mean_of_precisions():
    from pycocoevalcap.bleu.bleu import Bleu

    from reproductions.captioning.metrics import coco_bleu

    gts = {0: ["a dog runs on the grass", "a brown dog runs fast"],
           1: ["two cats sleep on a red sofa", "cats on a couch"]}
    res = {0: ["a dog runs"], 1: ["two cats sleep on a sofa"]}
    # clipped matches / guesses over both images: 1-grams 9/9, 2-grams 6/7 (a-sofa misses), 3-grams 4/5,
    # 4-grams 2/3; closest reference lengths 5 (for 3 words) and 7 (for 6): ratio 9/12, BP exp(1 - 12/9)
    out = coco_bleu(gts, res)
    precisions = [9 / 9, 6 / 7, 4 / 5, 2 / 3]
    expected_nobp = [geo(*precisions[: n + 1]) for n in range(4)]
    assert out["bleu_nobp"] == pytest.approx(expected_nobp, rel=1e-6)
    assert out["ratio"] == 0.75 and (out["hyp_len"], out["ref_len"]) == (9, 12)
    assert out["bp"] == pytest.approx(math.exp(1 - 12 / 9), rel=1e-12)
    assert out["bleu"] == pytest.approx([b * math.exp(1 - 12 / 9) for b in expected_nobp], rel=1e-6)
    assert out["bleu"] == Bleu(4).compute_score(gts, res, verbose=0)[0]  # the very numbers pycocoevalcap gives
