"""Reliability, in process: untrusted model files, numerical faults, bad input through the API,
fuzzing of every reader of outside bytes, and flat memory over 10,000 training steps.

The subprocess side (SIGKILL / Ctrl-C / the real ``rnnkit`` command) is in
``test_reliability_cli.py``.
"""

import gc
import io
import json
import math
import os
import pickle
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnnkit.cli import main
from rnnkit.data import CharTokenizer, Vocab, WordTokenizer, read_text
from rnnkit.lm import generate
from rnnkit.lm.bundle import load_model
from rnnkit.lm.score import score_sentences
from rnnkit.lm.train import Trainer, TrainingError, TrainOptions
from rnnkit.models.language_model import LanguageModel, LMConfig
from rnnkit.optim import Adam
from rnnkit.progress import read_metrics

TEXT = "".join(f"the {a} {v} on the {b}.\n" for a in ("cat", "dog", "bird")
               for v in ("sat", "ran") for b in ("mat", "rug", "sofa")) * 6
QUIET = io.StringIO  # progress lines go nowhere


def tiny(out, corpus, **kw):
    base = dict(out=str(out), corpus=[str(corpus)], cell="lstm", layers=1, hidden=8, embed=4,
                seq_len=8, batch=4, steps=20, lr=1e-2, eval_every=10, log_every=10,
                checkpoint_every=5, seed=7)
    base.update(kw)
    return TrainOptions(**base)


lm_options = tiny  # the run of the ``trained`` fixture (tests/conftest.py)


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- hostile model files

