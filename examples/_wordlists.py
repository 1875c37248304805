"""Word lists of several languages from the ``wordfreq`` package (installed with
``pip install -e .[data]``; it ships its lists, no network): shared by ``language_id.py``
and ``generate_words.py``.

Each language contributes its ``top`` most frequent words made only of letters, at least two
of them; a word found in more than one language's list (``de``, ``in``, ``film``) is dropped
everywhere, since its letters cannot tell the languages apart.  The words are split 80/10/10
into train / validation / test with a fixed seed, the same split for both scripts.
"""

from __future__ import annotations

import numpy as np

LANGUAGES = ("en", "de", "fr", "es", "it", "nl")
NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
         "nl": "Dutch"}


def load(languages=LANGUAGES, top=10000, seed=0):
    """``(train, val, test)``: lists of ``(word, language index)``."""
    import wordfreq

    lists = {}
    for lang in languages:
        words = [w for w in wordfreq.top_n_list(lang, top) if w.isalpha() and len(w) >= 2]
        lists[lang] = list(dict.fromkeys(words))
    seen = {}
    for lang, words in lists.items():
        for w in words:
            seen[w] = seen.get(w, 0) + 1
    data = [(w, k) for k, lang in enumerate(languages) for w in lists[lang] if seen[w] == 1]
    order = np.random.default_rng(seed).permutation(len(data))
    data = [data[i] for i in order]
    n = len(data)
    a, b = int(0.8 * n), int(0.9 * n)
    return data[:a], data[a:b], data[b:]
