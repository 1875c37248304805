"""The built-in PNG line chart (rnnkit.lineplot) that draws the training loss curve."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from rnnkit.lineplot import BLUE, ORANGE, _encode_png, line_chart_png, nice_ticks


def _decode(png: bytes) -> np.ndarray:
    """(H, W, 3) pixels of an unfiltered 8-bit RGB PNG (what _encode_png writes)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(png):
        n = struct.unpack(">I", png[pos:pos + 4])[0]
        kind, body = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + n]
        crc = struct.unpack(">I", png[pos + 8 + n:pos + 12 + n])[0]
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
            assert body[8:10] == bytes([8, 2])  # 8-bit RGB
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    W, H = size
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(H, 1 + 3 * W)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(H, W, 3)


def test_encode_roundtrip():
    img = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    assert (_decode(_encode_png(img)) == img).all()


def test_chart_draws_each_series_in_its_colour_where_it_lies():
    train = [(s, 4.0 - s / 100) for s in range(1, 301)]  # falls from top-left to bottom-right
    val = [(100, 3.5), (200, 2.5), (300, 1.5)]
    img = _decode(line_chart_png([("train", train, BLUE, False),
                                  ("validation", val, ORANGE, True)]))
    assert img.shape == (420, 700, 3)
    blue = np.all(img == BLUE, axis=-1)
    orange = np.all(img == ORANGE, axis=-1)
    assert blue.sum() > 500 and orange.sum() > 200
    ys, xs = np.nonzero(blue[:, 70:600])  # the line, not the legend sample
    left, right = ys[xs < 100].mean(), ys[xs > 400].mean()
    assert left < right  # the loss falls: higher on the image at the start
    # white background, black frame
    assert (img[200, 300] == 255).all() or blue[200, 300] or orange[200, 300]
    assert (img[20, 100:600] == 0).all()


def test_single_point_and_flat_series():
    img = _decode(line_chart_png([("train", [(5, 2.0)], BLUE, False)]))
    assert np.all(img == BLUE, axis=-1).sum() >= 9  # one marker at least
    img = _decode(line_chart_png([("train", [(1, 1.0), (2, 1.0)], BLUE, False)]))
    assert np.all(img == BLUE, axis=-1).any()
    with pytest.raises(ValueError):
        line_chart_png([("train", [], BLUE, False)])


@pytest.mark.parametrize("lo, hi, want", [(0, 10, [0, 2, 4, 6, 8, 10]),
                                          (1, 400, [100, 200, 300, 400]),
                                          (0.53, 0.61, [0.54, 0.56, 0.58, 0.6])])
def test_nice_ticks(lo, hi, want):
    got = nice_ticks(lo, hi, 5)
    assert np.allclose(got, want)
