"""PyTorch export: the generated nn.Module (in memory through ``to_torch``, and from the
written ``model.py`` + ``model.safetensors``) gives rnnkit's outputs within 1e-5 (float32)
and 1e-9 (float64) for every model kind x cell (rnn tanh/relu, gru both forms, lstm) x
uni/bi x 1-2 layers with ragged lengths, and continues generation from its own state."""

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _exportcheck import numpy_backend, set_cell  # noqa: E402
from rnnkit.export import export, to_torch  # noqa: E402
from rnnkit.layers.basic import log_softmax  # noqa: E402
from rnnkit.models import (ClassifierConfig, ConditionalGenerator, GeneratorConfig,  # noqa: E402
                           Seq2Seq, Seq2SeqConfig, SequenceClassifier, SequenceTagger,
                           TaggerConfig)
from rnnkit.models.language_model import LanguageModel, LMConfig  # noqa: E402

CELLS = [("rnn", "tanh", True), ("rnn", "relu", True), ("gru", "tanh", True),
         ("gru", "tanh", False), ("lstm", "tanh", True)]
CELL_IDS = ["rnn_tanh", "rnn_relu", "gru", "gru_notes", "lstm"]
TOL = {"float32": 1e-5, "float64": 1e-9}
LENGTHS = np.array([6, 2, 5, 1])
DTYPES = ["float32", "float64"]


def close(a, b, tol):
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    b = np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = float(np.max(np.abs(a - b)))
    assert err < tol, f"max abs difference {err:.3g} >= {tol:g}"


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def state_rows(state, rows):
    if isinstance(state, tuple):
        return tuple(s[:, rows] for s in state)
    return state[:, rows]


def make_lm(cell, layers, dtype):
    mode, nonlin, reset_after = cell
    cfg = LMConfig(vocab_size=9, cell=mode, num_layers=layers, hidden_size=5, embed_dim=4,
                   nonlinearity=nonlin, reset_after=reset_after, dtype=dtype)
    return numpy_backend(LanguageModel(cfg, seed=2))


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_language_model(cell, layers, dtype):
    model = make_lm(cell, layers, dtype)
    net = to_torch(model)
    tol = TOL[dtype]
    rng = np.random.default_rng(4)
    N, T = len(LENGTHS), int(LENGTHS.max())
    ids = rng.integers(0, 9, (N, T))
    lstm = cell[0] == "lstm"
    h0 = (rng.standard_normal((layers, N, 5)) * 0.5).astype(dtype)
    c0 = (rng.standard_normal((layers, N, 5)) * 0.5).astype(dtype)
    state = (h0, c0) if lstm else h0
    with torch.no_grad():
        got = net(t(ids), t(LENGTHS), t(h0), t(c0)) if lstm else net(t(ids), t(LENGTHS), t(h0))
    for i, n in enumerate(LENGTHS):
        lp, fin = model.log_probs(ids[i:i + 1, :n], state_rows(state, [i]))
        close(got[0][i, :n], lp[0], tol)
        close(got[1][:, i], (fin[0] if lstm else fin)[:, 0], tol)
        if lstm:
            close(got[2][:, i], fin[1][:, 0], tol)
    # generation continued one token at a time from the module's own state
    cur = got[1:]
    extra = rng.integers(0, 9, (N, 2))
    for k in range(2):
        with torch.no_grad():
            step = net(t(extra[:, k:k + 1]), torch.ones(N, dtype=torch.int64), *cur)
        for i, n in enumerate(LENGTHS):
            full = np.concatenate([ids[i, :n], extra[i, :k + 1]])[None]
            lp, _ = model.log_probs(full, state_rows(state, [i]))
            close(step[0][i, 0], lp[0, -1], tol)
        cur = step[1:]


TASK_CASES = [(c, layers, bi) for c in CELLS for layers, bi in ((1, False), (2, True))]


def task_ids(seed=6, V=11):
    return np.random.default_rng(seed).integers(0, V, (len(LENGTHS), int(LENGTHS.max())))


@pytest.mark.parametrize("cell,layers,bi", TASK_CASES)
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_classifier(cell, layers, bi, pooling):
    dtype = "float64" if layers == 2 else "float32"
    cfg = ClassifierConfig(vocab_size=11, num_classes=3, embed_dim=4, hidden_size=5,
                           num_layers=layers, cell=cell[0], bidirectional=bi, pooling=pooling,
                           dtype=dtype)
    model = numpy_backend(SequenceClassifier(cfg))
    set_cell(model.rnn, cell[1], cell[2])
    ids = task_ids()
    with torch.no_grad():
        got = to_torch(model)(t(ids), t(LENGTHS))
    close(got, log_softmax(model.forward(ids, LENGTHS)[0]), TOL[dtype])


