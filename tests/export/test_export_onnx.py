"""ONNX export checked by running it: ONNX Runtime's outputs equal rnnkit's (float32, 1e-5) for
every model kind x cell (rnn tanh/relu, gru both forms, lstm) x uni/bi x 1-2 layers with
ragged lengths (rows shorter than the longest), generation continued step by step from the
exported state, and onnx.checker on every graph.

ONNX Runtime's CPU kernels run LSTM/GRU/RNN in float32 only ("does not support double
yet"), so float64 graphs are checked at 1e-9 with onnx's reference evaluator instead, taught
``sequence_lens`` (each row run over its own length) and ONNX's Relu; on float32 stacks it is
checked against ONNX Runtime too, so both runtimes agree on the ragged semantics.  rnnkit's
side runs the reference NumPy backend (the ground truth).
"""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from _exportcheck import numpy_backend, reference, run, session, set_cell  # noqa: E402

from rnnkit.export import _meta  # noqa: E402
from rnnkit.export._onnx_graph import Graph, recurrent_stack  # noqa: E402
from rnnkit.export.onnx_format import onnx_models  # noqa: E402
from rnnkit.layers.basic import log_softmax  # noqa: E402
from rnnkit.layers.recurrent import RecurrentLayer  # noqa: E402
from rnnkit.models import (ClassifierConfig, ConditionalGenerator, GeneratorConfig,  # noqa: E402
                           Seq2Seq, Seq2SeqConfig, SequenceClassifier, SequenceTagger,
                           TaggerConfig)
from rnnkit.models.language_model import LanguageModel, LMConfig  # noqa: E402

CELLS = [("rnn", "tanh", True), ("rnn", "relu", True), ("gru", "tanh", True),
         ("gru", "tanh", False), ("lstm", "tanh", True)]
CELL_IDS = ["rnn_tanh", "rnn_relu", "gru", "gru_notes", "lstm"]
TOL32 = 1e-5
TOL64 = 1e-9
LENGTHS = np.array([6, 2, 5, 1])  # the first row is the longest; the others end early


def close(a, b, tol):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert err < tol, f"max abs difference {err:.3g} >= {tol:g}"


def state_rows(state, rows):
    if isinstance(state, tuple):
        return tuple(s[:, rows] for s in state)
    return state[:, rows]


