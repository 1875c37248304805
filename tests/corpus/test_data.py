"""Data pipeline: vocabulary, tokenizers, strict text reading, default corpus, batching."""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnkit.data import (EOS, PAD, UNK, CharTokenizer, StreamBatcher, Vocab, WordTokenizer,
                         default_corpus, default_corpus_info, minibatch_indices, pad_sequences,
                         padded_batches, read_text, split_lines, split_validation,
                         stream_batches, tokenize_text)
from rnnkit.data import corpus as corpus_mod
from rnnkit.data.corpus import _build_default_corpus, _prose_sentences


# ----------------------------------------------------------------------------- Vocab

def test_vocab_build_order_counts_then_token():
    tokens = list("bbbaaccd") + [EOS, EOS]
    v = Vocab.build(tokens)
    # specials first; then count descending; ties (a,c: 2 each) by token string
    assert v.tokens == [PAD, UNK, EOS, "b", "a", "c", "d"]
    assert (v.pad_id, v.unk_id, v.eos_id) == (0, 1, 2)
    assert v.id("b") == 3 and v.id("d") == 6 and v.id("zzz") == 1


def test_vocab_min_count_and_max_size():
    tokens = list("bbbaaccd")
    assert Vocab.build(tokens, min_count=2).tokens == [PAD, UNK, EOS, "b", "a", "c"]
    # max_size counts the specials: 5 ids leave room for two tokens; "c" loses the tie to "a"
    assert Vocab.build(tokens, max_size=5).tokens == [PAD, UNK, EOS, "b", "a"]
    assert Vocab.build(tokens, max_size=3).tokens == [PAD, UNK, EOS]
    # a bigger vocabulary only appends ids
    small, big = Vocab.build(tokens, max_size=4), Vocab.build(tokens)
    assert big.tokens[: len(small)] == small.tokens
    with pytest.raises(ValueError, match="max_size"):
        Vocab.build(tokens, max_size=2)
    with pytest.raises(ValueError, match="min_count"):
        Vocab.build(tokens, min_count=0)


def test_vocab_build_is_independent_of_input_order():
    rng = np.random.default_rng(0)
    tokens = list("the quick brown fox jumps over the lazy dog")
    shuffled = [tokens[i] for i in rng.permutation(len(tokens))]
    assert Vocab.build(tokens) == Vocab.build(shuffled)


def test_encode_decode_and_unknowns():
    v = Vocab.build(list("abcab"))
    ids = v.encode(["a", "b", "z", EOS, "c", "?"])
    assert ids.dtype == np.int64
    assert ids.tolist() == [3, 4, 1, 2, 5, 1]
    ids2, n_unk = v.encode(["a", "z", "q", UNK], return_unknown=True)
    assert ids2.tolist() == [3, 1, 1, 1] and n_unk == 3
    assert v.decode(ids) == ["a", "b", UNK, EOS, "c", UNK]
    assert v.decode(np.array([], dtype=np.int64)) == []
    with pytest.raises(ValueError, match="outside the vocabulary"):
        v.decode([0, 6])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        v.decode([-1])


def test_vocab_json_round_trip():
    v = Vocab.build(tokenize_text("hello world\nhej världen\n", "word"))
    obj = v.to_json()
    again = Vocab.from_json(json.loads(json.dumps(obj)))
    assert again == v and again.tokens == v.tokens
    assert obj["format"] == "rnnkit.vocab" and obj["format_version"] == 1


