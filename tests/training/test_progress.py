"""Progress reporting: metrics.jsonl records, plain log lines, the tqdm bar, the loss plot."""

import io
import json
import struct
import zlib

import pytest

from rnnkit.progress import ProgressReporter, latest_run, plot_metrics, read_metrics


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_metrics_jsonl_records(tmp_path):
    clock, out = FakeClock(), io.StringIO()
    with ProgressReporter(total_steps=4, run_dir=tmp_path / "run", stream=out, clock=clock) as rep:
        for step, loss in ((1, 4.0), (2, 2.0)):
            clock.t += 1.0
            rep.update(step, loss, tokens=50)
        r1 = rep.log(2, lr=0.01)
        clock.t += 4.0
        rep.update(3, 1.5, tokens=100)
        rep.update(4, float("nan"), tokens=100)
        r2 = rep.log(4, train_loss=1.25, val_loss=1.75)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert recs == [r1, r2]
    # train_loss: mean of the updates since the last record; tokens/s over that interval
    assert r1 == {"step": 2, "train_loss": 3.0, "tokens_per_s": 50.0, "elapsed": 2.0, "lr": 0.01}
    assert r2 == {"step": 4, "train_loss": 1.25, "val_loss": 1.75, "tokens_per_s": 50.0,
                  "elapsed": 6.0}
    text = out.getvalue().splitlines()
    assert text[0] == "step 2/4  train_loss 3.0000  lr 0.01  50 tok/s  elapsed 2s  eta 2s"
    assert text[1] == "step 4/4  train_loss 1.2500  val_loss 1.7500  50 tok/s  elapsed 6s  eta 0s"


def test_nonfinite_loss_written_as_null_and_appends(tmp_path):
    clock = FakeClock()
    for start in (0, 10):
        rep = ProgressReporter(run_dir=tmp_path, stream=io.StringIO(), clock=clock, start_step=start)
        clock.t += 2.0
        rep.update(start + 1, float("inf"), tokens=10)
        rep.log(start + 1)
        rep.close()
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 11]
    assert recs[0]["train_loss"] is None and recs[0]["tokens_per_s"] == 5.0


def test_tty_uses_tqdm_bar(tmp_path):
    class TTY(io.StringIO):
        def isatty(self):
            return True

    out, clock = TTY(), FakeClock()
    rep = ProgressReporter(total_steps=10, run_dir=tmp_path, stream=out, clock=clock)
    assert rep._bar is not None
    for s in range(1, 6):
        clock.t += 0.5
        rep.update(s, 2.0, tokens=20)
    rec = rep.log(5)
    rep.close()
    shown = out.getvalue()
    assert "5/10" in shown and "step 5/10  train_loss 2.0000" in shown
    assert rec["tokens_per_s"] == 40.0
    assert ProgressReporter(stream=io.StringIO())._bar is None  # not a terminal: no bar


def test_latest_run_drops_superseded_records():
    recs = [{"step": s} for s in (1, 2, 3, 4, 3, 4, 5)]
    assert [r["step"] for r in latest_run(recs)] == [1, 2, 3, 4, 5]
    assert [r["step"] for r in latest_run([{"step": 5}, {"step": 1}])] == [1]


def _png_chunks(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos: pos + 4])
        kind, body = data[pos + 4: pos + 8], data[pos + 8: pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n: pos + 12 + n])
        assert zlib.crc32(kind + body) == crc
        chunks.append((kind, body))
        pos += 12 + n
    return chunks


def test_plot_metrics_writes_valid_png(tmp_path):
    m = tmp_path / "metrics.jsonl"
    recs = [{"step": s, "train_loss": 5.0 / s, "tokens_per_s": 1.0, "elapsed": s}
            for s in range(1, 21)]
    for r in recs[4::5]:
        r["val_loss"] = r["train_loss"] + 0.1
    m.write_text("".join(json.dumps(r) + "\n" for r in recs) + "\n")
    png = tmp_path / "loss.png"
    plot_metrics(m, png)
    chunks = _png_chunks(png.read_bytes())
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert (width, height) == (700, 420)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_plot_metrics_errors(tmp_path):
    m = tmp_path / "metrics.jsonl"
    m.write_text('{"step": 1, "train_loss": 2.0}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a metrics record"):
        plot_metrics(m, tmp_path / "x.png")
    m.write_text('{"step": 1, "train_loss": null}\n')
    with pytest.raises(ValueError, match="no train_loss or val_loss"):
        plot_metrics(m, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no such metrics file"):
        plot_metrics(tmp_path / "missing.jsonl", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
