"""What a language model reads: one self-contained HTML page about a text.

- every token coloured by its surprisal −log p (a fixed scale in bits, with a legend), its
  probability and the model's top-5 guesses on hover and on keyboard focus;
- each line's log-probability, perplexity and bits per character, exactly as ``rnnkit score``
  computes them (:func:`rnnkit.lm.score.score_sentences`, the model's own ``log_probs``);
- the activations of chosen hidden units / LSTM cells over the text, or of the units most
  correlated with simple text features (inside quotes, inside parentheses, position in the
  line), found automatically;
- per layer, how often each gate is saturated (< 0.1 or > 0.9), as a small SVG plot.

Hidden states, cells and gates come from the readable NumPy reference path in float64
(:func:`rnnkit.gradflow.lm_parts`), never from the fused kernels.  The page needs no network:
CSS inline, no script.  Every piece of the user's text is HTML-escaped.

Shapes: T tokens of a line (+1 for the closing ``<eos>``), H hidden, L layers, V vocabulary.
"""

from __future__ import annotations

import html
import json
import math

import numpy as np

from ..data.vocab import EOS

MAX_TOKENS = 20000  # one page; more is unreadable and slow to render
FEATURES = ("inside quotes", "inside parentheses", "position in line")
# Surprisal bins in bits: lower edges, background, text colour (sequential, dark text on light
# backgrounds and white text on dark ones so every token stays readable).
BINS = ((0, "#fff7bc", "#111"), (1, "#fee391", "#111"), (2, "#fec44f", "#111"),
        (4, "#fb9a29", "#111"), (6, "#d95f0e", "#fff"), (9, "#8c2d04", "#fff"))
GATE_NAMES = {"lstm": ("input i", "forget f", "output o"), "gru": ("reset r", "update z")}


# ---- what the page shows -------------------------------------------------------------------
def parse_units(spec: str, num_layers: int, hidden: int, cell: str) -> list[tuple[int, str, int]]:
    """``"12,87"`` / ``"2:12,c87"`` -> [(layer 0-based, "h" or "c", unit)].

    An item is ``[LAYER:][c]UNIT``: LAYER counts from 1 (default: the top layer), ``c`` picks
    an LSTM memory cell instead of the hidden state.  ValueError naming the bad item.
    """
    out = []
    for item in str(spec).split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"--units: empty item in {spec!r}")
        layer_s, _, unit_s = item.rpartition(":")
        layer = num_layers
        if layer_s:
            if not layer_s.isdigit() or not 1 <= int(layer_s) <= num_layers:
                raise ValueError(f"--units {item}: layer must be 1..{num_layers}")
            layer = int(layer_s)
        kind = "h"
        if unit_s[:1] in ("c", "h"):
            kind, unit_s = unit_s[0], unit_s[1:]
        if kind == "c" and cell != "lstm":
            raise ValueError(f"--units {item}: only an LSTM has memory cells (this is a {cell})")
        if not unit_s.isdigit():
            raise ValueError(f"--units {item}: expected [LAYER:][c]UNIT with UNIT a number")
        unit = int(unit_s)
        if unit >= hidden:
            raise ValueError(f"--units {item}: unit {unit} is out of range: the model has "
                             f"{hidden} units per layer (0..{hidden - 1})")
        out.append((layer - 1, kind, unit))
    return out


def text_lines(texts) -> list[str]:
    """The non-blank lines of the given texts; ValueError if none is left."""
    lines = []
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"a text must be a str, got {type(t).__name__}")
        lines.extend(line for line in t.replace("\r\n", "\n").replace("\r", "\n").split("\n")
                     if line.strip())
    if not lines:
        raise ValueError("the text is empty: nothing to explain")
    return lines


def _features(tokens: list[str]) -> np.ndarray:
    """(T, 3) text features after reading each token: inside quotes, inside parentheses,
    position in the line (tokens read so far)."""
    f = np.zeros((len(tokens), 3))
    quote, depth = False, 0
    for t, tok in enumerate(tokens):
        for ch in tok:
            if ch == '"':
                quote = not quote
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth = max(0, depth - 1)
        f[t] = (float(quote), float(depth > 0), float(t))
    return f


