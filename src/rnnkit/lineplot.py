"""A small line chart written straight to PNG with NumPy and zlib — no plotting library.

``rnnkit train`` draws its loss curve at the end of every run; importing matplotlib and
drawing with it cost ~1–2 s, a fixed cost a user waits for on every run.  This draws the same
kind of chart (grid, axes with round tick values, one line per series, markers, a legend) in
a few milliseconds.  Text is a 5x7 bitmap font covering digits, a few signs and the letters
of the labels rnnkit uses.
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np

# 5x7 glyphs, one string of 7 rows per character ("#" = ink).
_GLYPHS = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("####.", "....#", "....#", ".###.", "....#", "....#", "####."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "+": (".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."),
    "e": (".....", ".....", ".###.", "#...#", "#####", "#....", ".###."),
    "s": (".....", ".....", ".####", "#....", ".###.", "....#", "####."),
    "t": (".#...", ".#...", "####.", ".#...", ".#...", ".#..#", "..##."),
    "p": (".....", ".....", "####.", "#...#", "####.", "#....", "#...."),
    "l": (".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "o": (".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."),
    "r": (".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."),
    "a": (".....", ".....", ".###.", "....#", ".####", "#...#", ".####"),
    "i": ("..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."),
    "n": (".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"),
    "v": (".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "d": ("....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"),
    " ": (".....",) * 7,
}
_FONT = {c: np.array([[ch == "#" for ch in row] for row in rows]) for c, rows in _GLYPHS.items()}

BLUE = (31, 119, 180)
ORANGE = (255, 127, 14)
_GRID = (225, 225, 225)
_INK = (0, 0, 0)


def _text(img, x, y, s, color=_INK, scale=1):
    """Draw ``s`` with its top-left corner at (x, y); unknown characters are skipped."""
    for ch in s:
        g = _FONT.get(ch)
        if g is not None:
            g = np.kron(g, np.ones((scale, scale), bool))
            h, w = g.shape
            region = img[y:y + h, x:x + w]
            region[g[:region.shape[0], :region.shape[1]]] = color
        x += 6 * scale


def _text_width(s, scale=1):
    return 6 * scale * len(s) - scale


def _line(img, x0, y0, x1, y1, color, width=1):
    """A straight segment, ``width`` pixels thick, by sampling along its length."""
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.rint(np.linspace(x0, x1, n)).astype(int)
    ys = np.rint(np.linspace(y0, y1, n)).astype(int)
    H, W = img.shape[:2]
    for d in range(width):
        off = d - width // 2
        for ax, ay in ((xs + off, ys), (xs, ys + off)):
            ok = (ax >= 0) & (ax < W) & (ay >= 0) & (ay < H)
            img[ay[ok], ax[ok]] = color


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("tick range must be finite")
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
    return f"{v:.6g}"


def line_chart_png(series, *, width=700, height=420, xlabel="step", ylabel="loss") -> bytes:
    """PNG bytes of a line chart.

    ``series``: list of (label, points [(x, y), ...], color (r, g, b), markers: bool).
    """
    pts = [p for _, ps, _, _ in series for p in ps]
    if not pts:
        raise ValueError("nothing to plot")
    xs = np.array([p[0] for p in pts], float)
    ys = np.array([p[1] for p in pts], float)
    x_lo, x_hi = float(xs.min()), float(xs.max())
    y_lo, y_hi = float(ys.min()), float(ys.max())
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    pad = (y_hi - y_lo) * 0.05 or (abs(y_hi) * 0.05 or 1.0)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 70, width - 20, 20, height - 45

    def px(x):
        return left + (x - x_lo) / (x_hi - x_lo) * (right - left)

    def py(y):
        return bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)

    for v in nice_ticks(x_lo, x_hi, 6):
        if x_lo <= v <= x_hi:
            X = int(round(px(v)))
            _line(img, X, top, X, bottom, _GRID)
            _line(img, X, bottom, X, bottom + 4, _INK)
            s = _fmt(v)
            _text(img, X - _text_width(s) // 2, bottom + 8, s)
    for v in nice_ticks(y_lo, y_hi, 5):
        if y_lo <= v <= y_hi:
            Y = int(round(py(v)))
            _line(img, left, Y, right, Y, _GRID)
            _line(img, left - 4, Y, left, Y, _INK)
            s = _fmt(v)
            _text(img, left - 8 - _text_width(s), Y - 3, s)
    _line(img, left, top, left, bottom, _INK)
    _line(img, left, bottom, right, bottom, _INK)
    _line(img, left, top, right, top, _INK)
    _line(img, right, top, right, bottom, _INK)
    _text(img, (left + right - _text_width(xlabel, 2)) // 2, height - 18, xlabel, scale=2)
    _text(img, 6, top, ylabel, scale=2)
    for label, ps, color, markers in series:
        P = [(px(x), py(y)) for x, y in ps]
        for (a, b), (c, d) in zip(P, P[1:]):
            _line(img, a, b, c, d, color, width=2)
        if markers or len(P) == 1:
            for a, b in P:
                A, B = int(round(a)), int(round(b))
                img[max(B - 2, 0):B + 3, max(A - 2, 0):A + 3] = color
    # legend, top right
    y = top + 10
    for label, _, color, _ in series:
        w = _text_width(label, 2)
        x = right - 20 - w - 30
        _line(img, x, y + 6, x + 22, y + 6, color, width=3)
        _text(img, x + 30, y, label, scale=2)
        y += 22
    return _encode_png(img)


def _encode_png(img: np.ndarray) -> bytes:
    """8-bit RGB PNG of an (H, W, 3) uint8 array (no filtering, zlib level 6)."""
    H, W, _ = img.shape
    raw = np.concatenate([np.zeros((H, 1), np.uint8), img.reshape(H, W * 3)], axis=1)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))
