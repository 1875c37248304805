"""Seq2seq model files written before attention existed still load (as attention "none") and
predict exactly what they predicted then (tests/data/seq2seq_noattn, made by commit a92c7f6)."""

import json
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.data.batching import pad_sequences as pad_batch
from rnnkit.tasks import load_bundle, read_tsv

DATA = Path(__file__).resolve().parents[1] / "data" / "seq2seq_noattn"
MODELS = ("model_bilstm", "model_gru2")


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("beam", (1, 3))
def test_old_model_predicts_as_before(name, beam, capsys):
    code = main(["seq2seq", "predict", str(DATA / name), str(DATA / "inputs.txt"),
                 "--beam", str(beam)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == (DATA / name / f"expected_beam{beam}.tsv").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", MODELS)
def test_old_model_loss_and_scores_as_before(name):
    expected = json.loads((DATA / "expected.json").read_text())[name]
    model, meta = load_bundle(DATA / name, "seq2seq")
    assert getattr(model.config, "attention", "none") == "none"
    ex = read_tsv(DATA / "train.tsv", "seq2seq", ("char", "word"))[:16]
    src, lengths = pad_batch([meta["src_vocab"].encode(s) for _, s, _ in ex])
    targets = [meta["tgt_vocab"].encode(y) for _, _, y in ex]
    loss, _ = model.loss(src, lengths, targets)
    assert loss == pytest.approx(expected["loss_first16"], rel=1e-6)
    _, scores = model.beam_search(src, lengths, 3, return_scores=True)
    np.testing.assert_allclose(scores, expected["beam3_scores_first16"], rtol=1e-5, atol=1e-6)