@pytest.mark.parametrize("obj, match", [
    ([], "expected a JSON object"),
    ({"format": "rnnkit.vocab", "format_version": 1}, "bad keys"),
    ({"format": "other", "format_version": 1, "tokens": [PAD, UNK, EOS]}, "format is"),
    ({"format": "rnnkit.vocab", "format_version": "1", "tokens": [PAD, UNK, EOS]}, "integer"),
    ({"format": "rnnkit.vocab", "format_version": True, "tokens": [PAD, UNK, EOS]}, "integer"),
    ({"format": "rnnkit.vocab", "format_version": 2, "tokens": [PAD, UNK, EOS]}, "unsupported"),
    ({"format": "rnnkit.vocab", "format_version": 1, "tokens": "abc"}, "must be a list"),
    ({"format": "rnnkit.vocab", "format_version": 1, "tokens": [UNK, PAD, EOS]}, "first tokens"),
    ({"format": "rnnkit.vocab", "format_version": 1, "tokens": [PAD, UNK, EOS, "a", "a"]}, "twice"),
    ({"format": "rnnkit.vocab", "format_version": 1, "tokens": [PAD, UNK, EOS, 3]}, "string"),
    ({"format": "rnnkit.vocab", "format_version": 1, "tokens": [PAD, UNK, EOS, ""]}, "string"),
    ({"format": "rnnkit.vocab", "format_version": 1, "tokens": [PAD, UNK, EOS], "x": 1}, "unexpected"),
])
def test_vocab_from_json_rejects_malformed(obj, match):
    with pytest.raises(ValueError, match=match) as info:
        Vocab.from_json(obj)
    assert "\n" not in str(info.value)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children,
                                                                       max_size=5),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    _json,
    st.fixed_dictionaries({"format": st.just("rnnkit.vocab"), "format_version": _json,
                           "tokens": _json}),
    st.fixed_dictionaries({"format": st.just("rnnkit.vocab"), "format_version": st.just(1),
                           "tokens": st.lists(st.text(max_size=3), max_size=8)}),
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
))
def test_vocab_from_json_fuzz_only_raises_value_error(obj):
    try:
        v = Vocab.from_json(obj)
    except ValueError as e:
        assert "\n" not in str(e)
    else:
        assert v.tokens[:3] == [PAD, UNK, EOS] and len(set(v.tokens)) == len(v)


_GOOD_VOCAB_BYTES = json.dumps(Vocab.build(list("hello world")).to_json()).encode()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)),
                min_size=1, max_size=4))
def test_vocab_file_bytes_fuzz(edits):
    # A saved vocabulary with random byte edits: parsing plus validation only raise ValueError
    # (JSONDecodeError and UnicodeDecodeError are ValueErrors too).
    b = bytearray(_GOOD_VOCAB_BYTES)
    for kind, pos, val in edits:
        pos %= len(b) + 1
        if kind == 0 and pos < len(b):
            b[pos] = val
        elif kind == 1:
            b.insert(pos, val)
        else:
            del b[pos:]
    try:
        v = Vocab.from_json(json.loads(bytes(b)))
    except ValueError:
        return
    assert v.tokens[:3] == [PAD, UNK, EOS] and len(set(v.tokens)) == len(v)


# ----------------------------------------------------------------------------- tokenizers

def test_char_tokenizer_lines_and_eos():
    text = "ab\r\nc\n\nd"
    assert split_lines(text) == ["ab", "c", "", "d"]
    tokens = CharTokenizer().tokenize(text)
    assert tokens == ["a", "b", EOS, "c", EOS, EOS, "d", EOS]
    assert tokenize_text("ab\n") == ["a", "b", EOS]  # a final line break adds no empty line
    assert CharTokenizer().detokenize(tokens + [PAD]) == "ab\nc\n\nd\n"
    # form feed is a character of the line, not a line break
    assert tokenize_text("a\x0cb") == ["a", "\x0c", "b", EOS]


def test_word_tokenizer():
    text = "The cat sat.\n   \nIt's <unk> here!\n"
    assert WordTokenizer().tokenize(text) == ["The", "cat", "sat.", EOS, "It's", "<unk>", "here!", EOS]
    assert tokenize_text(text, "word", split_punct=True) == [
        "The", "cat", "sat", ".", EOS, "It", "'", "s", "<", "unk", ">", "here", "!", EOS]
    assert WordTokenizer().detokenize(["a", "b", EOS, "c"]) == "a b\nc"
    with pytest.raises(ValueError, match="unknown tokenization level"):
        tokenize_text("x", "byte")


def test_literal_unk_word_maps_to_unk_id():
    v = Vocab.build(tokenize_text("a <unk> b\n", "word"))
    assert UNK not in v.tokens[3:]
    assert v.encode(tokenize_text("<unk> a\n", "word")).tolist() == [1, v.id("a"), 2]


# ----------------------------------------------------------------------------- read_text