def _reference_states(parts, ids: np.ndarray):
    """Per layer, the hidden states (T, H), LSTM cells (T, H) or None, and gate values
    {name: (T, H)} after reading each of ``ids`` (T,), from the zero state."""
    layers = []
    for st in parts.rnn.forward(parts.embedding[ids][None]):
        steps = st["caches"]
        gates = {}
        if parts.cell == "lstm":  # step cache (i, f, g, o, c_prev, tanh c)
            gates = {n: np.stack([s[k][0] for s in steps])
                     for n, k in zip(GATE_NAMES["lstm"], (0, 1, 3))}
        elif parts.cell == "gru":  # step cache (r, z, n, ghn, h_prev)
            gates = {n: np.stack([s[k][0] for s in steps])
                     for n, k in zip(GATE_NAMES["gru"], (0, 1))}
        layers.append({"h": st["out"][:, 0], "c": None if st["c"] is None else st["c"][:, 0],
                       "gates": gates})
    return layers


def explain(bundle, texts, units: str | None = None, top: int = 6) -> dict:
    """Everything the page shows, as a JSON-serialisable dict.

    bundle: ``rnnkit.lm.bundle.load_model(DIR)``; texts: strings (each line explained as one
    sentence, from the zero state, as ``rnnkit score`` does); units: ``--units`` spec or None
    for the ``top`` units most correlated with the text features.
    """
    from ..gradflow import lm_parts
    from .score import score_sentences

    model, vocab, tokenizer = bundle.model, bundle.vocab, bundle.tokenizer
    parts = lm_parts(model)
    L, H = parts.rnn.num_layers, parts.rnn.hidden_size
    chosen = parse_units(units, L, H, parts.cell) if units is not None else None
    if chosen is None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"--top must be a positive integer, got {top!r}")
    lines = text_lines(texts)
    scores = score_sentences(model, vocab, tokenizer, lines)
    total_tokens = sum(r["predictions"] for r in scores)
    if total_tokens > MAX_TOKENS:
        raise ValueError(f"the text has {total_tokens} tokens; one page shows at most {MAX_TOKENS}")
    report_lines, acts, feats = [], [], []
    gate_counts: dict = {}
    for line, r in zip(lines, scores):
        ids = vocab.encode(r["tokens"])
        x = np.concatenate([[vocab.eos_id], ids[:-1]])[None]
        lp, _ = model.log_probs(x)  # the same numbers score reports, from the model itself
        lp = lp[0].astype(np.float64)
        top5 = np.argsort(-lp, axis=1)[:, :5]
        # States after reading each token, the closing <eos> included: inputs <eos> + ids.
        layers = _reference_states(parts, np.concatenate([[vocab.eos_id], ids]))
        toks = []
        for j, (tok, tlp) in enumerate(zip(r["tokens"], r["token_logprobs"])):
            toks.append({"token": tok, "logprob": tlp, "unknown": int(ids[j]) == vocab.unk_id,
                         "top": [[vocab.token(int(k)), float(math.exp(lp[j, k]))] for k in top5[j]]})
        chars = len(line) + 1
        report_lines.append({"text": line, "tokens": toks, "logprob": r["logprob"],
                             "log10": r["log10"], "perplexity": r["perplexity"],
                             "predictions": r["predictions"], "unknown": r["unknown"],
                             "bits_per_char": -r["logprob"] / math.log(2) / chars})
        acts.append([{k: (v[1:] if v is not None else None) for k, v in lay.items() if k != "gates"}
                     for lay in layers])
        feats.append(_features(r["tokens"][:-1] + [""]))
        for li, lay in enumerate(layers):
            for name, g in lay["gates"].items():
                c = gate_counts.setdefault((li, name), [0, 0, 0])
                c[0] += int((g < 0.1).sum())
                c[1] += int((g > 0.9).sum())
                c[2] += g.size
            if not lay["gates"]:  # a plain RNN has no gates: report its tanh saturation
                h = lay["h"][1:]
                c = gate_counts.setdefault((li, "state h (< −0.9 / > 0.9)"), [0, 0, 0])
                c[0] += int((h < -0.9).sum())
                c[1] += int((h > 0.9).sum())
                c[2] += h.size
    unit_rows = _select_units(acts, feats, chosen, top, L, parts.cell)
    gates = [{"layer": li + 1, "gate": name, "low": c[0] / c[2], "high": c[1] / c[2]}
             for (li, name), c in gate_counts.items()]
    config = model.config
    return {"model": {"cell": parts.cell, "layers": L, "hidden": H, "level": bundle.level,
                      "vocab": len(vocab), "embed": int(parts.embedding.shape[1]),
                      "dropout": float(getattr(config, "dropout", 0.0))},
            "lines": report_lines, "units": unit_rows, "gates": gates,
            "units_chosen": chosen is not None}


