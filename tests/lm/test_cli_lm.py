"""The CLI round trip: train -> eval -> score -> sample, through ``rnnkit.cli.main``."""

import json
import math
import subprocess
import sys

import pytest

from rnnkit import __version__
from rnnkit.cli import main

TEXT = "".join(f"a {w} is {v}.\n" for w in ("cat", "dog", "cow", "hen") for v in ("here", "there", "home")) * 10


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    corpus = d / "train.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = d / "model"
    rc = main(["train", str(corpus), "--out", str(out), "--hidden", "24", "--embed", "8",
               "--layers", "1", "--seq-len", "16", "--batch", "4", "--steps", "80", "--lr", "0.01",
               "--eval-every", "40", "--log-every", "20", "--seed", "1"])
    assert rc == 0
    return d, out


def run_json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_train_outputs(model_dir):
    _, out = model_dir
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "checkpoint.safetensors", "metrics.jsonl", "loss.png"} <= names
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [20, 40, 60, 80]
    assert lines[1]["val_loss"] is not None and lines[-1]["train_loss"] < lines[0]["train_loss"]


def test_eval_json(model_dir, capsys):
    d, out = model_dir
    f = d / "held.txt"
    f.write_text("a cat is home.\na hen is there.\n", encoding="utf-8")
    r = run_json(capsys, ["eval", str(out), str(f), "--json"])
    assert set(r) >= {"tokens", "nats_per_token", "perplexity", "bits_per_char"}
    assert r["tokens"] == 31
    assert math.isclose(r["perplexity"], math.exp(r["nats_per_token"]))
    assert math.isclose(r["bits_per_char"], r["nats_per_token"] / math.log(2))  # char level
    assert r["nats_per_token"] < 1.5  # learned: far below ln(V)


def test_score_json(model_dir, capsys):
    _, out = model_dir
    rs = run_json(capsys, ["score", str(out), "a dog is here.", "here is dog a.", "--json"])
    assert len(rs) == 2
    for r in rs:
        assert math.isclose(sum(r["token_logprobs"]), r["logprob"], rel_tol=1e-9)
        assert math.isclose(r["log10"] * math.log(10), r["logprob"], rel_tol=1e-9)
    assert rs[0]["logprob"] > rs[1]["logprob"]


def test_score_plain_text(model_dir, capsys):
    _, out = model_dir
    capsys.readouterr()
    assert main(["score", str(out), "a cow is home."]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("a cow is home.\tlogprob -") and "perplexity" in lines[0]
    assert lines[1].split()[0].startswith("a:")


def test_sample_seeded_and_modes(model_dir, capsys):
    _, out = model_dir
    argv = ["sample", str(out), "--prime", "a ", "--num", "3", "--seed", "4", "--length", "30", "--json"]
    a = run_json(capsys, argv)["samples"]
    b = run_json(capsys, argv)["samples"]
    assert a == b and len(a) == 3 and all(s.startswith("a ") for s in a)
    g = run_json(capsys, ["sample", str(out), "--greedy", "--prime", "a c", "--json"])
    b1 = run_json(capsys, ["sample", str(out), "--beam", "1", "--prime", "a c", "--json"])
    assert g["samples"] == b1["samples"] and g["logprob"] == b1["logprob"]
    k = run_json(capsys, ["sample", str(out), "--top-k", "1", "--prime", "a c", "--seed", "9", "--json"])
    assert k["samples"][0] == g["samples"][0]  # top-1 sampling is greedy


def test_train_refuses_to_overwrite(model_dir, capsys):
    d, out = model_dir
    capsys.readouterr()
    assert main(["train", str(d / "train.txt"), "--out", str(out), "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert "already holds a model" in err and len(err.strip().splitlines()) == 1


def test_version_subprocess():
    r = subprocess.run([sys.executable, "-m", "rnnkit.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"rnnkit {__version__}"


def test_short_sample_runs_numpy_and_matches_the_compiled_step(model_dir):
    """A short `sample` job skips the JIT (NumPy path, no Numba import); a long one keeps the
    compiled generation step; both draw the same text from the same seed."""
    from rnnkit import cli_lm, kernels
    from rnnkit.lm import generate
    from rnnkit.lm.bundle import load_model

    _, out = model_dir
    short = load_model(out)
    cli_lm._short_job_backend(short.model, cli_lm.SHORT_JOB_TOKENS)
    assert short.model.rnn.backend == "numpy"
    longer = load_model(out)
    cli_lm._short_job_backend(longer.model, cli_lm.SHORT_JOB_TOKENS + 1)
    assert longer.model.rnn.backend == ("numba" if kernels.available() else "numpy")
    args = dict(prime="a c", length=60, temperature=0.9, num=3, seed=7, stop_at_eos=False)
    a = generate.sample(short.model, short.vocab, short.tokenizer, **args)
    b = generate.sample(longer.model, longer.vocab, longer.tokenizer, **args)
    assert a == b and all(len(t) == len("a c") + 60 for t in a)
    code = ("import sys; from rnnkit.cli import main; "
            f"main(['sample', {str(out)!r}, '--length', '50', '--seed', '1']); "
            "print('numba' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert res.stdout.strip().splitlines()[-1] == "False"


def test_prime_through_steps_equals_the_sequence_forward(model_dir, monkeypatch):
    """A short prime runs token by token through the generation step, a long one through the
    sequence forward: the same first distribution and state either way."""
    import numpy as np

    from rnnkit.lm import generate
    from rnnkit.lm.bundle import load_model

    _, out = model_dir
    b = load_model(out)
    prime = "a cat is here.\na dog is"
    _, lp_steps, st_steps = generate._start(b.model, b.vocab, b.tokenizer, prime, 2)
    monkeypatch.setattr(generate, "PRIME_BY_STEPS", 0)
    _, lp_seq, st_seq = generate._start(b.model, b.vocab, b.tokenizer, prime, 2)
    np.testing.assert_allclose(lp_steps, lp_seq, rtol=1e-5, atol=1e-5)
    for x, y in zip(st_steps, st_seq):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_long_sample_runs_its_loop_in_one_compiled_call(model_dir, monkeypatch, capsys):
    """A compiled-path `sample` job (more than SHORT_JOB_TOKENS tokens, at most
    LeanStep.max_rows samples) hands the whole sampling loop to the compiled kernel — one
    call per SAMPLE_CHUNK tokens, not one per token — and prints what the step-by-step loop
    draws from the same seed."""
    from rnnkit import cli, cli_lm, decode, kernels
    from rnnkit.models.lean_step import LeanStep

    if not kernels.available():
        pytest.skip("Numba is not installed: there is no compiled loop")
    _, out = model_dir
    calls = []
    real = LeanStep.sample
    monkeypatch.setattr(LeanStep, "sample",
                        lambda self, *a, **k: calls.append(a[3]) or real(self, *a, **k))
    monkeypatch.setattr(decode, "SAMPLE_CHUNK", 1500)
    argv = ["sample", str(out), "--length", str(cli_lm.SHORT_JOB_TOKENS + 1), "--num", "2",
            "--no-stop", "--seed", "4"]
    assert cli.main(argv) == 0
    compiled = capsys.readouterr().out
    assert calls == [0, 1500]  # the chunks' first tokens
    monkeypatch.setattr(LeanStep, "max_rows", 0)  # the per-token step through BLAS
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == compiled
    assert len(calls) == 2