def test_read_text_ok_and_bom(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("\ufeffhéllo\nworld\n".encode("utf-8"))
    assert read_text(p) == "héllo\nworld\n"


@pytest.mark.parametrize("content, match", [
    (b"", "empty"),
    (b"  \n\t\n", "only whitespace"),
    (b"abc\x00def", "NUL byte at offset 3"),
    (b"ok line\nbad \xff here", "not valid UTF-8: byte 0xff at offset 12"),
    (b"caf\xc3", "offset 3"),  # truncated multi-byte sequence at the end
])
def test_read_text_refuses(tmp_path, content, match):
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        read_text(p)
    assert str(p) in str(info.value) and "\n" not in str(info.value)


def test_read_text_missing_and_directory(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="is a directory"):
        read_text(tmp_path)


# ----------------------------------------------------------------------------- corpus

def test_split_validation_at_line_boundary():
    text = "".join(f"line {i}\n" for i in range(10))  # 10 lines of 7 chars
    train, val = split_validation(text, 0.2)
    assert train + val == text
    assert val == "line 8\nline 9\n"
    # the cut moves to the nearest line start
    train, val = split_validation(text, 0.25)  # 17.5 chars -> cut 52 -> nearest start 49
    assert val == "line 7\nline 8\nline 9\n"
    train, val = split_validation("abcdefghij", 0.3)  # no line breaks: exact cut
    assert (train, val) == ("abcdefg", "hij")
    with pytest.raises(ValueError, match="empty"):
        split_validation("ab", 0.1)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        split_validation(text, 1.0)


def test_prose_filter():
    doc = ("Return the sum of two numbers.\n\n"
           "    >>> add(1, 2)\n    3\n\n"
           "This line calls foo_bar() and is code-like.\n"
           "Short one.\n"
           "The value of x = 3 is wrong.  Another fine sentence follows here!\n\n"
           "    indented paragraph that reads like prose and is long enough.\n")
    assert _prose_sentences(doc) == ["Return the sum of two numbers.",
                                     "Another fine sentence follows here!"]


def test_default_corpus_small_is_deterministic_prose():
    text, info = _build_default_corpus.__wrapped__(20_000)
    again, _ = _build_default_corpus.__wrapped__(20_000)
    assert text == again
    assert 15_000 < len(text.encode()) <= 20_000
    lines = text.split("\n")
    assert lines[-1] == "" and all(lines[:-1])
    assert len(set(lines[:-1])) == len(lines) - 1  # no repeated sentence
    assert all(s.isascii() and s[0].isupper() and s[-1] in ".!?" and ">>>" not in s
               for s in lines[:-1])
    assert info["bytes"] == len(text) and info["lines"] == len(lines) - 1
    # a smaller cap is a prefix of a larger one: the order is fixed
    small = _build_default_corpus.__wrapped__(5_000)[0]
    assert small == text[: len(small)] and len(small) > 4_000


def test_default_corpus_full_build_and_info():
    # Speed is not asserted here (timings on a shared machine are noise); size and content are.
    _build_default_corpus.cache_clear()
    text = default_corpus()
    assert len(text) > 300_000  # ~0.7 MB on CPython 3.11
    info = default_corpus_info()  # memoised: no second build
    assert info["bytes"] == len(text) and len(info["sha256"]) == 64
    json.dumps(info)
    v = Vocab.build(tokenize_text(text))
    assert 50 < len(v) < 100  # printable ASCII characters


def _cache_files(d):
    return sorted(p.name for p in d.iterdir() if p.name.startswith("default-corpus-"))


def test_default_corpus_disk_cache_is_written_then_read(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path))
    text, info = _build_default_corpus.__wrapped__(20_000)
    (name,) = _cache_files(tmp_path)
    assert name.endswith(".json")
    saved = json.loads((tmp_path / name).read_text())
    assert saved == {"text": text, "info": info}

    def no_parse(*a):
        raise AssertionError("the cached corpus should have been read, not parsed again")

    monkeypatch.setattr(corpus_mod, "_extract", no_parse)
    assert _build_default_corpus.__wrapped__(20_000) == (text, info)
    # another cap is another corpus: it is not served from the first one's file
    with pytest.raises(AssertionError, match="cached corpus"):
        _build_default_corpus.__wrapped__(10_000)