def _select_units(acts, feats, chosen, top, L, cell) -> list[dict]:
    """Rows of the activation section: each unit's values per line (and, when found
    automatically, the feature it follows and Pearson's r over every token but <eos>)."""
    def values(layer, kind, unit):
        return [a[layer][kind][:, unit].tolist() for a in acts]

    if chosen is not None:
        return [{"layer": la + 1, "kind": k, "unit": u, "values": values(la, k, u),
                 "feature": None, "r": None} for la, k, u in chosen]
    # Candidates: every unit of every layer (h; and c for an LSTM), over all tokens but <eos>.
    cols, names = [], []
    for la in range(L):
        for k in (("h", "c") if cell == "lstm" else ("h",)):
            m = np.concatenate([a[la][k][:-1] for a in acts], axis=0)  # (tokens, H)
            cols.append(m)
            names.extend((la, k, u) for u in range(m.shape[1]))
    A = np.concatenate(cols, axis=1)
    F = np.concatenate([f[:-1] for f in feats], axis=0)
    rows = []
    if A.shape[0] >= 3:
        Ac = A - A.mean(axis=0)
        Fc = F - F.mean(axis=0)
        denom = np.sqrt((Ac ** 2).sum(axis=0))[:, None] * np.sqrt((Fc ** 2).sum(axis=0))[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(denom > 1e-12, (Ac.T @ Fc) / np.where(denom > 0, denom, 1), 0.0)  # (U, 3)
        best = np.abs(r).max(axis=1)
        taken = set()
        # Best unit per feature first (so each feature that varies shows up), then the rest.
        for fi in range(F.shape[1]):
            if np.abs(r[:, fi]).max() > 0:
                u = int(np.argmax(np.abs(r[:, fi])))
                if u not in taken and len(taken) < top:
                    taken.add(u)
                    rows.append((u, fi, float(r[u, fi])))
        for u in np.argsort(-best):
            if len(rows) >= top or best[u] == 0:
                break
            if int(u) not in taken:
                taken.add(int(u))
                fi = int(np.argmax(np.abs(r[u])))
                rows.append((int(u), fi, float(r[u, fi])))
    if not rows:  # no feature varies in this text: the units that vary most
        var = A.var(axis=0) if A.shape[0] > 1 else np.abs(A).sum(axis=0)
        rows = [(int(u), None, None) for u in np.argsort(-var)[:top]]
    out = []
    for u, fi, rv in rows:
        la, k, unit = names[u]
        out.append({"layer": la + 1, "kind": k, "unit": unit, "values": values(la, k, unit),
                    "feature": None if fi is None else FEATURES[fi], "r": rv})
    return out


# ---- the page ------------------------------------------------------------------------------
def surprisal_bin(bits: float) -> int:
    """Index into :data:`BINS` of a surprisal in bits."""
    k = 0
    for i, (lo, _, _) in enumerate(BINS):
        if bits >= lo:
            k = i
    return k


def _shown(tok: str) -> str:
    """A token as displayed: <eos> as ⏎; the text itself otherwise (escaped later)."""
    return "⏎" if tok == EOS else tok


def _named(tok: str) -> str:
    """A token as named in a tooltip, where a bare space would be invisible."""
    return {EOS: "⏎", " ": "␣", "\t": "⇥"}.get(tok, tok)


def _diverging(v: float) -> tuple[str, str]:
    """Background and text colour of a value in [−1, 1]: blue (−) – white – red (+)."""
    v = max(-1.0, min(1.0, v))
    lo, hi, mid = (33, 102, 172), (178, 24, 43), (247, 247, 247)
    end = hi if v > 0 else lo
    a = abs(v)
    rgb = tuple(round(m + (e - m) * a) for m, e in zip(mid, end))
    return "#%02x%02x%02x" % rgb, ("#fff" if a > 0.6 else "#111")


def _sep(level: str) -> str:
    return " " if level == "word" else ""


_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:24px auto;max-width:1100px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555;margin:0 0 12px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td.text{text-align:left;max-width:480px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.legend{display:flex;gap:0;align-items:stretch;margin:6px 0 4px;font-size:13px}
.legend span{padding:3px 10px;border:1px solid #bbb;margin-right:-1px}
.line{font:16px/2.1 ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-all;margin:4px 0 10px}
.word .line{font-family:system-ui,sans-serif}
.tok{position:relative;padding:2px 0;border-radius:2px;cursor:default;outline:none}
.tok:focus{box-shadow:0 0 0 2px #1f4e9c}
.tok .tip{display:none;position:absolute;left:0;top:1.9em;z-index:10;background:#fff;color:#111;border:1px solid #888;box-shadow:0 2px 8px rgba(0,0,0,.25);padding:6px 8px;font:12px/1.35 system-ui,sans-serif;white-space:nowrap;border-radius:4px}
.tok:hover .tip,.tok:focus .tip,.tok:focus-within .tip,.tok:target .tip{display:block}
.tip b{font-family:ui-monospace,monospace} .tip table{margin-top:4px} .tip td{border:none;padding:0 6px;text-align:left}
.unk{text-decoration:underline wavy #333}
.eos{color:#666}
.unit{margin:10px 0 2px;font-size:13px;color:#333}
.act .tok{padding:2px 0}
.small{font-size:12px;color:#555}
"""


def _tip(tok: dict, tip_id: str) -> str:
    lp = tok["logprob"]
    rows = "".join(f"<tr><td><b>{html.escape(_named(t))}</b></td><td>{p:.3f}</td></tr>"
                   for t, p in tok["top"])
    unk = " (unknown: scored as &lt;unk&gt;)" if tok["unknown"] else ""
    return (f'<span class="tip" role="tooltip" id="{tip_id}"><b>{html.escape(_named(tok["token"]))}</b>{unk}: '
            f"p = {math.exp(lp):.4f}, surprisal {-lp:.3f} nats = {-lp / math.log(2):.3f} bits"
            f"<br>top-5 next-token guesses:<table>{rows}</table></span>")


def _title(tok: dict) -> str:
    lp = tok["logprob"]
    guesses = ", ".join(f"{_named(t)} {p:.3f}" for t, p in tok["top"])
    return (f"{_named(tok['token'])}: p={math.exp(lp):.4f}, {-lp / math.log(2):.2f} bits; "
            f"top-5: {guesses}")


def _token_line(line: dict, sep: str, n: int) -> str:
    spans = []
    for j, tok in enumerate(line["tokens"]):
        bits = -tok["logprob"] / math.log(2)
        k = surprisal_bin(bits)
        _, bg, fg = BINS[k]
        cls = f"tok s{k}" + (" eos" if tok["token"] == EOS else "") + (" unk" if tok["unknown"] else "")
        spans.append(
            f'<span class="{cls}" tabindex="0" id="t{n}-{j}" data-token="{html.escape(tok["token"])}" '
            f'data-bits="{bits:.4f}" style="background:{bg};color:{fg}" '
            f'aria-describedby="tip{n}-{j}" title="{html.escape(_title(tok))}">'
            f'{html.escape(_shown(tok["token"]))}{_tip(tok, f"tip{n}-{j}")}</span>')
    return f'<div class="line" data-line="{n}">' + sep.join(spans) + "</div>"


def _unit_line(line: dict, values: list, scale: float, sep: str) -> str:
    spans = []
    for tok, v in zip(line["tokens"], values):
        bg, fg = _diverging(v / scale)
        spans.append(f'<span class="tok" data-token="{html.escape(tok["token"])}" '
                     f'data-value="{v:.4f}" style="background:{bg};color:{fg}" '
                     f'title="{html.escape(_named(tok["token"]))}: {v:+.3f}">'
                     f"{html.escape(_shown(tok['token']))}</span>")
    return '<div class="line act">' + sep.join(spans) + "</div>"


def _gate_svg(gates: list) -> str:
    """One row per (layer, gate): the share of values < 0.1 (blue, from the left) and > 0.9
    (red, from the right) on a 0–100% bar."""
    if not gates:
        return ""
    row, label_w, bar_w = 22, 190, 420
    h = row * len(gates) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 130}" height="{h}" '
             'role="img" aria-label="gate saturation per layer" font-family="system-ui,sans-serif" '
             'font-size="12">']
    for k, g in enumerate(gates):
        y = 20 + k * row
        lo, hi = g["low"] * bar_w, g["high"] * bar_w
        name = html.escape(f"layer {g['layer']}  {g['gate']}")
        parts.append(f'<text x="0" y="{y + 13}">{name}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{bar_w}" height="16" fill="#eee"/>'
                     f'<rect x="{label_w}" y="{y}" width="{lo:.1f}" height="16" fill="#2166ac"/>'
                     f'<rect x="{label_w + bar_w - hi:.1f}" y="{y}" width="{hi:.1f}" height="16" fill="#b2182b"/>'
                     f'<text x="{label_w + bar_w + 8}" y="{y + 13}">{100 * g["low"]:.0f}% | {100 * g["high"]:.0f}%</text>')
    parts.append(f'<text x="{label_w}" y="12" fill="#2166ac">◀ share &lt; 0.1</text>'
                 f'<text x="{label_w + bar_w}" y="12" text-anchor="end" fill="#b2182b">share &gt; 0.9 ▶</text>')
    parts.append("</svg>")
    return "".join(parts)


def _json_for_script(obj) -> str:
    # Inside <script> only "</" could end the element; escaping <, > and & rules it out.
    s = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(report: dict, title: str = "") -> str:
    """The page for :func:`explain`'s report: one HTML string, nothing to fetch.  Its parts
    in the order they render: header, likelihood table, surprisal (legend and text), units,
    gates, and the report's numbers as JSON for scripts."""
    m = report["model"]
    sep = _sep(m["level"])
    data = {"model": m, "lines": [{k: v for k, v in line.items() if k != "tokens"}
                                  for line in report["lines"]]}
    return "".join([
        _header_html(m, title), _scores_html(report["lines"]),
        _surprisal_html(report["lines"], sep), _units_html(report, sep),
        _gates_html(report["gates"], m["cell"]),
        f'<script type="application/json" id="rnnkit-data">{_json_for_script(data)}</script>',
        "</body></html>\n"])


def _header_html(m: dict, title: str) -> str:
    esc = html.escape
    return "".join([
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{esc(title or 'rnnkit explain')}</title><style>{_CSS}</style></head>",
        f'<body class="{esc(m["level"])}"><h1>What the model reads</h1>',
        f'<p class="meta">{esc(title) + " — " if title else ""}{esc(m["cell"].upper())}, '
        f'{m["layers"]} × {m["hidden"]}, embedding {m["embed"]}, {esc(m["level"])} level, '
        f'vocabulary {m["vocab"]}. Hover over a token or tab to it for its probability and '
        "the model's top-5 guesses at that point.</p>"])


def _scores_html(lines: list) -> str:
    esc = html.escape
    out = ['<h2>Likelihood</h2><table id="scores"><tr><th>text</th><th>log-prob (nats)</th>'
           "<th>log10</th><th>perplexity</th><th>bits/char</th><th>predictions</th>"
           "<th>unknown</th></tr>"]
    for n, line in enumerate(lines):
        out.append(f'<tr data-line="{n}"><td class="text">{esc(line["text"])}</td>'
                   f'<td class="logprob">{line["logprob"]:.4f}</td><td>{line["log10"]:.4f}</td>'
                   f'<td class="perplexity">{line["perplexity"]:.3f}</td>'
                   f'<td class="bpc">{line["bits_per_char"]:.4f}</td><td>{line["predictions"]}</td>'
                   f'<td>{line["unknown"]}</td></tr>')
    out.append('</table><p class="small">As <code>rnnkit score</code>: each line read from the '
               "zero state fed &lt;eos&gt;, every token predicted and then the closing &lt;eos&gt; "
               "(⏎); perplexity = exp(−log-prob / predictions); bits per character = "
               "−log-prob / ln 2 / (characters + 1 for the line end).</p>")
    return "".join(out)


def _surprisal_html(lines: list, sep: str) -> str:
    out = ['<h2>Surprisal</h2><div class="legend" id="legend" aria-label="surprisal legend">'
           '<span style="border:none">surprisal −log₂ p:</span>']
    for k, (lo, bg, fg) in enumerate(BINS):
        hi = BINS[k + 1][0] if k + 1 < len(BINS) else None
        label = f"{lo}–{hi} bits" if hi is not None else f"≥ {lo} bits"
        out.append(f'<span class="s{k}" style="background:{bg};color:{fg}">{label}</span>')
    out.append('</div><p class="small">Light: the model expected the token; dark: it was '
               "surprised. Underlined: a token outside the vocabulary.</p>")
    out.append('<div id="text">')
    out.extend(_token_line(line, sep, n) for n, line in enumerate(lines))
    out.append("</div>")
    return "".join(out)


def _units_html(report: dict, sep: str) -> str:
    out = ['<h2>Inside the network</h2><p class="small">']
    if report["units_chosen"]:
        out.append("The chosen units")
    else:
        out.append("The units whose activation correlates best (Pearson r over the tokens) with "
                   "a simple feature of the text — inside quotes, inside parentheses, position "
                   "in the line — found automatically")
    out.append(": the value after reading each token, blue negative, red positive (hidden "
               "states lie in [−1, 1]; memory cells are scaled by their largest |value|).</p>")
    out.append('<div id="units">')
    for row in report["units"]:
        allv = [v for vs in row["values"] for v in vs]
        scale = max(1.0, max(abs(v) for v in allv)) if row["kind"] == "c" else 1.0
        what = "memory cell c" if row["kind"] == "c" else "hidden unit h"
        desc = f"layer {row['layer']} {what}[{row['unit']}]"
        if row["feature"]:
            desc += f" — r = {row['r']:+.2f} with “{row['feature']}”"
        if scale != 1.0:
            desc += f" (scaled by {scale:.2f})"
        out.append(f'<div class="unit">{html.escape(desc)}</div>')
        for line, vals in zip(report["lines"], row["values"]):
            out.append(_unit_line(line, vals, scale, sep))
    out.append("</div>")
    return "".join(out)


def _gates_html(gates: list, cell: str) -> str:
    out = ['<h2>Gate saturation</h2><p class="small">How often each gate is nearly shut '
           "(&lt; 0.1, blue) or wide open (&gt; 0.9, red), over every unit and token."]
    if cell == "rnn":
        out.append(" A plain RNN has no gates; shown instead is how often its tanh state is "
                   "saturated (&lt; −0.9 / &gt; 0.9).")
    out.append(f'</p><div id="gates">{_gate_svg(gates)}</div><table id="gate-table"><tr><th>layer</th>'
               "<th>gate</th><th>&lt; 0.1</th><th>&gt; 0.9</th></tr>")
    for g in gates:
        out.append(f'<tr><td>{g["layer"]}</td><td>{html.escape(g["gate"])}</td>'
                   f'<td>{100 * g["low"]:.1f}%</td><td>{100 * g["high"]:.1f}%</td></tr>')
    out.append("</table>")
    return "".join(out)
