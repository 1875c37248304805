"""``rnnkit explain``: the numbers on the page (scores as ``rnnkit score``, top-5 guesses,
unit activations, gate saturation), escaping, word level, and bad input."""

import json
import math
from html.parser import HTMLParser

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.data.tokenize import get_tokenizer
from rnnkit.data.vocab import Vocab
from rnnkit.lm.bundle import load_model, save_model
from rnnkit.lm.explain import (BINS, _select_units, explain, parse_units, render_html,
                               surprisal_bin)
from rnnkit.lm.score import score_sentences
from rnnkit.models.language_model import LanguageModel, LMConfig

TEXT = ('He said "the cat (a grey one) sat on the mat" and left.\n'
        "The dog ran after the cat, (twice) and then slept.\n") * 5
EVIL = 'He said "<script>alert(1)</script>" & left'


def make_lm(path, cell="lstm", level="char", layers=2, hidden=10, seed=0):
    tok = get_tokenizer(level)
    vocab = Vocab.build(tok.tokenize(TEXT + "<>&'/1"))
    m = LanguageModel(LMConfig(len(vocab), cell=cell, num_layers=layers, hidden_size=hidden,
                               embed_dim=6), seed=seed)
    save_model(path, m, vocab, level)
    return path


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return make_lm(tmp_path_factory.mktemp("ex") / "lstm")


class Tokens(HTMLParser):
    """Collects the token spans of the #text section: data-token and inline style."""

    def __init__(self):
        super().__init__()
        self.section = None
        self.tokens = []
        self.scripts = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and a.get("id") in ("text", "units"):
            self.section = a["id"]
        if tag == "script":
            self.scripts.append(a.get("type"))
        if tag == "span" and self.section == "text" and "tok" in a.get("class", "").split():
            self.tokens.append(a)


def parse(page):
    p = Tokens()
    p.feed(page)
    return p