def test_default_corpus_cache_keeps_only_the_newest(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path))
    (tmp_path / "notes.txt").write_text("not ours")
    _build_default_corpus.__wrapped__(5_000)
    (first,) = _cache_files(tmp_path)
    text, info = _build_default_corpus.__wrapped__(8_000)  # another key: the old one goes
    (second,) = _cache_files(tmp_path)
    assert second != first
    assert json.loads((tmp_path / second).read_text()) == {"text": text, "info": info}
    assert (tmp_path / "notes.txt").read_text() == "not ours"  # only its own files


@pytest.mark.parametrize("damage", ["truncated", "edited", "not json"])
def test_default_corpus_damaged_cache_is_rebuilt(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path))
    text, info = _build_default_corpus.__wrapped__(20_000)
    (name,) = _cache_files(tmp_path)
    f = tmp_path / name
    raw = f.read_text()
    if damage == "truncated":
        f.write_text(raw[: len(raw) // 2])
    elif damage == "edited":  # valid JSON whose text no longer matches its digest
        saved = json.loads(raw)
        saved["text"] = saved["text"].replace("e", "a", 1)
        f.write_text(json.dumps(saved))
    else:
        f.write_bytes(b"\xff\xfe garbage")
    assert _build_default_corpus.__wrapped__(20_000) == (text, info)
    assert json.loads(f.read_text()) == {"text": text, "info": info}  # mended
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_default_corpus_cache_key_follows_the_sources(tmp_path):
    root = tmp_path / "lib"
    (root / "pkg").mkdir(parents=True)
    a, b = root / "a.py", root / "pkg" / "b.py"
    a.write_text('"""Module a."""\n')
    b.write_text('"""Module b."""\n')
    files = corpus_mod._stdlib_sources(root)
    assert files == [a, b]
    key = corpus_mod._cache_key(root, files, 1000)
    assert corpus_mod._cache_key(root, files, 1000) == key
    assert corpus_mod._cache_key(root, files, 999) != key
    st = b.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert corpus_mod._cache_key(root, files, 1000) != key
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert corpus_mod._cache_key(root, files, 1000) == key
    st = a.stat()
    a.write_text('"""Module a, longer."""\n')  # another size, the time set back
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert corpus_mod._cache_key(root, files, 1000) != key


def test_default_corpus_without_a_writable_cache(tmp_path, monkeypatch):
    expected = _build_default_corpus.__wrapped__(5_000)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(blocker / "rnnkit"))
    assert _build_default_corpus.__wrapped__(5_000) == expected
    assert blocker.read_text() == "a file where the cache directory would go"
    # the cache file's name taken by a directory: read and write both fail, quietly
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path / "c"))
    _build_default_corpus.__wrapped__(5_000)
    (name,) = _cache_files(tmp_path / "c")
    (tmp_path / "c" / name).unlink()
    (tmp_path / "c" / name).mkdir()
    assert _build_default_corpus.__wrapped__(5_000) == expected
    assert (tmp_path / "c" / name).is_dir() and len(list((tmp_path / "c").iterdir())) == 1
    monkeypatch.setenv("RNNKIT_CACHE_DIR", "")  # set empty: no disk cache at all
    assert corpus_mod.corpus_cache_dir() is None
    assert _build_default_corpus.__wrapped__(5_000) == expected