class _Marker:
    """Unpickling this creates a file: the proof that a loader ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _header(data: bytes):
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def _with_header(data: bytes, edit) -> bytes:
    header, rest = _header(data)
    edit(header)
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    return len(hb).to_bytes(8, "little") + hb + rest


def _edit_meta_raw(data: bytes, edit) -> bytes:
    """Change the meta inside the header but keep the old checksum: a naive hand edit."""
    def go(h):
        meta = json.loads(h["__metadata__"]["rnnkit.meta"])
        edit(meta)
        h["__metadata__"]["rnnkit.meta"] = json.dumps(meta)
    return _with_header(data, go)


def _forge(good_path, edit_arrays=None, edit_meta=None) -> bytes:
    """A file with a *valid* checksum but edited content: the checksum is no signature, so
    the loader must still check that the content makes sense."""
    arrays, meta = load_checkpoint(good_path)
    if edit_arrays:
        edit_arrays(arrays)
    if edit_meta:
        edit_meta(meta)
    tmp = good_path.parent / "forged.tmp"
    save_checkpoint(tmp, arrays, meta)
    data = tmp.read_bytes()
    tmp.unlink()
    return data


def _flip(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 0x40
    return bytes(b)


def _pickle_bytes(marker, protocol):
    return pickle.dumps({"embed.weight": _Marker(marker)}, protocol=protocol)


def _npz_bytes(marker):
    buf = io.BytesIO()
    np.save(buf, np.array([_Marker(marker)], dtype=object), allow_pickle=True)
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("embed.weight.npy", buf.getvalue())
    return z.getvalue()


def _npy_bytes(marker):
    buf = io.BytesIO()
    np.save(buf, np.array([_Marker(marker)], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _torch_zip_bytes(marker):
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("archive/data.pkl", pickle.dumps(_Marker(marker)))
        f.writestr("archive/version", "3\n")
    return z.getvalue()


def _safetensors_then_pickle(marker):
    payload = pickle.dumps(_Marker(marker))
    hdr = json.dumps({"__metadata__": {"rnnkit.format": "rnnkit.checkpoint",
                                       "rnnkit.format_version": "1", "rnnkit.meta": "{}",
                                       "rnnkit.sha256": "0" * 64},
                      "w": {"dtype": "U8", "shape": [len(payload)],
                            "data_offsets": [0, len(payload)]}}).encode()
    return len(hdr).to_bytes(8, "little") + hdr + payload


def _set_config(key, value):
    return lambda m: m["config"].__setitem__(key, value)


# name -> (make bytes from (good model path, good bytes, marker path), expected message regex)
BAD_MODEL_FILES = {
    "truncated-half": (lambda p, d, m: d[: len(d) // 2], "truncated|corrupted"),
    "truncated-7-bytes": (lambda p, d, m: d[:7], "truncated"),
    "truncated-last-byte": (lambda p, d, m: d[:-1], "corrupted"),
    "empty-file": (lambda p, d, m: b"", "truncated"),
    "flipped-weight-byte": (lambda p, d, m: _flip(d, len(d) - 9), "checksum"),
    "edited-config": (lambda p, d, m: _edit_meta_raw(d, _set_config("hidden_size", 9)),
                             "checksum"),
    "edited-vocab": (lambda p, d, m: _edit_meta_raw(d, lambda x: x["vocab"]["tokens"].reverse()),
                     "checksum"),
    "format-version-2": (lambda p, d, m: _with_header(
        d, lambda h: h["__metadata__"].__setitem__("rnnkit.format_version", "2")),
        "format_version 2 is not supported"),
    "format-version-missing": (lambda p, d, m: _with_header(
        d, lambda h: h["__metadata__"].pop("rnnkit.format_version")), "bad format_version"),
    "foreign-safetensors": (lambda p, d, m: _with_header(d, lambda h: h.pop("__metadata__")),
                            "not an rnnkit checkpoint"),
    "pickle-protocol-2": (lambda p, d, m: _pickle_bytes(m, 2), "Python pickle"),
    "pickle-protocol-4": (lambda p, d, m: _pickle_bytes(m, 4), "Python pickle"),
    "pickle-protocol-5": (lambda p, d, m: _pickle_bytes(m, 5), "Python pickle"),
    "pickle-protocol-0": (lambda p, d, m: _pickle_bytes(m, 0), "not a checkpoint|not an rnnkit"),
    "npz-with-pickle": (lambda p, d, m: _npz_bytes(m), "zip archive"),
    "npy-with-pickle": (lambda p, d, m: _npy_bytes(m), "NumPy .npy"),
    "torch-zip-with-pickle": (lambda p, d, m: _torch_zip_bytes(m), "zip archive"),
    "safetensors-header-then-pickle": (lambda p, d, m: _safetensors_then_pickle(m),
                                       "corrupted|dtype|checksum"),
    "text-file": (lambda p, d, m: b"this is not a model\n" * 10, "not a checkpoint|not an rnnkit"),
    "training-checkpoint": (lambda p, d, m: (p.parent / "checkpoint.safetensors").read_bytes(),
                            "not a language model"),
    # Valid checksums, content that does not fit:
    "forged-huge-hidden": (lambda p, d, m: _forge(p, edit_meta=_set_config("hidden_size", 10**9)),
                           "must have shape"),
    "forged-huge-layers": (lambda p, d, m: _forge(p, edit_meta=_set_config("num_layers", 10**9)),
                           "layers"),
    "forged-huge-vocab": (lambda p, d, m: _forge(p, edit_meta=_set_config("vocab_size", 10**9)),
                          "vocabulary has"),
    "forged-negative-hidden": (lambda p, d, m: _forge(p, edit_meta=_set_config("hidden_size", -4)),
                               "hidden_size must be a positive integer"),
    "forged-unknown-cell": (lambda p, d, m: _forge(p, edit_meta=_set_config("cell", "tcn")),
                            "unknown cell"),
    "forged-unknown-key": (lambda p, d, m: _forge(p, edit_meta=_set_config("evil", 1)),
                           "unknown keys"),
    "forged-nan-weights": (lambda p, d, m: _forge(
        p, edit_arrays=lambda a: a["out.bias"].__setitem__(0, np.nan)), "NaN or Inf"),
    "forged-missing-array": (lambda p, d, m: _forge(p, edit_arrays=lambda a: a.pop("out.bias")),
                             "missing"),
    "forged-wrong-shape": (lambda p, d, m: _forge(
        p, edit_arrays=lambda a: a.__setitem__("out.bias", np.zeros(3, np.float32))),
        "shape"),
    "forged-duplicate-token": (lambda p, d, m: _forge(
        p, edit_meta=lambda x: x["vocab"]["tokens"].__setitem__(4, x["vocab"]["tokens"][3])),
        "appears twice"),
    "forged-level": (lambda p, d, m: _forge(p, edit_meta=lambda x: x.__setitem__("level", "byte")),
                     "level"),
    "forged-kind": (lambda p, d, m: _forge(p, edit_meta=lambda x: x.__setitem__("kind", "rnnkit.tag")),
                    "not a language model"),
}


@pytest.fixture
def bad_model(request, trained, tmp_path):
    """A model directory holding one kind of bad model.safetensors, and the marker path that
    a pickle payload inside it would create."""
    make, match = BAD_MODEL_FILES[request.param]
    marker = tmp_path / "PAYLOAD_RAN"
    good = trained / "model.safetensors"
    data = make(good, good.read_bytes(), marker)
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.safetensors").write_bytes(data)
    return d, match, marker


@pytest.mark.parametrize("bad_model", sorted(BAD_MODEL_FILES), indirect=True)
def test_bad_model_file_is_refused_by_the_api(bad_model):
    d, match, marker = bad_model
    with pytest.raises(ValueError, match=match) as info:
        load_model(d)
    msg = str(info.value)
    assert "\n" not in msg and "model.safetensors" in msg
    assert not marker.exists()


@pytest.mark.parametrize("bad_model", sorted(BAD_MODEL_FILES), indirect=True)
@pytest.mark.parametrize("command", ["sample", "score", "eval", "classify"])
def test_bad_model_file_is_one_cli_line(bad_model, command, capsys, corpus):
    d, match, marker = bad_model
    argv = {"sample": ["sample", str(d), "--length", "5"],
            "score": ["score", str(d), "the cat"],
            "eval": ["eval", str(d), str(corpus)],
            "classify": ["classify", "predict", str(d), str(corpus)]}[command]
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    line = one_line_error(err)
    assert line.startswith(f"rnnkit {command}: error: ") and "model.safetensors" in line
    assert out == ""
    assert not marker.exists()


def test_the_pickle_payloads_are_live(tmp_path):
    """The control for the tests above: each payload does run when unpickled."""
    for protocol in (0, 2, 4, 5):
        marker = tmp_path / f"m{protocol}"
        pickle.loads(_pickle_bytes(marker, protocol))["embed.weight"].close()
        assert marker.exists()
    marker = tmp_path / "npz"
    with np.load(io.BytesIO(_npz_bytes(marker)), allow_pickle=True) as z:
        z["embed.weight"][0].close()
    assert marker.exists()


def test_npz_loaded_by_numpy_without_pickle_is_refused_too(tmp_path):
    """Even numpy itself, as this project uses it (allow_pickle=False), refuses the payload."""
    marker = tmp_path / "m"
    with np.load(io.BytesIO(_npz_bytes(marker)), allow_pickle=False) as z:
        with pytest.raises(ValueError, match="allow_pickle"):
            z["embed.weight"]
    assert not marker.exists()


def test_forged_huge_model_is_refused_before_allocating(trained, tmp_path):
    # hidden_size 10**9 would ask for ~10**18 floats; refusal must come from a shape check.
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.safetensors").write_bytes(
        _forge(trained / "model.safetensors",
               edit_meta=lambda m: m["config"].update(hidden_size=10**9, embed_dim=10**9)))
    with pytest.raises(CheckpointError, match="must have shape"):
        load_model(d)


def test_model_file_and_directory_mistakes(trained, tmp_path):
    with pytest.raises(ValueError, match="no such model directory or file"):
        load_model(tmp_path / "nope")
    with pytest.raises(ValueError, match="no model.safetensors in this directory"):
        load_model(tmp_path)
    (tmp_path / "d" / "model.safetensors").mkdir(parents=True)
    with pytest.raises(ValueError, match="is a directory"):
        load_model(tmp_path / "d")
    # The good model loads as a file or a directory.
    assert load_model(trained).model.config.hidden_size == 8
    assert load_model(trained / "model.safetensors").vocab == load_model(trained).vocab


# --------------------------------------------------------------------------- fuzzing

def _mutate(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for kind, pos, val in edits:
        pos %= max(len(b), 1)
        if kind == 0 and b:
            b[pos] ^= val or 1
        elif kind == 1:
            b.insert(pos, val)
        elif kind == 2 and b:
            del b[pos]
        else:
            del b[pos:]
    return bytes(b)


@pytest.fixture(scope="module")
def good_model_bytes(trained):
    return (trained / "model.safetensors").read_bytes()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 255)),
                      min_size=1, max_size=4))
def test_fuzz_model_file_bytes(edits, good_model_bytes, tmp_path):
    d = tmp_path / "fuzz"
    d.mkdir(exist_ok=True)
    data = _mutate(good_model_bytes, edits)
    (d / "model.safetensors").write_bytes(data)
    try:
        b = load_model(d)
    except ValueError as e:  # CheckpointError is a ValueError
        assert "\n" not in str(e)
    else:  # only an edit that changes nothing meaningful (header padding, say) may load
        assert b.model.config.hidden_size == 8


_JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                          st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
_JSON = st.recursive(_JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from([("config", "vocab_size"), ("config", "hidden_size"),
                             ("config", "embed_dim"), ("config", "num_layers"),
                             ("config", "cell"), ("config", "dropout"), ("config", "dtype"),
                             ("config", "nonlinearity"), ("config", "reset_after"),
                             ("vocab", "tokens"), ("vocab", "format_version"), ("level",),
                             ("tokenizer_options",), ("info",), ("kind",), ("config",),
                             ("vocab",)]),
       value=_JSON)
def test_fuzz_forged_model_meta(path, value, trained, tmp_path):
    """Any JSON in any field of a model file with a valid checksum: a clean ValueError or a
    working model, never another exception (or a giant allocation)."""
    def edit(meta):
        node = meta
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    d = tmp_path / "forged"
    d.mkdir(exist_ok=True)
    (d / "model.safetensors").write_bytes(_forge(trained / "model.safetensors", edit_meta=edit))
    try:
        b = load_model(d)
    except ValueError as e:
        assert "\n" not in str(e)
    else:
        lp, _ = b.model.log_probs(np.array([[b.vocab.eos_id, 3]]))
        assert np.isfinite(lp).all()


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")),
                 st.binary().map(lambda b: b.decode("latin-1"))))
def test_fuzz_tokenizers_with_any_text(text):
    normal = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = normal.split("\n")
    if lines[-1] == "":
        lines.pop()
    char = CharTokenizer().tokenize(text)
    assert char.count("<eos>") == len(lines)
    assert CharTokenizer().detokenize(char) == "".join(line + "\n" for line in lines)
    for tok in (WordTokenizer(), WordTokenizer(split_punct=True)):
        words = tok.tokenize(text)
        assert all(isinstance(w, str) and w and not any(c.isspace() for c in w) for w in words)
        again = tok.tokenize(tok.detokenize(words))
        assert again == words
    vocab = Vocab.build(char)
    assert vocab.decode(vocab.encode(char)) == char
    assert Vocab.from_json(json.loads(json.dumps(vocab.to_json()))) == vocab


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.binary(max_size=64), st.integers(), st.none(), st.lists(st.text(max_size=3))))
def test_fuzz_tokenizers_refuse_non_text(value):
    for tok in (CharTokenizer(), WordTokenizer()):
        with pytest.raises(TypeError, match="text must be a str"):
            tok.tokenize(value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    _JSON,
    st.fixed_dictionaries({"format": st.just("rnnkit.vocab"), "format_version": _JSON_SCALARS,
                           "tokens": _JSON}),
    st.fixed_dictionaries({"format": st.just("rnnkit.vocab"), "format_version": st.just(1),
                           "tokens": st.lists(st.one_of(st.text(max_size=3), _JSON_SCALARS),
                                              max_size=8)
                           .map(lambda t: ["<pad>", "<unk>", "<eos>", *t])}),
))
def test_fuzz_vocab_from_json(obj):
    try:
        v = Vocab.from_json(obj)
    except ValueError as e:
        assert "\n" not in str(e)
    else:
        assert v.tokens == obj["tokens"] and len(set(v.tokens)) == len(v)


_GOOD_VOCAB = json.dumps(Vocab.build(list("hello world")).to_json()).encode()


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200),
                 st.lists(st.tuples(st.integers(0, 3), st.integers(0, 500), st.integers(0, 255)),
                          min_size=1, max_size=3).map(lambda e: _mutate(_GOOD_VOCAB, e))))
def test_fuzz_vocab_bytes(data):
    try:
        v = Vocab.from_json(json.loads(data))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        assert isinstance(e, ValueError)
    else:
        assert isinstance(v, Vocab)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200),
                      st.text(max_size=60).map(lambda t: t.encode("utf-8")),
                      st.tuples(st.text(max_size=30), st.binary(max_size=4), st.text(max_size=30))
                      .map(lambda t: t[0].encode() + t[1] + t[2].encode())))
def test_fuzz_read_text(data, tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_bytes(data)
    try:
        text = read_text(p)
    except ValueError as e:
        msg = str(e)
        assert "\n" not in msg and str(p) in msg
    else:
        decoded = data.decode("utf-8")  # it accepted: the bytes are UTF-8, with text in them
        assert text == decoded.removeprefix("\ufeff") and text.strip() and "\x00" not in text


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=12))
def test_fuzz_prime_and_score_text(text, trained):
    b = load_model(trained)
    try:
        [s] = generate.sample(b.model, b.vocab, b.tokenizer, text, length=3, seed=0)
    except ValueError as e:
        assert "outside the model's vocabulary" in str(e) and "\n" not in str(e)
        assert any(c not in b.vocab for c in text if c not in "\r\n")
    else:
        assert s.startswith(text)
    try:
        [r] = score_sentences(b.model, b.vocab, b.tokenizer, [text])
    except ValueError as e:
        assert "line break" in str(e)
    else:
        assert math.isfinite(r["logprob"]) and r["logprob"] <= 0


# --------------------------------------------------------------------------- numerical faults

def _inject(monkeypatch, bad_steps, where="loss"):
    """Make training steps ``bad_steps`` (1-based) see a NaN loss or an Inf gradient."""
    real = LanguageModel.loss_and_grads
    calls = {"n": 0}

    def faulty(self, *args, **kwargs):
        loss, grads, state = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] in bad_steps:
            if where == "loss":
                loss = float("nan")
            else:
                grads = dict(grads)
                g = grads["rnn.weight_hh_l0"].copy()
                g[0, 0] = np.inf
                grads["rnn.weight_hh_l0"] = g
        return loss, grads, state

    monkeypatch.setattr(LanguageModel, "loss_and_grads", faulty)


def _params_of(path):
    arrays, meta = load_checkpoint(path)
    return {k: v for k, v in arrays.items() if k.startswith("param/")}, meta


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_nonfinite_stops_and_keeps_last_good_checkpoint(where, monkeypatch, corpus, tmp_path):
    _inject(monkeypatch, {13}, where)
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match="non-finite loss or gradients at step 13") as info:
        Trainer(tiny(out, corpus, steps=30), stream=QUIET()).run()
    assert "\n" not in str(info.value) and "last good checkpoint" in str(info.value)
    params, meta = _params_of(out / "checkpoint.safetensors")
    assert meta["step"] == 10  # checkpoint_every 5: the one before the fault
    assert all(np.isfinite(v).all() for v in params.values())
    assert np.isfinite(load_model(out).model.params["out.weight"]).all()
    # The kept checkpoint resumes (the fault is gone) to the end.
    monkeypatch.undo()
    summary = Trainer(tiny(out, corpus, steps=30), resume=True, stream=QUIET()).run()
    assert summary["start_step"] == 10 and summary["steps"] == 30


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_nonfinite_skip_skips_the_step(where, monkeypatch, corpus, tmp_path):
    _inject(monkeypatch, {3, 4, 10, 20}, where)  # 10 and 20 are checkpoint steps
    out = tmp_path / "run"
    summary = Trainer(tiny(out, corpus, steps=20, on_nonfinite="skip"), stream=QUIET()).run()
    assert summary["skipped_steps"] == 4 and summary["steps"] == 20
    params, meta = _params_of(out / "checkpoint.safetensors")
    assert meta["step"] == 20 and meta["skipped"] == 4  # a skipped last step still saves
    assert all(np.isfinite(v).all() for v in params.values())
    assert np.isfinite(load_model(out).model.params["out.weight"]).all()


def test_skipped_step_leaves_weights_untouched(monkeypatch, corpus, tmp_path):
    """Skipping step 3 of 3 ends with the weights after step 2."""
    ref = tmp_path / "ref"
    Trainer(tiny(ref, corpus, steps=2, checkpoint_every=1), stream=QUIET()).run()
    _inject(monkeypatch, {3})
    run = tmp_path / "run"
    Trainer(tiny(run, corpus, steps=3, checkpoint_every=1, on_nonfinite="skip"),
            stream=QUIET()).run()
    a, _ = _params_of(ref / "checkpoint.safetensors")
    b, meta = _params_of(run / "checkpoint.safetensors")
    assert meta["step"] == 3
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_update_that_overflows_the_weights_stops(monkeypatch, corpus, tmp_path):
    real = Adam.step
    calls = {"n": 0}

    def overflowing(self, params, grads):
        real(self, params, grads)
        calls["n"] += 1
        if calls["n"] == 7:
            params["out.bias"][0] = np.inf

    monkeypatch.setattr(Adam, "step", overflowing)
    out = tmp_path / "run"
    for mode in ("stop", "skip"):
        with pytest.raises(TrainingError, match="update at step 7 made the weights NaN or Inf"):
            Trainer(tiny(out, corpus, steps=20, on_nonfinite=mode), force=True,
                    stream=QUIET()).run()
        calls["n"] = 0
        params, meta = _params_of(out / "checkpoint.safetensors")
        assert meta["step"] == 5 and all(np.isfinite(v).all() for v in params.values())


# --------------------------------------------------------------------------- resume robustness

@pytest.fixture
def interrupted(corpus, tmp_path):
    out = tmp_path / "run"
    Trainer(tiny(out, corpus, steps=10), stream=QUIET()).run()
    return out


@pytest.mark.parametrize("edit, match", [
    (lambda a, m: m.pop("optimizer"), "does not fit this run"),
    (lambda a, m: m["run"].__setitem__("options", [1, 2]), "holds no run options"),
    (lambda a, m: m.__setitem__("kind", "language_model"), "is not a training checkpoint"),
    (lambda a, m: m.__setitem__("step", -3), "step must be >= 0"),
    (lambda a, m: m.__setitem__("world_size", 3), r"trained on 3 process\(es\)"),
    (lambda a, m: a.__setitem__("state/h", np.zeros((1, 3, 8), np.float32)), "carried state"),
    (lambda a, m: a.__setitem__("param/out.bias", np.full_like(a["param/out.bias"], np.nan)),
     "NaN or Inf"),
    (lambda a, m: a.pop("param/out.bias"), "missing"),
    (lambda a, m: m["run"]["model"].__setitem__("vocab", {"tokens": 3}), "bad vocabulary"),
])
def test_resume_refuses_a_forged_checkpoint(edit, match, interrupted, corpus):
    path = interrupted / "checkpoint.safetensors"
    arrays, meta = load_checkpoint(path)
    edit(arrays, meta)
    save_checkpoint(path, arrays, meta)  # a valid checksum over bad content
    with pytest.raises(ValueError, match=match) as info:
        Trainer(tiny(interrupted, corpus, steps=20), resume=True, stream=QUIET()).run()
    assert "\n" not in str(info.value)


def test_resume_accepts_the_same_corpus_under_another_name(interrupted, corpus, tmp_path,
                                                          monkeypatch):
    """--resume checks the corpus by content: a relative path from another directory (or a
    copy) is the same corpus; a changed one, or a changed validation file, is refused."""
    monkeypatch.chdir(corpus.parent)
    summary = Trainer(tiny(interrupted, corpus.name, steps=15), resume=True,
                      stream=QUIET()).run()
    assert summary["start_step"] == 10 and summary["steps"] == 15
    edited = tmp_path / "edited.txt"
    edited.write_text(TEXT.replace("cat", "cow"), encoding="utf-8")
    with pytest.raises(ValueError, match="the corpus differs"):
        Trainer(tiny(interrupted, edited, steps=20), resume=True, stream=QUIET()).run()


def test_resume_refuses_another_validation_file(corpus, tmp_path):
    val = tmp_path / "val.txt"
    val.write_text("the cat sat on the rug.\n", encoding="utf-8")
    out = tmp_path / "run"
    Trainer(tiny(out, corpus, steps=5, val=str(val)), stream=QUIET()).run()
    val.write_text("the dog sat on the mat.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="the validation text differs"):
        Trainer(tiny(out, corpus, steps=10, val=str(val)), resume=True, stream=QUIET()).run()


_GOOD_STATE = {}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["step", "run", "optimizer", "scheduler", "source", "world_size",
                            "best_val", "skipped", "history", "kind"]),
       value=_JSON)
def test_fuzz_forged_training_state(key, value, interrupted, corpus):
    """Any JSON in any field of a training checkpoint with a valid checksum: --resume gives a
    clean ValueError/TypeError or resumes, never another exception."""
    path = interrupted / "checkpoint.safetensors"
    good = _GOOD_STATE.setdefault(path, path.read_bytes())  # the fixture lives for all examples
    path.write_bytes(good)
    arrays, meta = load_checkpoint(path)
    meta[key] = value
    save_checkpoint(path, arrays, meta)
    try:
        Trainer(tiny(interrupted, corpus, steps=10), resume=True, stream=QUIET()).run()
    except (ValueError, TypeError) as e:
        assert "\n" not in str(e)


def test_resume_refuses_a_corrupted_checkpoint(interrupted, corpus):
    path = interrupted / "checkpoint.safetensors"
    path.write_bytes(_flip(path.read_bytes(), path.stat().st_size - 5))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        Trainer(tiny(interrupted, corpus, steps=20), resume=True, stream=QUIET()).run()


def test_resume_cleans_what_a_kill_leaves(interrupted, corpus):
    """A SIGKILL can leave temporaries of the atomic writes and a torn metrics line."""
    stale = [interrupted / ".checkpoint.safetensors.k1ll3d.tmp",
             interrupted / ".model.safetensors.abc123.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    with open(interrupted / "metrics.jsonl", "a") as f:
        f.write('{"step": 11, "train_lo')
    Trainer(tiny(interrupted, corpus, steps=20), resume=True, stream=QUIET()).run()
    assert not any(p.exists() for p in stale)
    steps = [r["step"] for r in read_metrics(interrupted / "metrics.jsonl")]
    assert steps == [10, 20]
    assert (interrupted / "loss.png").exists()


# --------------------------------------------------------------------------- API bad input

def _opts(**kw):
    base = dict(out="unused", corpus=["unused.txt"])
    base.update(kw)
    return TrainOptions(**base)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(cell="tcn"), ValueError, "unknown cell 'tcn'"),
    (dict(hidden=0), ValueError, "hidden must be >= 1"),
    (dict(hidden=-8), ValueError, "hidden must be >= 1"),
    (dict(embed=0), ValueError, "embed must be >= 1"),
    (dict(layers=0), ValueError, "layers must be >= 1"),
    (dict(steps=0), ValueError, "steps must be >= 1"),
    (dict(steps=-1), ValueError, "steps must be >= 1"),
    (dict(seq_len=0), ValueError, "seq-len must be >= 1"),
    (dict(batch=0), ValueError, "batch must be >= 1"),
    (dict(hidden=8.5), TypeError, "hidden must be an integer"),
    (dict(hidden="16"), TypeError, "hidden must be an integer"),
    (dict(dropout=1.0), ValueError, r"dropout must lie in \[0, 1\)"),
    (dict(dropout=-0.1), ValueError, r"dropout must lie in \[0, 1\)"),
    (dict(dropout=float("nan")), ValueError, r"dropout must lie in \[0, 1\)"),
    (dict(lr=0.0), ValueError, "lr must be > 0"),
    (dict(lr=-1e-3), ValueError, "lr must be > 0"),
    (dict(lr=float("inf")), ValueError, "lr must be > 0"),
    (dict(lr="0.1"), TypeError, "lr must be a number"),
    (dict(clip=-1.0), ValueError, "clip must be >= 0"),
    (dict(clip="5"), TypeError, "clip must be a number"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),
    (dict(patience=-1), ValueError, "patience must be >= 0"),
    (dict(corpus="train.txt"), TypeError, "corpus must be a list of file paths"),
    (dict(on_nonfinite="ignore"), ValueError, "on-nonfinite must be stop or skip"),
    (dict(level="byte"), ValueError, "unknown level"),
    (dict(optimizer="rmsprop"), ValueError, "unknown optimizer"),
    (dict(val_fraction=1.0), ValueError, "val-fraction"),
    (dict(max_vocab=2), ValueError, "max-vocab must be >= 4"),
    (dict(dtype="float16"), ValueError, "dtype must be float32 or float64"),
])
def test_train_options_refused(kw, exc, match):
    with pytest.raises(exc, match=match):
        Trainer(_opts(**kw))


@pytest.mark.parametrize("content, match", [
    (None, "no such file"),
    (b"", "the file is empty"),
    (b" \n\t\n", "only whitespace"),
    (b"ab\x00cd" * 20, "NUL byte at offset 2"),
    ("caf\u00e9 au lait\n".encode("latin-1") * 20, "not valid UTF-8: byte 0xe9 at offset 3"),
    (b"\xff\xfeh\x00i\x00", "looks like UTF-16 text"),
    ("the cat sat.\nthe dog ran.\n".encode(), "too short for one batch"),
])
def test_bad_corpus_refused_before_anything_is_written(content, match, tmp_path):
    corpus = tmp_path / "corpus.txt"
    if content is not None:
        corpus.write_bytes(content)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=match) as info:
        Trainer(tiny(out, corpus, batch=8, seq_len=20), stream=QUIET()).run()
    assert "\n" not in str(info.value)
    assert not out.exists()


def test_corpus_that_is_a_directory_or_out_that_is_a_file(corpus, tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        Trainer(tiny(tmp_path / "run", tmp_path), stream=QUIET()).run()
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        Trainer(tiny(f, corpus), stream=QUIET()).run()


@pytest.mark.parametrize("kw, exc, match", [
    (dict(temperature=0), ValueError, "temperature must be > 0"),
    (dict(temperature=-0.5), ValueError, "temperature must be > 0"),
    (dict(temperature=float("nan")), ValueError, "temperature must be > 0"),
    (dict(temperature="hot"), TypeError, "temperature must be a number"),
    (dict(top_p=0.0), ValueError, r"top-p must lie in \(0, 1\]"),
    (dict(top_p=1.01), ValueError, r"top-p must lie in \(0, 1\]"),
    (dict(top_p=-0.5), ValueError, r"top-p must lie in \(0, 1\]"),
    (dict(top_p="x"), TypeError, "top-p must be a number"),
    (dict(top_k=0), ValueError, "top-k must be >= 1"),
    (dict(length=-1), ValueError, "length must be >= 0"),
    (dict(length=2.5), TypeError, "length must be an integer"),
    (dict(num=0), ValueError, "num must be >= 1"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(prime="the Zebra"), ValueError, "outside the model's vocabulary: 'Z'"),
    (dict(prime=b"the"), TypeError, "prime must be a str"),
])
def test_sampling_arguments_refused(kw, exc, match, trained):
    b = load_model(trained)
    with pytest.raises(exc, match=match):
        generate.sample(b.model, b.vocab, b.tokenizer, **kw)


def test_greedy_beam_score_arguments_refused(trained):
    b = load_model(trained)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        generate.greedy(b.model, b.vocab, b.tokenizer, "Q")
    with pytest.raises(ValueError, match="length must be >= 0"):
        generate.greedy(b.model, b.vocab, b.tokenizer, "", -2)
    with pytest.raises(ValueError, match="beam width must be >= 1"):
        generate.beam_search(b.model, b.vocab, b.tokenizer, "", 0)
    with pytest.raises(ValueError, match="length_penalty must be finite"):
        generate.beam_search(b.model, b.vocab, b.tokenizer, "", 2, 5, length_penalty=math.inf)
    with pytest.raises(TypeError, match="list of str"):
        score_sentences(b.model, b.vocab, b.tokenizer, "the cat")
    with pytest.raises(ValueError, match="line break"):
        score_sentences(b.model, b.vocab, b.tokenizer, ["the\ncat"])


@pytest.mark.parametrize("call, match", [
    (lambda m: m.log_probs(np.array([[1, 99]])), r"token ids must lie in \[0, 7\), got 99"),
    (lambda m: m.log_probs(np.array([[1, -1]])), r"token ids must lie in \[0, 7\), got -1"),
    (lambda m: m.log_probs(np.array([[1.0, 2.0]])), "token ids must be integers"),
    (lambda m: m.log_probs(np.array([1, 2])), r"2 dimensions \(N, T\)"),
    (lambda m: m.log_probs(np.zeros((2, 0), np.int64)), "at least one sequence and one step"),
    (lambda m: m.loss_and_grads(np.ones((2, 3), np.int64), np.ones((2, 4), np.int64)),
     r"targets must have shape \(2, 3\)"),
    (lambda m: m.loss_and_grads(np.ones((2, 3), np.int64), np.full((2, 3), 7)),
     r"targets must lie in \[0, 7\)"),
    (lambda m: m.log_probs(np.ones((2, 3), np.int64), state=np.zeros((1, 2, 5), np.float32)),
     "state"),
    (lambda m: m.load_params({"embed.weight": np.zeros((7, 4))}), "missing"),
])
def test_language_model_array_mistakes(call, match):
    m = LanguageModel(LMConfig(vocab_size=7, cell="gru", num_layers=1, hidden_size=6,
                               embed_dim=4), seed=0)
    with pytest.raises(ValueError, match=match):
        call(m)


def test_task_model_array_mistakes():
    from rnnkit.models import ClassifierConfig, SequenceClassifier, SequenceTagger, TaggerConfig
    clf = SequenceClassifier(ClassifierConfig(vocab_size=6, num_classes=3, embed_dim=4,
                                              hidden_size=5))
    ids = np.ones((2, 4), np.int64)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 4\]"):
        clf.predict(ids, np.array([4, 5]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 4\]"):
        clf.predict(ids, np.array([0, 2]))
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        clf.predict(ids, np.array([4]))
    with pytest.raises(ValueError, match="2-D integer array"):
        clf.predict(np.ones(4, np.int64))
    tagger = SequenceTagger(TaggerConfig(vocab_size=6, num_tags=3, embed_dim=4, hidden_size=5))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 4\]"):
        tagger.predict(ids, np.array([9, 1]))


def test_malformed_tsv_names_the_line(tmp_path):
    from rnnkit.cli_tasks import read_tsv
    p = tmp_path / "data.tsv"
    p.write_text("good\tA\n\nbad line without a tab\nok\tB\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"data.tsv: line 3: expected two fields"):
        read_tsv(p, "classify")
    p.write_text("the cat\tD N\nthe dog barks\tD N\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: 3 token"):
        read_tsv(p, "tag", ("word", "word"))


# --------------------------------------------------------------------------- long runs

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_memory_stays_flat_over_10000_steps(corpus, tmp_path, monkeypatch):
    """10,000 real training steps (evaluation, logging, checkpoints included): after warm-up
    neither the process' resident memory nor the number of live Python objects grows.

    Three gauges: RSS catches large leaks (arrays' data), ``sys.getallocatedblocks`` any
    object kept per step (an ndarray header is one), the gc's list container leaks.  A leak
    of one object a step would add 8,000 blocks between the samples compared."""
    import rnnkit.lm.train as train_mod

    samples = {}

    class Sampling(train_mod.ProgressReporter):
        def update(self, step, loss=None, tokens=0):
            super().update(step, loss, tokens)
            if step % 1000 == 0:
                gc.collect()
                samples[step] = (_rss_bytes(), len(gc.get_objects()), sys.getallocatedblocks())

    monkeypatch.setattr(train_mod, "ProgressReporter", Sampling)
    opts = tiny(tmp_path / "long", corpus, hidden=8, embed=4, seq_len=5, batch=2, steps=10_000,
                eval_every=1000, log_every=500, checkpoint_every=1000)
    summary = Trainer(opts, stream=QUIET()).run()
    assert summary["steps"] == 10_000 and len(samples) == 10
    rss0, objs0, blocks0 = samples[2000]
    rss1, objs1, blocks1 = samples[10_000]
    assert rss1 - rss0 < 2 * 2**20, {k: v[0] >> 10 for k, v in samples.items()}
    assert objs1 - objs0 < 200, {k: v[1] for k, v in samples.items()}
    assert blocks1 - blocks0 < 2000, {k: v[2] for k, v in samples.items()}
