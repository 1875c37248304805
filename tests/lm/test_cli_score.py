"""``rnnkit score --file`` (one sentence a line, ``-`` for stdin), strict ``--json`` and numbers
past a float's range in score/eval/sample."""

import json

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.data import CharTokenizer, Vocab
from rnnkit.lm.bundle import save_model
from rnnkit.models.language_model import LanguageModel, LMConfig

LINES = ["the cat sat on the mat.", "", "a dog", "x" * 40, "the bird slept on the sofa, "
         "then it flew away over the hills and far away.", "mat the on sat cat the", "q"]


def _model(tmp_path, name="lm", bias=None):
    vocab = Vocab.build(CharTokenizer().tokenize("".join(LINES) + "\n"))
    m = LanguageModel(LMConfig(len(vocab), cell="gru", num_layers=2, hidden_size=24,
                               embed_dim=8), seed=4)
    if bias is not None:
        m.out.params["bias"][:] = bias(vocab)
    out = tmp_path / name
    out.mkdir()
    save_model(out / "model.safetensors", m, vocab, "char")
    return out


def _run(capsys, argv):
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _strict(text):
    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("batch", ["64", "3"])
def test_file_lines_score_exactly_as_one_by_one(tmp_path, capsys, batch):
    d = _model(tmp_path)
    f = tmp_path / "s.txt"
    f.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    code, out, err = _run(capsys, ["score", str(d), "--file", str(f), "--batch", batch, "--json"])
    assert code == 0, err
    together = _strict(out)
    alone = []
    for line in LINES:
        code, out, err = _run(capsys, ["score", str(d), line, "--batch", batch, "--json"])
        assert code == 0, err
        alone += _strict(out)
    # The same numbers, to float32 rounding: a line sits in another row of the (fixed-shape)
    # batch, and OpenBLAS on some CPUs rounds a row differently by its place in the product
    # (bit for bit on an AVX-512 Intel CPU; ~1e-6 apart on an AVX2 AMD one, bench/RESULTS.md).
    assert [r["tokens"] for r in together] == [r["tokens"] for r in alone]
    for a, b in zip(together, alone):
        assert {k: v for k, v in a.items() if not isinstance(v, float) and k != "token_logprobs"} \
            == {k: v for k, v in b.items() if not isinstance(v, float) and k != "token_logprobs"}
        np.testing.assert_allclose(a["token_logprobs"], b["token_logprobs"], rtol=1e-5, atol=1e-6)
        for k, v in a.items():
            if isinstance(v, float):
                np.testing.assert_allclose(v, b[k], rtol=1e-5, err_msg=k)
    code, text_together, _ = _run(capsys, ["score", str(d), "--file", str(f), "--batch", batch])
    text_alone = "".join(_run(capsys, ["score", str(d), line, "--batch", batch])[1]
                         for line in LINES)
    assert text_together == text_alone and text_together.count("\n") == 2 * len(LINES)


def test_dash_reads_standard_input(tmp_path, capsys, monkeypatch):
    d = _model(tmp_path)
    f = tmp_path / "in.txt"
    f.write_text("\n".join(LINES[:3]) + "\n", encoding="utf-8")
    stdin = open(f, encoding="utf-8")  # a real file: the reader checks what stdin is
    monkeypatch.setattr("sys.stdin", stdin)
    code, out, err = _run(capsys, ["score", str(d), "--file", "-", "--json"])
    assert code == 0, err
    assert [r["text"] for r in _strict(out)] == LINES[:3]
    code, direct, _ = _run(capsys, ["score", str(d), *LINES[:3], "--json"])
    assert _strict(direct) == _strict(out)
    stdin.close()


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: TEXT (or --file FILE)"),
    (["a", "--file", "x.txt"], "not both"),
    (["--file", "missing.txt"], "no such file"),
    (["a", "--batch", "0"], "--batch must be a positive integer"),
])
def test_score_mistakes_are_one_line(tmp_path, capsys, argv, message):
    d = _model(tmp_path)
    code, out, err = _run(capsys, ["score", str(d), *argv])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_overflowing_perplexity_is_inf_in_text_and_null_in_json(tmp_path, capsys):
    # <eos> takes all the mass: any other token costs ~1e4 nats, so exp(mean) overflows.
    def bias(vocab):
        b = np.zeros(len(vocab), np.float32)
        b[vocab.eos_id] = 1e4
        return b

    d = _model(tmp_path, bias=bias)
    code, out, err = _run(capsys, ["score", str(d), "the cat", "--json"])
    assert code == 0, err
    (r,) = _strict(out)
    assert r["perplexity"] is None and r["logprob"] < -1e4
    code, out, err = _run(capsys, ["score", str(d), "the cat"])
    assert code == 0 and "perplexity inf" in out
    f = tmp_path / "e.txt"
    f.write_text("the cat sat.\n", encoding="utf-8")
    code, out, err = _run(capsys, ["eval", str(d), str(f), "--json"])
    assert code == 0, err
    assert _strict(out)["perplexity"] is None
    code, out, err = _run(capsys, ["eval", str(d), str(f)])
    assert code == 0 and "perplexity inf" in out


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf", "-inf"])
def test_temperature_must_be_a_positive_finite_number(tmp_path, capsys, value):
    d = _model(tmp_path)
    code, out, err = _run(capsys, ["sample", str(d), f"--temperature={value}"])
    assert code == 2 and out == "" and "temperature must be > 0" in err


def test_tiny_temperature_and_top_p_sample_greedily(tmp_path, capsys):
    d = _model(tmp_path)
    code, greedy, err = _run(capsys, ["sample", str(d), "--greedy", "--length", "12", "--json"])
    assert code == 0, err
    for extra in (["--temperature", "1e-310"], ["--top-p", "1e-13"]):
        code, out, err = _run(capsys, ["sample", str(d), "--length", "12", "--seed", "1",
                                       "--json", "--no-stop", *extra])
        assert code == 0 and err == "", err
        greedy_text = _strict(greedy)["samples"][0]
        assert _strict(out)["samples"][0].startswith(greedy_text.rstrip("\n"))