# ---- the recurrent stack alone: every cell, direction count, depth and merge ------------
def layer_graph(layer):
    """x (N, T, D), lengths, h0[, c0] -> y (N, T, F), h_n[, c_n] around recurrent_stack."""
    from onnx import TensorProto

    g = Graph("stack", layer.dtype)
    L, K, H = layer.num_layers, layer.num_directions, layer.hidden_size
    x = g.input("x", g.elem, ["N", "T", layer.input_size])
    g.input("lengths", TensorProto.INT64, ["N"])
    seq = g.op("Cast", ["lengths"], to=TensorProto.INT32)
    h0 = g.input("h0", g.elem, [L * K, "N", H])
    c0 = g.input("c0", g.elem, [L * K, "N", H]) if layer.mode == "lstm" else None
    y, h_n, c_n, _ = recurrent_stack(g, layer, g.op("Transpose", [x], perm=[1, 0, 2]), seq,
                                     "rnn", h0, c0)
    g.output(g.op("Transpose", [y], perm=[1, 0, 2], outputs=["y"]), g.elem,
             ["N", "T", layer.output_size])
    g.output(g.identity(h_n, "h_n"), g.elem, [L * K, "N", H])
    if c_n is not None:
        g.output(g.identity(c_n, "c_n"), g.elem, [L * K, "N", H])
    return g.model({})


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("layers,bi,merge", [(1, False, "concat"), (2, False, "concat"),
                                             (1, True, "concat"), (2, True, "concat"),
                                             (2, True, "sum"), (2, True, "mean"),
                                             (2, True, "product")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_recurrent_stack(cell, layers, bi, merge, dtype):
    mode, nonlin, reset_after = cell
    layer = RecurrentLayer(3, 4, layers, mode=mode, bidirectional=bi, merge_mode=merge,
                           nonlinearity=nonlin, reset_after=reset_after, dtype=dtype, seed=3,
                           backend="numpy")
    rng = np.random.default_rng(1)
    N, T = len(LENGTHS), int(LENGTHS.max())
    x = rng.standard_normal((N, T, 3)).astype(dtype)
    h0 = rng.standard_normal(layer.state_shape(N)).astype(dtype) * 0.5
    c0 = rng.standard_normal(layer.state_shape(N)).astype(dtype) * 0.5
    state = (h0, c0) if mode == "lstm" else h0
    lengths = LENGTHS
    out, fin, _ = layer.forward(x, lengths, state)
    feeds = {"x": x, "lengths": lengths.astype(np.int64), "h0": h0}
    if mode == "lstm":
        feeds["c0"] = c0
    model = layer_graph(layer)
    got = run(model, feeds, dtype)
    tol = TOL32 if dtype == np.float32 else TOL64
    close(got["y"], out, tol)  # padded steps included: zeros on both sides
    if dtype == np.float32:  # the float64 runtime's ragged semantics are ONNX Runtime's
        ref = dict(zip(got, reference(model).run(None, feeds)))
        for k in got:
            close(ref[k], got[k], tol)
    if mode == "lstm":
        close(got["h_n"], fin[0], tol)
        close(got["c_n"], fin[1], tol)
    else:
        close(got["h_n"], fin, tol)


# ---- language model ----------------------------------------------------------------------
def make_lm(cell, layers, dtype="float32"):
    mode, nonlin, reset_after = cell
    cfg = LMConfig(vocab_size=9, cell=mode, num_layers=layers, hidden_size=5, embed_dim=4,
                   nonlinearity=nonlin, reset_after=reset_after, dtype=dtype)
    return numpy_backend(LanguageModel(cfg, seed=2))


def lm_feeds(model, ids, lengths, state):
    feeds = {"ids": ids.astype(np.int64), "lengths": lengths.astype(np.int64)}
    if isinstance(state, tuple):
        feeds["h0"], feeds["c0"] = state
    else:
        feeds["h0"] = state
    return feeds


def exported_state(got):
    return (got["h_n"], got["c_n"]) if "c_n" in got else got["h_n"]


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("layers", [1, 2])
def test_language_model_scoring_and_generation(cell, layers):
    model = make_lm(cell, layers)
    proto = onnx_models(model, "language_model", _meta.metadata(model, "language_model", {}))
    proto = proto["model.onnx"]
    sess = session(proto)
    names = [o.name for o in proto.graph.output]
    rng = np.random.default_rng(4)
    N, T = len(LENGTHS), int(LENGTHS.max())
    ids = rng.integers(0, 9, (N, T))
    h0 = (rng.standard_normal((layers, N, 5)) * 0.5).astype(np.float32)
    state = (h0, (rng.standard_normal((layers, N, 5)) * 0.5).astype(np.float32)) \
        if cell[0] == "lstm" else h0
    got = dict(zip(names, sess.run(None, lm_feeds(model, ids, LENGTHS, state))))
    assert got["log_probs"].shape == (N, T, 9)
    for i, n in enumerate(LENGTHS):  # each row against rnnkit on that row alone
        lp, fin = model.log_probs(ids[i:i + 1, :n], state_rows(state, [i]))
        close(got["log_probs"][i, :n], lp[0], TOL32)
        if cell[0] == "lstm":
            close(got["h_n"][:, i], fin[0][:, 0], TOL32)
            close(got["c_n"][:, i], fin[1][:, 0], TOL32)
        else:
            close(got["h_n"][:, i], fin[:, 0], TOL32)
    # generation: continue every row one token at a time from the exported state
    cur = exported_state(got)
    extra = rng.integers(0, 9, (N, 3))
    for k in range(3):
        step = dict(zip(names, sess.run(None, lm_feeds(model, extra[:, k:k + 1],
                                                      np.ones(N, np.int64), cur))))
        for i, n in enumerate(LENGTHS):
            full = np.concatenate([ids[i, :n], extra[i, :k + 1]])[None]
            lp, _ = model.log_probs(full, state_rows(state, [i]))
            close(step["log_probs"][i, 0], lp[0, -1], TOL32)
        cur = exported_state(step)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_language_model_float64(cell):
    model = make_lm(cell, 2, "float64")
    proto = onnx_models(model, "language_model", {})["model.onnx"]
    assert proto.graph.input[2].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 9, (len(LENGTHS), int(LENGTHS.max())))
    state = model.zero_state(len(LENGTHS))
    got = run(proto, lm_feeds(model, ids, LENGTHS, state), np.float64)
    for i, n in enumerate(LENGTHS):
        lp, fin = model.log_probs(ids[i:i + 1, :n])
        close(got["log_probs"][i, :n], lp[0], TOL64)
        close(got["h_n"][:, i], (fin[0] if cell[0] == "lstm" else fin)[:, 0], TOL64)


# ---- classifier and tagger ---------------------------------------------------------------
TASK_CASES = [(c, layers, bi) for c in CELLS for layers, bi in ((1, False), (2, True))] + \
    [(CELLS[4], 2, False), (CELLS[2], 1, True)]


def task_ids(N=len(LENGTHS), T=int(LENGTHS.max()), V=11, seed=6):
    return np.random.default_rng(seed).integers(0, V, (N, T))


POOLING_CASES = [(*case, "last") for case in TASK_CASES] + [
    (CELLS[4], 2, True, "mean"), (CELLS[4], 2, True, "max"), (CELLS[3], 1, False, "mean"),
    (CELLS[1], 1, True, "max")]


@pytest.mark.parametrize("cell,layers,bi,pooling", POOLING_CASES)
def test_classifier(cell, layers, bi, pooling):
    cfg = ClassifierConfig(vocab_size=11, num_classes=3, embed_dim=4, hidden_size=5,
                           num_layers=layers, cell=cell[0], bidirectional=bi, pooling=pooling)
    model = numpy_backend(SequenceClassifier(cfg))
    set_cell(model.rnn, cell[1], cell[2])
    proto = onnx_models(model, "classifier", {})["model.onnx"]
    ids = task_ids()
    got = run(proto, {"ids": ids, "lengths": LENGTHS}, np.float32)
    close(got["log_probs"], log_softmax(model.forward(ids, LENGTHS)[0]), TOL32)


@pytest.mark.parametrize("cell,layers,bi", TASK_CASES)
def test_tagger(cell, layers, bi):
    cfg = TaggerConfig(vocab_size=11, num_tags=4, embed_dim=4, hidden_size=5,
                       num_layers=layers, cell=cell[0], bidirectional=bi)
    model = numpy_backend(SequenceTagger(cfg))
    set_cell(model.rnn, cell[1], cell[2])
    proto = onnx_models(model, "tagger", {})["model.onnx"]
    ids = task_ids()
    got = run(proto, {"ids": ids, "lengths": LENGTHS}, np.float32)
    want = log_softmax(model.forward(ids, LENGTHS)[0])
    for i, n in enumerate(LENGTHS):
        close(got["log_probs"][i, :n], want[i, :n], TOL32)


@pytest.mark.parametrize("kind", ["classifier", "tagger"])
def test_task_float64(kind):
    if kind == "classifier":
        model = SequenceClassifier(ClassifierConfig(11, 3, embed_dim=4, hidden_size=5,
                                                    num_layers=2, cell="gru",
                                                    bidirectional=True, dtype="float64"))
    else:
        model = SequenceTagger(TaggerConfig(11, 4, embed_dim=4, hidden_size=5, num_layers=2,
                                            cell="lstm", bidirectional=True, dtype="float64"))
    numpy_backend(model)
    ids = task_ids()
    got = run(onnx_models(model, kind, {})["model.onnx"], {"ids": ids, "lengths": LENGTHS},
              np.float64)
    want = log_softmax(model.forward(ids, LENGTHS)[0])
    if kind == "classifier":
        close(got["log_probs"], want, TOL64)
    for i, n in enumerate(LENGTHS):
        close(got["log_probs"][i, :n], want[i, :n], TOL64)


# ---- seq2seq and conditional generator ---------------------------------------------------
def decode_steps(sess, names, first_state, tokens):
    """Feed ``tokens`` (N, M) one at a time from ``first_state``; log-probs (N, M, V)."""
    cur, outs = first_state, []
    N = tokens.shape[0]
    for k in range(tokens.shape[1]):
        feeds = {"ids": tokens[:, k:k + 1], "lengths": np.ones(N, np.int64)}
        feeds.update({"h0": cur} if not isinstance(cur, tuple) else {"h0": cur[0], "c0": cur[1]})
        got = dict(zip(names, sess.run(None, feeds)))
        outs.append(got["log_probs"][:, 0])
        cur = exported_state(got)
    return np.stack(outs, axis=1)


@pytest.mark.parametrize("cell,layers,bi", TASK_CASES)
def test_seq2seq(cell, layers, bi):
    cfg = Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=8, embed_dim=4, hidden_size=5,
                        num_layers=layers, cell=cell[0], bidirectional=bi)
    model = numpy_backend(Seq2Seq(cfg))
    for layer in (model.encoder, model.decoder):
        set_cell(layer, cell[1], cell[2])
    files = onnx_models(model, "seq2seq", _meta.metadata(model, "seq2seq", {}))
    assert set(files) == {"encoder.onnx", "decoder.onnx"}
    src = task_ids()
    enc = run(files["encoder.onnx"], {"ids": src, "lengths": LENGTHS}, np.float32)
    state, _ = model.encode(src, LENGTHS)
    lstm = cell[0] == "lstm"
    close(enc["h0"], state[0] if lstm else state, TOL32)
    if lstm:
        close(enc["c0"], state[1], TOL32)
    # teacher forcing in one call (ragged targets) and greedy-style stepping
    tin = np.random.default_rng(7).integers(0, 8, (len(LENGTHS), 4))
    tin[:, 0] = 2  # <eos> starts
    tlen = np.array([4, 1, 3, 2])
    dproto = files["decoder.onnx"]
    feeds = {"ids": tin, "lengths": tlen, "h0": enc["h0"]}
    if lstm:
        feeds["c0"] = enc["c0"]
    got = run(dproto, feeds, np.float32)
    want = log_softmax(model.forward(src, LENGTHS, tin, tlen)[0])
    for i, n in enumerate(tlen):
        close(got["log_probs"][i, :n], want[i, :n], TOL32)
    first = (enc["h0"], enc["c0"]) if lstm else enc["h0"]
    steps = decode_steps(session(dproto), [o.name for o in dproto.graph.output], first, tin)
    close(steps, log_softmax(model.forward(src, LENGTHS, tin)[0]), TOL32)


