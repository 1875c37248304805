"""Golden values: model files saved once (tests/data/golden, written by
tests/data/make_golden.py) must load and give the outputs stored beside them.

A change that silently alters what a saved model computes — a weight layout, a gate order,
a scoring or decoding convention, the file format — fails here.  float64 models are compared
to 1e-10 relative (room for another BLAS), the float32 character LM to 2e-5.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
spec = importlib.util.spec_from_file_location("make_golden", DATA / "make_golden.py")
golden = importlib.util.module_from_spec(spec)
spec.loader.exec_module(golden)
EXPECTED = json.loads((DATA / "golden" / "expected.json").read_text(encoding="utf-8"))
KINDS = ["lm_char", "lm_word", "classifier", "tagger", "seq2seq", "generator", "feedforward"]


def close(got, want, rtol, path="") -> None:
    """Nested lists of numbers (or ints, where decoding chose tokens) equal within rtol."""
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            close(g, w, rtol, f"{path}[{i}]")
    elif isinstance(want, int) and not isinstance(want, bool):
        assert got == want, path
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, err_msg=path)


@pytest.fixture(scope="module")
def outputs():
    return golden.outputs()


def test_every_kind_has_a_golden_file():
    assert sorted(EXPECTED) == sorted(KINDS)
    for kind in KINDS:
        f = DATA / "golden" / kind / "model.safetensors"
        assert f.exists() and f.stat().st_size < 20_000, kind


@pytest.mark.parametrize("kind", KINDS)
def test_saved_model_gives_its_golden_outputs(kind, outputs):
    rtol = 2e-5 if kind == "lm_char" else 1e-10
    got = json.loads(json.dumps(outputs[kind]))  # tuples -> lists, as stored
    assert sorted(got) == sorted(EXPECTED[kind])
    for key in EXPECTED[kind]:
        close(got[key], EXPECTED[kind][key], rtol, f"{kind}.{key}")