def test_corpus_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("RNNKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert corpus_mod.corpus_cache_dir() == tmp_path / "rnnkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert corpus_mod.corpus_cache_dir() == tmp_path / "home" / ".cache" / "rnnkit"


# ----------------------------------------------------------------------------- stream batches

def test_stream_batches_exact_layout():
    ids = np.arange(23)  # N=2 streams of S=11: [0..10], [11..21]; token 22 unused
    sb = StreamBatcher(ids, batch_size=2, seq_len=3)
    assert len(sb) == 3  # (11 - 1) // 3
    x0, y0 = sb.chunk(0)
    assert x0.dtype == np.int64
    assert x0.tolist() == [[0, 1, 2], [11, 12, 13]]
    assert y0.tolist() == [[1, 2, 3], [12, 13, 14]]
    x2, y2 = sb.chunk(2)
    assert x2.tolist() == [[6, 7, 8], [17, 18, 19]]
    assert y2.tolist() == [[7, 8, 9], [18, 19, 20]]
    chunks = list(stream_batches(ids, 2, 3))
    assert len(chunks) == 3
    for (xa, ya), (xb, yb) in zip(chunks, chunks[1:]):
        # each row continues its own stream: next input starts where the last target ended
        assert (xb[:, 0] == ya[:, -1]).all()
        assert (xb[:, 0] == xa[:, -1] + 1).all()
        assert (ya == xa + 1).all()


def test_stream_batches_resume_and_steps():
    ids = np.random.default_rng(0).integers(0, 50, size=1000)
    sb = StreamBatcher(ids, 4, 7)
    full = list(sb.epoch())
    resumed = list(sb.epoch(start=5))
    assert len(resumed) == len(full) - 5
    for (a, b), (c, d) in zip(full[5:], resumed):
        assert (a == c).all() and (b == d).all()
    n = len(sb)
    assert sb.position(n + 2) == (1, 2)
    it = sb.steps(start_step=n - 1)
    step, epoch, k, x, y = next(it)
    assert (step, epoch, k) == (n - 1, 0, n - 1) and (x == full[-1][0]).all()
    step, epoch, k, x, y = next(it)
    assert (step, epoch, k) == (n, 1, 0) and (x == full[0][0]).all()
    # chunks are copies: writing one does not change the next epoch's data
    x[:] = -1
    assert (sb.chunk(0)[0] == full[0][0]).all()


def test_stream_batches_too_short():
    with pytest.raises(ValueError, match="needs 12 tokens, it has 11"):
        StreamBatcher(np.arange(11), batch_size=3, seq_len=3)
    assert len(StreamBatcher(np.arange(12), batch_size=3, seq_len=3)) == 1
    with pytest.raises(ValueError, match="integer array"):
        StreamBatcher(np.zeros(20), 2, 2)
    with pytest.raises(ValueError, match="chunk index"):
        StreamBatcher(np.arange(12), 3, 3).chunk(1)


# ----------------------------------------------------------------------------- padded batches

def test_pad_sequences_values():
    ids, lengths = pad_sequences([[5, 6, 7], np.array([8]), [9, 10]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2] and lengths.dtype == np.int64
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        pad_sequences([[1], []])
    with pytest.raises(ValueError, match="at least one"):
        pad_sequences([])


def test_minibatch_indices_seeded_and_complete():
    a = [b.tolist() for b in minibatch_indices(10, 4, np.random.default_rng(7))]
    b = [b.tolist() for b in minibatch_indices(10, 4, np.random.default_rng(7))]
    assert a == b and [len(x) for x in a] == [4, 4, 2]
    assert sorted(sum(a, [])) == list(range(10))
    assert a != [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [x.tolist() for x in minibatch_indices(10, 4, None, drop_last=True)] == [
        [0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(TypeError, match="Generator"):
        minibatch_indices(10, 4, rng=7)


def test_padded_batches_gathers_matching_sequences():
    seqs = [np.arange(1, i + 2) for i in range(5)]  # lengths 1..5, seq i = [1..i+1]
    for idx, ids, lengths in padded_batches(seqs, 2, np.random.default_rng(1)):
        assert lengths.tolist() == [i + 1 for i in idx]
        for row, i in enumerate(idx):
            assert ids[row, : i + 1].tolist() == list(range(1, i + 2))
            assert (ids[row, i + 1:] == 0).all()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 5), st.integers(1, 6), st.integers(0, 200))
def test_stream_batches_cover_streams(N, T, extra):
    M = N * (T + 1) + extra
    sb = StreamBatcher(np.arange(M), N, T)
    S = M // N
    xs = np.concatenate([x for x, _ in sb.epoch()], axis=1)
    ys = np.concatenate([y for _, y in sb.epoch()], axis=1)
    expect = np.arange(N * S).reshape(N, S)
    assert (xs == expect[:, : xs.shape[1]]).all()
    assert (ys == expect[:, 1: xs.shape[1] + 1]).all()
    assert xs.shape[1] == (S - 1) // T * T