def test_scores_are_what_rnnkit_score_reports(lm, capsys):
    texts = ["the cat sat on the mat", 'He said "hi" (twice).']
    capsys.readouterr()
    assert main(["score", str(lm), *texts, "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    report = explain(load_model(lm), texts)
    for line, s, text in zip(report["lines"], scored, texts):
        assert line["logprob"] == s["logprob"] and line["perplexity"] == s["perplexity"]
        assert [t["logprob"] for t in line["tokens"]] == s["token_logprobs"]
        assert [t["token"] for t in line["tokens"]] == s["tokens"]
        assert line["bits_per_char"] == pytest.approx(-s["logprob"] / math.log(2) / (len(text) + 1),
                                                      rel=1e-12)
    page = render_html(report)
    data = json.loads(page.split('id="rnnkit-data">')[1].split("</script>")[0])
    assert [x["logprob"] for x in data["lines"]] == [s["logprob"] for s in scored]
    assert f'{scored[0]["logprob"]:.4f}' in page and f'{scored[1]["perplexity"]:.3f}' in page


def test_top5_are_the_models_most_probable_next_tokens(lm):
    b = load_model(lm)
    text = "the cat sat"
    report = explain(b, [text])
    ids = b.vocab.encode(b.tokenizer.tokenize(text))
    lp, _ = b.model.log_probs(np.concatenate([[b.vocab.eos_id], ids[:-1]])[None])
    p = np.exp(lp[0].astype(np.float64))
    for j, tok in enumerate(report["lines"][0]["tokens"]):
        order = np.argsort(-p[j])[:5]
        assert [t for t, _ in tok["top"]] == [b.vocab.token(int(k)) for k in order]
        np.testing.assert_allclose([q for _, q in tok["top"]], p[j, order], rtol=1e-6)
        assert tok["top"][0][1] >= tok["top"][-1][1]


def test_page_escapes_the_text_and_colours_every_token(lm):
    report = explain(load_model(lm), [EVIL])
    page = render_html(report, title="<b>x</b>")
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>x</b>" not in page
    p = parse(page)
    assert p.scripts == ["application/json"]  # the data block only: nothing runs
    assert [t["data-token"] for t in p.tokens] == list(EVIL) + ["<eos>"]
    for t, tok in zip(p.tokens, report["lines"][0]["tokens"]):
        bits = -tok["logprob"] / math.log(2)
        assert f"background:{BINS[surprisal_bin(bits)][1]}" in t["style"]
        assert t["tabindex"] == "0" and "top-5" in t["title"]
    assert 'id="legend"' in page and all(bg in page for _, bg, _ in BINS)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page


def test_surprisal_bins():
    assert [surprisal_bin(b) for b in (0, 0.99, 1, 3.9, 4, 6, 8.99, 9, 40)] == [0, 0, 1, 2, 3, 4, 4, 5, 5]


def test_chosen_units_are_the_hidden_states_torch_computes(lm):
    torch = pytest.importorskip("torch")
    b = load_model(lm)
    text = 'a "b" (c)'
    report = explain(b, [text], units="1:3,c2,7")
    assert [(u["layer"], u["kind"], u["unit"]) for u in report["units"]] == [(1, "h", 3), (2, "c", 2), (2, "h", 7)]
    # Torch: each layer an nn.LSTM of its own so every layer's h and c are visible.
    p = {k: np.asarray(v, dtype=np.float64) for k, v in b.model.params.items()}
    ids = b.vocab.encode(b.tokenizer.tokenize(text))
    x = torch.from_numpy(p["embed.weight"][np.concatenate([[b.vocab.eos_id], ids])][None])
    hs, cs = [], []
    for layer in range(2):
        m = torch.nn.LSTM(x.shape[-1], 10, batch_first=True, dtype=torch.float64)
        with torch.no_grad():
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(m, f"{n}_l0").copy_(torch.from_numpy(p[f"rnn.{n}_l{layer}"]))
        h = torch.zeros(1, 1, 10, dtype=torch.float64)
        c = torch.zeros(1, 1, 10, dtype=torch.float64)
        out, cc = [], []
        for t in range(x.shape[1]):  # step by step to see every c
            o, (h, c) = m(x[:, t:t + 1], (h, c))
            out.append(o[0, 0].detach().numpy())
            cc.append(c[0, 0].detach().numpy())
        hs.append(np.array(out))
        cs.append(np.array(cc))
        x = torch.from_numpy(np.array(out))[None]
    # Values after reading each token (the first input is the start <eos>).
    np.testing.assert_allclose(report["units"][0]["values"][0], hs[0][1:, 3], atol=1e-6)
    np.testing.assert_allclose(report["units"][1]["values"][0], cs[1][1:, 2], atol=1e-6)
    np.testing.assert_allclose(report["units"][2]["values"][0], hs[1][1:, 7], atol=1e-6)


def test_units_found_automatically_follow_the_features():
    # Synthetic activations: unit 4 of layer 1 is exactly "inside quotes", unit 1 of layer 2
    # counts the position; the rest is noise.
    rng = np.random.default_rng(0)
    tokens = list('ab "cd" e (fg) h')
    from rnnkit.lm.explain import _features

    f = _features(tokens + [""])
    T = len(tokens) + 1
    h1 = rng.normal(0, 0.05, (T, 6))
    h1[:, 4] = f[:, 0]
    h2 = rng.normal(0, 0.05, (T, 6))
    h2[:, 1] = -0.1 * f[:, 2]
    acts = [[{"h": h1, "c": None}, {"h": h2, "c": None}]]
    rows = _select_units(acts, [f], None, 3, 2, "gru")
    got = {(r["layer"], r["unit"]): (r["feature"], r["r"]) for r in rows}
    assert got[(1, 4)] == ("inside quotes", pytest.approx(1.0))
    assert got[(2, 1)] == ("position in line", pytest.approx(-1.0))
    assert len(rows) == 3 and any(r["feature"] == "inside parentheses" for r in rows)
    np.testing.assert_allclose(got and rows[0]["values"][0], acts[0][0]["h"][:, 4])


def test_features():
    from rnnkit.lm.explain import _features

    f = _features(list('a"b(c)"d'))
    assert f[:, 0].tolist() == [0, 1, 1, 1, 1, 1, 0, 0]  # inside quotes after each token
    assert f[:, 1].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]  # inside parentheses
    assert f[:, 2].tolist() == list(range(8))


@pytest.mark.parametrize("bias, low, high", [(20.0, 0.0, 1.0), (-20.0, 1.0, 0.0)])
def test_gate_saturation_counts(tmp_path, bias, low, high):
    path = make_lm(tmp_path / "m", cell="lstm", layers=1)
    b = load_model(path)
    for k in ("rnn.bias_ih_l0", "rnn.bias_hh_l0"):
        b.model.params[k][:] = 0
    b.model.params["rnn.bias_ih_l0"][10:20] = bias  # the forget gate block (i, f, g, o)
    report = explain(b, ["the cat"])
    g = {x["gate"]: x for x in report["gates"]}
    assert set(g) == {"input i", "forget f", "output o"}
    assert g["forget f"]["low"] == low and g["forget f"]["high"] == high
    page = render_html(report)
    assert "<svg" in page and "forget f" in page


def test_rnn_and_gru_gate_rows(tmp_path):
    rep = explain(load_model(make_lm(tmp_path / "g", cell="gru", layers=2)), ["the cat"])
    assert [(x["layer"], x["gate"]) for x in rep["gates"]] == [
        (1, "reset r"), (1, "update z"), (2, "reset r"), (2, "update z")]
    rep = explain(load_model(make_lm(tmp_path / "r", cell="rnn", layers=1)), ["the cat"])
    assert len(rep["gates"]) == 1 and "state h" in rep["gates"][0]["gate"]
    assert "no gates" in render_html(rep)


def test_word_level_model(tmp_path, capsys):
    path = make_lm(tmp_path / "w", cell="gru", level="word")
    text = 'the cat sat on the unseenword "the mat"'
    capsys.readouterr()
    assert main(["score", str(path), text, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)[0]
    rep = explain(load_model(path), [text])
    assert rep["lines"][0]["logprob"] == s["logprob"] and rep["lines"][0]["unknown"] == 1
    p = parse(render_html(rep))
    assert [t["data-token"] for t in p.tokens] == text.split() + ["<eos>"]
    assert sum("unk" in t["class"].split() for t in p.tokens) == 1


def test_parse_units():
    assert parse_units("12, 2:c3,1:h0", 2, 16, "lstm") == [(1, "h", 12), (1, "c", 3), (0, "h", 0)]
    for spec, needle in [("16", "out of range"), ("3:1", "layer must be"), ("c1", None),
                         ("x", "expected"), ("1,,2", "empty item")]:
        with pytest.raises(ValueError) as e:
            parse_units(spec, 2, 16, "gru" if spec == "c1" else "lstm")
        assert needle is None or needle in str(e.value)


# ---- the command and bad input --------------------------------------------------------------
def test_command_writes_the_page(lm, tmp_path, capsys):
    f = tmp_path / "in.txt"
    f.write_text("the cat\n\n(sat) here\n")
    out = tmp_path / "p.html"
    assert main(["explain", str(lm), "one line", "--file", str(f), "--html", str(out),
                 "--top", "4"]) == 0
    page = out.read_text()
    assert page.startswith("<!doctype html>") and page.count('class="line" data-line') == 3
    assert page.count('class="unit"') == 4
    assert main(["explain", str(lm), "again", "--html", str(out)]) == 2  # no --force
    assert "again" not in out.read_text()
    assert main(["explain", str(lm), "again", "--html", str(out), "--force"]) == 0


def _task_model(path):
    from rnnkit.checkpoint import save_checkpoint

    path.mkdir()
    save_checkpoint(path / "model.safetensors", {"out.weight": np.zeros((2, 2), np.float32)},
                    {"kind": "rnnkit.classify", "config": {}})
    return path


@pytest.mark.parametrize("case, needle", [
    ("task", "not a language model"),
    ("empty", "empty"),
    ("blank", "empty"),
    ("units", "out of range"),
    ("cellunits", "only an LSTM"),
    ("nodir", "no such directory"),
    ("isdir", "is a directory"),
    ("top", "--top"),
])
def test_bad_input_one_line_exit_2(lm, tmp_path, capsys, case, needle):
    out = tmp_path / "p.html"
    args = [str(lm), "the cat", "--html", str(out)]
    if case == "task":
        args[0] = str(_task_model(tmp_path / "task"))
    elif case == "empty":
        args[1] = ""
    elif case == "blank":
        args[1] = "  \n "
    elif case == "units":
        args += ["--units", "10"]
    elif case == "cellunits":
        args[0] = str(make_lm(tmp_path / "gru", cell="gru"))
        args += ["--units", "c1"]
    elif case == "nodir":
        (tmp_path / "file").write_text("x")
        args[3] = str(tmp_path / "file" / "p.html")
    elif case == "isdir":
        args[3] = str(tmp_path)
    elif case == "top":
        args += ["--top", "0"]
    capsys.readouterr()
    rc = main(["explain", *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


@pytest.mark.parametrize("head", [{"tie_embeddings": True, "embed_dim": 10},
                                  {"softmax": "adaptive", "cutoffs": [10, 20], "div_value": 2.0}])
def test_tied_and_adaptive_output_layers(tmp_path, capsys, head):
    tok = get_tokenizer("word")
    vocab = Vocab.build(tok.tokenize(TEXT))
    cfg = dict(cell="lstm", num_layers=1, hidden_size=10, embed_dim=6)
    cfg.update(head)
    save_model(tmp_path / "m", LanguageModel(LMConfig(len(vocab), **cfg), seed=0), vocab, "word")
    text = "the cat sat on the mat"
    capsys.readouterr()
    assert main(["score", str(tmp_path / "m"), text, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)[0]
    rep = explain(load_model(tmp_path / "m"), [text])
    assert rep["lines"][0]["logprob"] == s["logprob"]
    probs = [p for _, p in rep["lines"][0]["tokens"][0]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert "<svg" in render_html(rep)
