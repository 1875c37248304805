"""Training progress: a live bar on a terminal, log lines elsewhere, and ``metrics.jsonl``.

Each :meth:`ProgressReporter.log` call appends one JSON object (one line) to
``RUN_DIR/metrics.jsonl`` with ``step``, ``train_loss``, ``tokens_per_s``, ``elapsed`` and,
when given, ``val_loss`` and ``lr``.  Appending, not rewriting, keeps the history of a resumed
run in the same file; :func:`plot_metrics` draws it.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from ._io import named_errors
from .checkpoint import atomic_write_bytes

METRICS_FILE = "metrics.jsonl"


class ProgressReporter:
    """Reports training progress; use as a context manager or call :meth:`close`.

    Call :meth:`update` after every training step (cheap: it moves the bar and accumulates
    loss and tokens) and :meth:`log` every so often to emit a record.  ``tty=None`` picks the
    live bar when ``stream`` is a terminal and plain lines otherwise.  ``run_dir=None`` writes
    no metrics file.  ``clock`` (seconds, monotonic) is there for tests.
    """

    def __init__(self, total_steps: int | None = None, run_dir=None, *, start_step: int = 0,
                 stream=None, tty: bool | None = None, clock=time.perf_counter):
        self.total_steps = total_steps
        self.stream = sys.stderr if stream is None else stream
        self.metrics_path = None
        if run_dir is not None:
            run_dir = Path(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            self.metrics_path = run_dir / METRICS_FILE
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self._clock = clock
        self._start = self._last_time = clock()
        self._start_step = self._step = start_step
        self._loss_sum = 0.0
        self._loss_count = 0
        self._tokens = 0
        self._bar = None
        if tty:
            from tqdm import tqdm
            self._bar = tqdm(total=total_steps, initial=start_step, file=self.stream,
                             unit="step", dynamic_ncols=True, smoothing=0.1)

    def update(self, step: int, loss: float | None = None, tokens: int = 0) -> None:
        """Record training step ``step`` (its loss and the number of tokens it trained on)."""
        if loss is not None:
            self._loss_sum += float(loss)
            self._loss_count += 1
        self._tokens += int(tokens)
        if self._bar is not None:
            self._bar.update(max(step - self._step, 0))
            interval = self._clock() - self._last_time
            rate = self._tokens / interval if interval > 0 else None
            self._bar.set_postfix_str(_postfix(loss, rate), refresh=False)
        self._step = step

    def log(self, step: int, train_loss: float | None = None, *, val_loss: float | None = None,
            lr: float | None = None, tokens: int | None = None) -> dict:
        """Emit one record and return it.

        ``train_loss`` defaults to the mean of the losses given to :meth:`update` since the
        last record, ``tokens`` to the tokens counted there; ``tokens_per_s`` is over the time
        since the last record.  Non-finite losses are written as null (JSON has no NaN).
        """
        now = self._clock()
        if train_loss is None and self._loss_count:
            train_loss = self._loss_sum / self._loss_count
        if tokens is None:
            tokens = self._tokens
        interval = now - self._last_time
        record = {"step": int(step), "train_loss": _finite_or_none(train_loss)}
        if val_loss is not None:
            record["val_loss"] = _finite_or_none(val_loss)
        record["tokens_per_s"] = round(tokens / interval, 1) if interval > 0 else None
        record["elapsed"] = round(now - self._start, 3)
        if lr is not None:
            record["lr"] = float(lr)
        self._last_time = now
        self._loss_sum, self._loss_count, self._tokens = 0.0, 0, 0

        if self.metrics_path is not None:
            with named_errors(self.metrics_path), \
                    open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, allow_nan=False) + "\n")
        line = self._format(record, train_loss, val_loss)
        if self._bar is not None:
            if step > self._step:
                self._bar.update(step - self._step)
                self._step = step
            self._bar.set_postfix_str(_postfix(train_loss, record["tokens_per_s"]), refresh=False)
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)
        return record

    def _format(self, record: dict, train_loss, val_loss) -> str:
        step = f"step {record['step']}" + (f"/{self.total_steps}" if self.total_steps else "")
        parts = [step, f"train_loss {_fmt(train_loss)}"]
        if val_loss is not None:
            parts.append(f"val_loss {_fmt(val_loss)}")
        if "lr" in record:
            parts.append(f"lr {record['lr']:.3g}")
        if record["tokens_per_s"] is not None:
            parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
        parts.append(f"elapsed {_duration(record['elapsed'])}")
        done = record["step"] - self._start_step
        if self.total_steps and self._bar is None and done > 0:
            # The bar shows its own ETA; plain logs estimate it from the average pace so far.
            remaining = record["elapsed"] / done * (self.total_steps - record["step"])
            parts.append(f"eta {_duration(max(remaining, 0.0))}")
        return "  ".join(parts)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_metrics(path) -> list[dict]:
    """The records of a metrics.jsonl file; ValueError naming the line of a malformed one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such metrics file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read it ({e})") from None
    records = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
            raise ValueError(f"{path}:{i}: not a metrics record (a JSON object with an integer step)")
        records.append(rec)
    return records


def latest_run(records: list[dict]) -> list[dict]:
    """The records of the run that wrote last: a record whose step is not past the one before
    it (a run resumed from an earlier checkpoint) drops the earlier records from that step on."""
    out: list[dict] = []
    for rec in records:
        while out and out[-1]["step"] >= rec["step"]:
            out.pop()
        out.append(rec)
    return out


def plot_metrics(metrics_path, png_path) -> Path:
    """Draw training and validation loss against step from metrics.jsonl into a PNG.

    When a run was resumed, the superseded records are left out (see :func:`latest_run`).
    The PNG is written atomically; ValueError if there is no loss to plot.
    """
    records = latest_run(read_metrics(metrics_path))
    series = {}
    for key in ("train_loss", "val_loss"):
        pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        if pts:
            series[key] = pts
    if not series:
        raise ValueError(f"{metrics_path}: no train_loss or val_loss to plot")

    # Drawn by rnnkit.lineplot (NumPy + zlib): matplotlib's import alone cost ~1-2 s at the
    # end of every training run.
    from .lineplot import BLUE, ORANGE, line_chart_png

    styles = {"train_loss": ("train", BLUE, False), "val_loss": ("validation", ORANGE, True)}
    png = line_chart_png([(styles[k][0], pts, styles[k][1], styles[k][2])
                          for k, pts in series.items()], width=700, height=420)
    return atomic_write_bytes(png_path, png)


def _finite_or_none(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _postfix(loss, tokens_per_s) -> str:
    return f"loss {_fmt(loss)}" + (f", {tokens_per_s:,.0f} tok/s" if tokens_per_s else "")


def _fmt(x) -> str:
    return "-" if x is None else f"{float(x):.4f}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