@pytest.mark.parametrize("cell", [CELLS[0], CELLS[2], CELLS[4]], ids=["rnn", "gru", "lstm"])
@pytest.mark.parametrize("cond", ["classes", "vectors"])
def test_generator(cell, cond):
    kw = {"num_classes": 3} if cond == "classes" else {"cond_dim": 2}
    cfg = GeneratorConfig(vocab_size=8, embed_dim=4, hidden_size=5, num_layers=2,
                          cell=cell[0], **kw)
    model = numpy_backend(ConditionalGenerator(cfg))
    files = onnx_models(model, "generator", {})
    rng = np.random.default_rng(8)
    c = np.array([0, 2, 1, 2]) if cond == "classes" else \
        rng.standard_normal((4, 2)).astype(np.float32)
    init = run(files["condition.onnx"], {"cond": c}, np.float32)
    state, _ = model.initial_state(c)
    lstm = cell[0] == "lstm"
    close(init["h0"], state[0] if lstm else state, TOL32)
    if lstm:
        close(init["c0"], state[1], TOL32)
    tin = rng.integers(0, 8, (4, 3))
    dproto = files["decoder.onnx"]
    first = (init["h0"], init["c0"]) if lstm else init["h0"]
    steps = decode_steps(session(dproto), [o.name for o in dproto.graph.output], first, tin)
    close(steps, log_softmax(model.forward(c, tin)[0]), TOL32)


