"""The explain page as a person sees it: rendered by a real headless browser (Debian's
``chromium``), its DOM checked after layout — every token present and coloured, the legend,
the hover text, the top-5 box shown on keyboard focus, the text's markup inert — and a
screenshot taken.

``.ci/run`` installs chromium where it is missing; only where that cannot be done is this
test skipped, with the reason.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rnnkit.data.tokenize import get_tokenizer
from rnnkit.data.vocab import Vocab
from rnnkit.lm.bundle import load_model, save_model
from rnnkit.lm.explain import BINS, explain, render_html
from rnnkit.models.language_model import LanguageModel, LMConfig

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium browser on this machine (.ci/run installs Debian's chromium with "
           "apt-get; it could not be installed here)")

EVIL = ('x <img src=q onerror="document.body.dataset.pwned=1"> '
        '"(<script>document.body.dataset.pwned=2</script>)" & done')

# Injected into a copy of the page by this test only: once the page has loaded (failed images
# included, so an onerror= smuggled in through the text would have fired), measures what the
# browser rendered and writes it into the DOM, which --dump-dom returns.
PROBE = """<script>
window.addEventListener('load', function(){
  var toks = Array.prototype.slice.call(document.querySelectorAll('#text .tok'));
  var res = {tokens: toks.map(function(t){
      var cs = getComputedStyle(t), r = t.getBoundingClientRect();
      return {text: t.firstChild.nodeValue, token: t.dataset.token, bg: cs.backgroundColor,
              title: t.getAttribute('title'), w: r.width, h: r.height,
              tipShown: getComputedStyle(t.querySelector('.tip')).display};
  })};
  var leg = document.getElementById('legend');
  res.legend = leg ? Array.prototype.map.call(leg.querySelectorAll('span[class]'),
      function(s){ return [s.textContent, getComputedStyle(s).backgroundColor]; }) : null;
  var t = toks[3]; t.focus();
  var tip = t.querySelector('.tip'), tr = tip.getBoundingClientRect();
  var desc = document.getElementById(t.getAttribute('aria-describedby'));
  res.focus = {active: document.activeElement === t, display: getComputedStyle(tip).display,
               w: tr.width, h: tr.height, text: tip.innerText, described: desc === tip};
  res.pwned = document.body.dataset.pwned || null;
  res.svg = document.querySelectorAll('#gates svg rect').length;
  var pre = document.createElement('pre'); pre.id = 'probe-result';
  pre.textContent = JSON.stringify(res); document.body.appendChild(pre);
});
</script>"""


def chromium(*args, tmp):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--no-first-run",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, timeout=180, check=False)


def rgb(hex_colour):
    h = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(h[i:i + 2], 16) for i in (0, 2, 4)))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    text = 'He said "the cat (a grey one) sat on the mat" & left.\n' * 3
    tok = get_tokenizer("char")
    vocab = Vocab.build(tok.tokenize(text))
    m = LanguageModel(LMConfig(len(vocab), cell="lstm", num_layers=1, hidden_size=12,
                               embed_dim=6), seed=0)
    save_model(tmp / "m", m, vocab, "char")
    report = explain(load_model(tmp / "m"), ["the cat sat", EVIL], top=3)
    html_text = render_html(report, title="browser test")
    (tmp / "page.html").write_text(html_text, encoding="utf-8")
    (tmp / "probe.html").write_text(html_text.replace("</body>", PROBE + "</body>"),
                                    encoding="utf-8")
    return tmp, report


def test_dom_as_rendered(page):
    tmp, report = page
    r = chromium("--dump-dom", (tmp / "probe.html").as_uri(), tmp=tmp)
    dom = r.stdout.decode("utf-8", "replace")
    m = re.search(r'<pre id="probe-result">(.*?)</pre>', dom, re.S)
    assert m, f"no probe result from chromium: {r.stderr.decode()[-2000:]}"
    res = json.loads(m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                     .replace("&amp;", "&"))
    # Every token of both lines, in order, shown and coloured by its surprisal bin.
    expected = [t for line in report["lines"] for t in line["tokens"]]
    assert len(res["tokens"]) == len(expected)
    for got, tok in zip(res["tokens"], expected):
        assert got["token"] == tok["token"]
        assert got["text"] == ("⏎" if tok["token"] == "<eos>" else tok["token"])
        bits = -tok["logprob"] / np.log(2)
        k = max(i for i, (lo, _, _) in enumerate(BINS) if bits >= lo)
        assert got["bg"] == rgb(BINS[k][1])
        assert got["w"] > 0 and got["h"] > 0
        shown = {"<eos>": "⏎", " ": "␣"}.get(tok["token"], tok["token"])
        assert got["title"].startswith(shown + ": p=")
        assert "top-5" in got["title"]
        assert got["tipShown"] == "none"  # hidden until hover or focus
    # The text's markup is shown, never run.
    assert res["pwned"] is None
    assert "".join(t["text"] for t in res["tokens"][len(report["lines"][0]["tokens"]):]) == EVIL + "⏎"
    # The legend: one coloured box per bin.
    assert [c for _, c in res["legend"]] == [rgb(bg) for _, bg, _ in BINS]
    assert res["legend"][0][0] == "0–1 bits" and res["legend"][-1][0] == "≥ 9 bits"
    # Keyboard: a focused token shows its top-5 box.
    f = res["focus"]
    assert f["active"] and f["display"] == "block" and f["w"] > 50 and f["h"] > 30
    assert f["described"]  # screen readers read the same box (aria-describedby)
    assert "top-5" in f["text"] and "surprisal" in f["text"]
    assert res["svg"] >= 3 * 3  # three LSTM gates, three rectangles each


def test_screenshot(page):
    tmp, _ = page
    shot = tmp / "shot.png"
    r = chromium("--window-size=1100,900", "--hide-scrollbars", f"--screenshot={shot}",
                 (tmp / "page.html").as_uri(), tmp=tmp)
    assert shot.exists(), r.stderr.decode()[-2000:]
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] == 900 and img.shape[1] == 1100
    # The surprisal colours are on screen (the text is rendered, not a blank page).
    px = (img[..., :3] * 255).round().astype(int).reshape(-1, 3)
    seen = {tuple(p) for p in px[:: 7]}
    colours = [tuple(int(bg[i:i + 2], 16) for i in (1, 3, 5)) for _, bg, _ in BINS]
    assert sum(c in seen for c in colours) >= 1
    if os.environ.get("RNNKIT_EXPLAIN_SHOT"):  # to refresh examples/explain.png by hand
        shutil.copy(shot, Path(os.environ["RNNKIT_EXPLAIN_SHOT"]))
