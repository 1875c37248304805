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