# ---- the contract's names and metadata ---------------------------------------------------
def test_interface_names_and_metadata():
    import json

    model = make_lm(CELLS[4], 2)
    info = {"vocab": ["<pad>", "<unk>", "<eos>"] + list("abcdef"), "level": "char",
            "tokenizer_options": {}}
    proto = onnx_models(model, "language_model",
                        _meta.metadata(model, "language_model", info))["model.onnx"]
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["ids", "lengths", "h0", "c0"]
    assert [o.name for o in proto.graph.output] == ["log_probs", "h_n", "c_n"]
    assert proto.opset_import[0].version == 17
    ids_dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert ids_dims == ["N", "T"]  # dynamic batch and time
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["rnnkit.kind"] == "language_model"
    assert json.loads(props["rnnkit.vocab"]) == info["vocab"]
    assert json.loads(props["rnnkit.config"])["hidden_size"] == 5
    assert props["rnnkit.level"] == "char"
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == 2  # one node per layer


def test_seq2seq_metadata_names_each_side():
    import json

    model = Seq2Seq(Seq2SeqConfig(6, 5, embed_dim=3, hidden_size=4, cell="gru"))
    info = {"src_vocab": ["<pad>", "<unk>", "<eos>", "a", "b", "c"],
            "tgt_vocab": ["<pad>", "<unk>", "<eos>", "x", "y"],
            "source_level": "char", "target_level": "word"}
    files = onnx_models(model, "seq2seq", _meta.metadata(model, "seq2seq", info))
    enc = {p.key: p.value for p in files["encoder.onnx"].metadata_props}
    dec = {p.key: p.value for p in files["decoder.onnx"].metadata_props}
    assert json.loads(enc["rnnkit.vocab"]) == info["src_vocab"] and enc["rnnkit.level"] == "char"
    assert json.loads(dec["rnnkit.vocab"]) == info["tgt_vocab"] and dec["rnnkit.level"] == "word"
    assert enc["rnnkit.graph"] == "encoder" and dec["rnnkit.graph"] == "decoder"
    assert [o.name for o in files["encoder.onnx"].graph.output] == ["h0"]


def test_float64_model_exported_as_float32_runs_in_onnx_runtime():
    """ONNX Runtime has no double LSTM/GRU/RNN: dtype='float32' casts the graph for it."""
    model = make_lm(CELLS[4], 2, "float64")
    proto = onnx_models(model, "language_model", {}, dtype="float32")["model.onnx"]
    rng = np.random.default_rng(9)
    ids = rng.integers(0, 9, (len(LENGTHS), int(LENGTHS.max())))
    state = tuple(s.astype(np.float32) for s in model.zero_state(len(LENGTHS)))
    got = run(proto, lm_feeds(model, ids, LENGTHS, state), np.float32)
    for i, n in enumerate(LENGTHS):
        lp, _ = model.log_probs(ids[i:i + 1, :n])
        close(got["log_probs"][i, :n], lp[0], TOL32)