@pytest.mark.parametrize("cell,layers,bi", TASK_CASES)
def test_tagger(cell, layers, bi):
    dtype = "float64" if layers == 2 else "float32"
    cfg = TaggerConfig(vocab_size=11, num_tags=4, embed_dim=4, hidden_size=5,
                       num_layers=layers, cell=cell[0], bidirectional=bi, dtype=dtype)
    model = numpy_backend(SequenceTagger(cfg))
    set_cell(model.rnn, cell[1], cell[2])
    ids = task_ids()
    with torch.no_grad():
        got = to_torch(model)(t(ids), t(LENGTHS))
    want = log_softmax(model.forward(ids, LENGTHS)[0])
    for i, n in enumerate(LENGTHS):
        close(got[i, :n], want[i, :n], TOL[dtype])


@pytest.mark.parametrize("cell,layers,bi", TASK_CASES)
def test_seq2seq(cell, layers, bi):
    dtype = "float64" if layers == 2 else "float32"
    cfg = Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=8, embed_dim=4, hidden_size=5,
                        num_layers=layers, cell=cell[0], bidirectional=bi, dtype=dtype)
    model = numpy_backend(Seq2Seq(cfg))
    for layer in (model.encoder, model.decoder):
        set_cell(layer, cell[1], cell[2])
    net = to_torch(model)
    src = task_ids()
    tin = np.random.default_rng(7).integers(0, 8, (len(LENGTHS), 4))
    tlen = np.array([4, 1, 3, 2])
    with torch.no_grad():
        state = net.encode(t(src), t(LENGTHS))
        teacher = net.decode(t(tin), t(tlen), *state)[0]
        steps, cur = [], state
        for k in range(tin.shape[1]):
            lp, *cur = net.decode(t(tin[:, k:k + 1]), torch.ones(len(tin), dtype=torch.int64),
                                  *cur)
            steps.append(lp[:, 0])
    want_state, _ = model.encode(src, LENGTHS)
    lstm = cell[0] == "lstm"
    close(state[0], want_state[0] if lstm else want_state, TOL[dtype])
    want = log_softmax(model.forward(src, LENGTHS, tin, tlen)[0])
    for i, n in enumerate(tlen):
        close(teacher[i, :n], want[i, :n], TOL[dtype])
    close(torch.stack(steps, 1), log_softmax(model.forward(src, LENGTHS, tin)[0]), TOL[dtype])


@pytest.mark.parametrize("cell", [CELLS[1], CELLS[3], CELLS[4]], ids=["rnn_relu", "gru_notes",
                                                                      "lstm"])
@pytest.mark.parametrize("cond", ["classes", "vectors"])
def test_generator(cell, cond):
    kw = {"num_classes": 3} if cond == "classes" else {"cond_dim": 2}
    model = numpy_backend(ConditionalGenerator(GeneratorConfig(
        vocab_size=8, embed_dim=4, hidden_size=5, num_layers=2, cell=cell[0],
        dtype="float64", **kw)))
    set_cell(model.rnn, cell[1], cell[2])
    rng = np.random.default_rng(8)
    c = np.array([0, 2, 1, 2]) if cond == "classes" else rng.standard_normal((4, 2))
    tin = rng.integers(0, 8, (4, 3))
    net = to_torch(model)
    with torch.no_grad():
        state = net.initial_state(t(c))
        lp = net.decode(t(tin), torch.full((4,), 3, dtype=torch.int64), *state)[0]
    want_state, _ = model.initial_state(c)
    close(state[0], want_state[0] if cell[0] == "lstm" else want_state, TOL["float64"])
    close(lp, log_softmax(model.forward(c, tin)[0]), TOL["float64"])


def test_written_files_load_without_rnnkit(tmp_path):
    """model.py + model.safetensors on disk build the same module as to_torch."""
    import json

    import safetensors

    model = make_lm(CELLS[3], 2, "float32")  # the notes' GRU: the file's own module
    out = tmp_path / "torch_export"
    info = {"vocab": ["<pad>", "<unk>", "<eos>"] + list("abcdef"), "level": "char"}
    paths = export(model, out, "torch", info=info)
    assert sorted(p.name for p in paths) == ["model.py", "model.safetensors"]
    source = (out / "model.py").read_text()
    assert "import rnnkit" not in source and "from rnnkit" not in source
    spec = importlib.util.spec_from_file_location("exported_lm", out / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.load()
    assert set(net.state_dict()) == set(model.params)
    with safetensors.safe_open(out / "model.safetensors", "np") as f:
        meta = f.metadata()
    assert json.loads(meta["rnnkit.vocab"]) == info["vocab"]
    assert meta["rnnkit.kind"] == "language_model"
    ids = task_ids(V=9)
    with torch.no_grad():
        a = net(t(ids), t(LENGTHS))[0]
        b = to_torch(model)(t(ids), t(LENGTHS))[0]
    assert torch.equal(a, b)
    lp, _ = model.log_probs(ids[:1])
    close(a[0], lp[0], TOL["float32"])


def test_to_torch_without_torch_names_the_install(monkeypatch):
    import sys

    from rnnkit.export import MissingDependency

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependency, match="pip install torch"):
        to_torch(make_lm(CELLS[0], 1, "float32"))
