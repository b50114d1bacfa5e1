"""The project's one line-splitting rule and the parsing of submitted outputs
(`reproductions.common.submissions`), used by the scorer, the leaderboard, the report and the figures."""

from __future__ import annotations

import json

import pytest

from reproductions.common.errors import AttnreproError
from reproductions.common.submissions import (
    SubmissionError,
    parse_caption_outputs,
    parse_translation_outputs,
    read_hyp_lines,
    split_lines,
    strict_json_loads,
)


def test_split_lines_splits_on_newline_only_and_treats_crlf_and_a_final_newline_as_line_ends():
    assert split_lines("") == []
    assert split_lines("\n") == [""]
    assert split_lines("a\nb") == split_lines("a\nb\n") == split_lines("a\r\nb\r\n") == ["a", "b"]
    assert split_lines("a\n\nb\n\n") == ["a", "", "b", ""]
    tricky = "x\u2028y\x0bz\x1c\x85\u2029 \rw"  # splitlines() would make 6 lines of this one
    assert split_lines(tricky + "\n" + tricky) == [tricky, tricky]


def test_read_hyp_lines_uses_the_same_rule_and_names_a_bad_file(tmp_path):
    path = tmp_path / "hyps.txt"
    path.write_bytes("\ufeffein Hund\u2028läuft\r\nzwei\n".encode())
    assert read_hyp_lines(path) == ["ein Hund\u2028läuft", "zwei"]
    path.write_bytes(b"")
    assert read_hyp_lines(path) == []
    path.write_bytes(b"ok\n\xff\n")
    with pytest.raises(AttnreproError, match=r"hyps\.txt: is not valid UTF-8: byte 0xff at offset 3 \(line 2\)"):
        read_hyp_lines(path)
    with pytest.raises(AttnreproError, match="does not exist"):
        read_hyp_lines(tmp_path / "missing.txt")
    path.write_bytes(b"\n \n\r\n")  # blank lines: refused here as the server refuses them
    with pytest.raises(AttnreproError, match=r"hyps\.txt: is empty \(every line is blank"):
        read_hyp_lines(path)
    with pytest.raises(SubmissionError, match="is empty"):
        parse_translation_outputs(b"\n \n\r\n", 3, "lines")


def test_translation_outputs_count_lines_and_refuse_long_lines_nul_and_bad_utf8():
    assert parse_translation_outputs(b"a\r\nb\r\n", 2, "lines") == ["a", "b"]
    with pytest.raises(SubmissionError, match="has 3 lines; expected 2: one detokenised translation per line "
                                              "of test.en, in order"):
        parse_translation_outputs(b"a\nb\nc\n", 2, "test.en")
    with pytest.raises(SubmissionError, match="line 2 has 5001 characters; the board takes at most 5000"):
        parse_translation_outputs(b"a\n" + b"x" * 5001 + b"\n", 2, "lines")
    with pytest.raises(SubmissionError, match="line 2 has 11 characters; the board takes at most 10"):
        parse_translation_outputs(b"a\n" + b"x" * 11, 2, "lines", max_line_chars=10)
    with pytest.raises(SubmissionError, match=r"NUL character \(line 2\)"):
        parse_translation_outputs(b"a\nb\x00\n", 2, "lines")
    with pytest.raises(SubmissionError, match="is empty"):
        parse_translation_outputs(b" \n", 1, "lines")
    with pytest.raises(SubmissionError, match="not valid UTF-8"):
        parse_translation_outputs(b"\xc3\n", 1, "lines")


IDS = ["1.jpg", "2.jpg"]


def test_caption_outputs_in_both_forms_in_the_boards_order():
    listed = json.dumps([{"image": "2.jpg", "caption": "b\nc"}, {"image": "1.jpg", "caption": "a", "extra": 1}])
    assert parse_caption_outputs(listed.encode(), IDS) == ["a", "b\nc"]
    assert parse_caption_outputs(b'{"2.jpg": "b", "1.jpg": "a"}', IDS) == ["a", "b"]


@pytest.mark.parametrize("outputs, message", [
    (b'{"1.jpg": "a", "2.jpg": "b", "1.jpg": "c"}', "key '1.jpg' appears twice"),
    (b'[{"image": "1.jpg", "caption": "a"}, {"image": "1.jpg", "caption": "b"}]', "image '1.jpg' is captioned twice"),
    (b'{"1.jpg": "a", "3.jpg": "b"}', "1 image ids are not among the board's images, e.g. '3.jpg'"),
    (b'{"1.jpg": "a"}', "1 of the 2 images have no caption, e.g. 2.jpg"),
    (b'{"1.jpg": "a", "2.jpg": 3}', "must be strings"),
    (b'[1, 2]', "must be a JSON list of"),
    (b'{"1.jpg": "a", "2.jpg": NaN}', "NaN is not a JSON number"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"{", "not valid JSON"),
    (json.dumps({"1.jpg": "a", "2.jpg": "word " * 201}).encode(), "has 201 words"),
    (json.dumps({"1.jpg": "a", "2.jpg": "x" * 2001}).encode(), "2001 characters"),
])
def test_bad_caption_outputs_get_one_clear_error(outputs, message):
    with pytest.raises(SubmissionError) as err:
        parse_caption_outputs(outputs, IDS)
    assert message in str(err.value) and str(err.value).startswith("outputs: ")


@pytest.mark.parametrize("text, message", [
    ('{"a": NaN}', "NaN is not a JSON number"), ('{"a": -Infinity}', "-Infinity is not a JSON number"),
    ('{"a": 1e400}', "'1e400' is out of range"), ('{"a": 1, "a": 2}', "key 'a' appears twice"),
    ('{"a": {"b": 1, "b": 1}}', "key 'b' appears twice"),
])
def test_strict_json_refuses_what_json_does_not_mean(text, message):
    with pytest.raises(ValueError, match=message):
        strict_json_loads(text)
    assert strict_json_loads('{"a": [1.5, 2, {"b": null}]}') == {"a": [1.5, 2, {"b": None}]}


def test_a_run_trained_outside_git_is_submitted_without_a_commit(tmp_path):
    import json

    import yaml

    from leaderboards.client import run_submission

    run = tmp_path / "run"
    (run / "hyps").mkdir(parents=True)
    (run / "hyps" / "test_2016_flickr.txt").write_text("ein Hund\n")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"dataset": "multi30k", "pair": "en-de"}}))
    provenance = {"reproduction": "cho2014", "preset": "tiny", "seed": 1, "git": {"commit": "unknown", "dirty": False}}
    (run / "provenance.json").write_text(json.dumps(provenance))
    board = {"name": "b", "task": "translation", "dataset": "multi30k", "pair": "en-de", "split": "test_2016_flickr",
             "segments": 1, "metric": {"columns": ["bleu"]}}
    data, meta = run_submission(run, board)
    assert data == b"ein Hund\n" and meta["commit"] is None
    provenance["git"]["commit"] = "a" * 40
    (run / "provenance.json").write_text(json.dumps(provenance))
    assert run_submission(run, board)[1]["commit"] == "a" * 40
