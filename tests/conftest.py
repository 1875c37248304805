"""Fixtures shared by the test modules.

``corpus`` writes the module's ``TEXT`` to a file; ``trained_run`` trains a small language
model on it with the options the module's ``lm_options(out, corpus)`` gives (once per
module) and returns ``(model directory, training summary)``; ``trained`` is that directory.
"""

import io
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _corpus_cache(tmp_path_factory):
    """The built default corpus is cached on disk (rnnkit.data.corpus.corpus_cache_dir): the
    tests, and the commands they run, keep theirs apart from the user's, in pytest's own
    temporary directory (cleaned up with it)."""
    if "RNNKIT_CACHE_DIR" in os.environ:
        yield
        return
    os.environ["RNNKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("rnnkit-cache"))
    yield
    os.environ.pop("RNNKIT_CACHE_DIR", None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, request):
    p = tmp_path_factory.mktemp("corpus") / "train.txt"
    p.write_text(request.module.TEXT, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, corpus, request):
    from rnnkit.lm.train import Trainer

    out = tmp_path_factory.mktemp("lm") / "model"
    summary = Trainer(request.module.lm_options(out, corpus), stream=io.StringIO()).run()
    return out, summary


@pytest.fixture(scope="module")
def trained(trained_run):
    return trained_run[0]
