"""rnnkit.models.base and the cell registry: configs check themselves when built, every model's
shapes come from its config alone, model files load through one checked path."""

import numpy as np
import pytest

from rnnkit.cells import CELLS, check_cell, gate_count
from rnnkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnnkit.models import (ClassifierConfig, ConditionalGenerator, FeedForward,
                           FeedForwardConfig, GeneratorConfig, LanguageModel, LMConfig, Model,
                           Seq2Seq, Seq2SeqConfig, SequenceClassifier, SequenceTagger,
                           TaggerConfig)

SMALL = dict(embed_dim=3, hidden_size=5, num_layers=2)


def every_model(cell):
    return [LanguageModel(LMConfig(9, cell=cell, **SMALL), seed=0),
            SequenceClassifier(ClassifierConfig(9, 3, cell=cell, bidirectional=True, **SMALL)),
            SequenceTagger(TaggerConfig(9, 4, cell=cell, **SMALL)),
            Seq2Seq(Seq2SeqConfig(9, 8, cell=cell, bidirectional=True, **SMALL)),
            ConditionalGenerator(GeneratorConfig(8, cond_dim=2, cell=cell, **SMALL)),
            FeedForward(FeedForwardConfig(4, 3, hidden_sizes=[6, 2]))]


def test_the_registry_names_each_cell_and_its_gates():
    assert list(CELLS) == ["rnn", "gru", "lstm"]
    assert [gate_count(c) for c in CELLS] == [1, 3, 4]
    with pytest.raises(ValueError, match="unknown cell 'tcn': expected rnn, gru or lstm"):
        check_cell("tcn")


@pytest.mark.parametrize("cell", list(CELLS))
def test_every_model_is_a_model_whose_shapes_come_from_its_config(cell):
    for m in every_model(cell):
        assert isinstance(m, Model)
        assert type(m).param_shapes(m.config) == {k: v.shape for k, v in m.params.items()}


@pytest.mark.parametrize("make, match", [
    (lambda: LMConfig(0), "vocab_size must be a positive integer, got 0"),
    (lambda: LMConfig(5, hidden_size=2.5), "hidden_size must be a positive integer"),
    (lambda: LMConfig(5, cell="tcn"), "unknown cell 'tcn'"),
    (lambda: TaggerConfig(5, 2, dtype="float16"), "dtype must be one of"),
    (lambda: ClassifierConfig(5, 2, dropout=1.0), r"dropout must lie in \[0, 1\)"),
    (lambda: Seq2SeqConfig(5, 2), "tgt_vocab_size must include the specials"),
    (lambda: GeneratorConfig(5, num_classes=2, cond_dim=3), "exactly one of"),
    (lambda: FeedForwardConfig(4, 3, hidden_sizes=[0]), "layer sizes must be positive"),
    (lambda: LMConfig.from_json({"vocab_size": 5, "evil": 1}), "unexpected keys"),
])
def test_a_config_checks_itself_when_built(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_model_save_and_load_round_trip_and_refusals(tmp_path):
    m = ConditionalGenerator(GeneratorConfig(7, num_classes=3, cell="gru", seed=2))
    path = m.save(tmp_path / "g.safetensors", "rnnkit.generator", {"note": "x"})
    back, meta = ConditionalGenerator.load(path)
    assert meta["note"] == "x"
    for k, v in m.params.items():
        np.testing.assert_array_equal(back.params[k], v)
    with pytest.raises(CheckpointError, match="not a 'rnnkit.feedforward' one"):
        FeedForward.load(path)
    arrays, meta = load_checkpoint(path)
    meta["config"]["num_layers"] = 10 ** 9  # refused before its shapes are even listed
    save_checkpoint(tmp_path / "f.safetensors", arrays, meta)
    with pytest.raises(CheckpointError, match="the config names 1000000000 layers"):
        ConditionalGenerator.load(tmp_path / "f.safetensors")
    arrays, meta = load_checkpoint(path)
    arrays["out.bias"] = arrays["out.bias"][:3]
    save_checkpoint(tmp_path / "s.safetensors", arrays, meta)
    with pytest.raises(CheckpointError, match=r"out.bias must have shape \(7,\)"):
        ConditionalGenerator.load(tmp_path / "s.safetensors")


def test_a_loaded_generator_cannot_ask_for_unbounded_decoding(tmp_path):
    m = ConditionalGenerator(GeneratorConfig(7, num_classes=3))
    path = m.save(tmp_path / "g.safetensors", "rnnkit.generator", {})
    arrays, meta = load_checkpoint(path)
    meta["config"]["max_len"] = 10 ** 12
    save_checkpoint(path, arrays, meta)
    with pytest.raises(CheckpointError, match=r"max_len 1000000000000 is over the limit 100000"):
        ConditionalGenerator.load(path)
    # Built by the user, a long output is the user's choice.
    assert GeneratorConfig(7, num_classes=3, max_len=10 ** 6).max_len == 10 ** 6


def test_command_line_cell_names_are_the_registry():
    # The CLI spells the names out so that `rnnkit --help` imports no NumPy; they must stay
    # the registry's names.
    from rnnkit.cells import CELLS
    from rnnkit.lm.options import CELL_NAMES

    assert sorted(CELL_NAMES) == sorted(CELLS)


def test_read_meta_from_the_header_alone(tmp_path, monkeypatch):
    """read_meta gives load_checkpoint's meta without reading the tensors, and the same
    one-line refusal for a file that is not a whole rnnkit checkpoint."""
    import rnnkit.checkpoint as ck

    path = tmp_path / "m.safetensors"
    save_checkpoint(path, {"w": np.arange(6.0).reshape(2, 3)}, {"kind": "demo", "n": [1, 2]})
    calls = []
    real = ck.load_checkpoint
    monkeypatch.setattr(ck, "load_checkpoint", lambda p: calls.append(p) or real(p))
    assert ck.read_meta(path) == real(path)[1] == {"kind": "demo", "n": [1, 2]}
    assert calls == []  # the header sufficed
    short = tmp_path / "short.safetensors"
    short.write_bytes(path.read_bytes()[:5])
    with pytest.raises(CheckpointError, match="short.safetensors"):
        ck.read_meta(short)
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"\x93NUMPY" + b"\0" * 40)
    with pytest.raises(CheckpointError, match="NumPy"):
        ck.read_meta(other)
    with pytest.raises(CheckpointError, match="missing"):
        ck.read_meta(tmp_path / "missing.safetensors")
