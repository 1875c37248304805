"""Unbounded reads: every file a user gives goes through one bounded reader (rnnkit._io).

Devices, sockets and directories are refused before they are read; pipes (a FIFO, process
substitution) are read as streams that stop at the input limit or at their first bad byte;
a model file's header length is checked against the file's size before anything else is
read.  And the corpus encoding that replaced the per-character Python loop gives the same ids
as the old path, in the smallest integer type, without a list of tokens.
"""

import os
import socket
import sys
import threading
import tracemalloc
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnkit._io as rio
import rnnkit.data.tokenize as tokmod
from rnnkit._io import InputError, read_stdin_bytes
from rnnkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnnkit.data.batching import StreamBatcher
from rnnkit.data.corpus import read_text
from rnnkit.data.tokenize import get_tokenizer
from rnnkit.data.vocab import Vocab, id_dtype


# ---- helpers -----------------------------------------------------------------------------

class Pipe:
    """A pipe whose read end is a path (``/dev/fd/N``), like bash's ``<(command)``.

    A thread writes ``data`` (bytes, or a callable giving chunks until None) and counts what
    the reader took; a reader that stops early makes the writer fail with EPIPE, as ``cat``.
    """

    def __init__(self, data):
        self.r, self.w = os.pipe()
        self.written = 0
        self.path = f"/dev/fd/{self.r}"
        chunks = (lambda it=iter([data]): next(it, None)) if isinstance(data, bytes) else data
        self.thread = threading.Thread(target=self._write, args=(chunks,), daemon=True)
        self.thread.start()

    def _write(self, chunks):
        try:
            while (chunk := chunks()) is not None:
                self.written += os.write(self.w, chunk)
        except OSError:
            pass
        finally:
            os.close(self.w)

    def close(self):
        os.close(self.r)
        self.thread.join(timeout=10)


def endless(byte: bytes, size: int = 1 << 16):
    block = byte * size
    return lambda: block


@pytest.fixture
def limit(monkeypatch):
    def set_limit(n):
        monkeypatch.setenv(rio.MAX_INPUT_ENV, str(n))
    return set_limit


# ---- what is refused at once ----------------------------------------------------------------

@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_devices_refused_before_reading(path):
    with pytest.raises(InputError, match=f"^{path}: is a device, not a regular file"):
        read_text(path)


def test_symlink_to_device_and_directory_and_socket_refused(tmp_path):
    link = tmp_path / "corpus.txt"
    link.symlink_to("/dev/zero")
    with pytest.raises(InputError, match="corpus.txt: is a device"):
        read_text(link)
    with pytest.raises(InputError, match="is a directory, not a file"):
        read_text(tmp_path)
    sock_path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        with pytest.raises(InputError, match="s: is a socket, not a regular file"):
            read_text(sock_path)
    with pytest.raises(InputError, match="missing.txt: no such file"):
        read_text(tmp_path / "missing.txt")


def test_regular_file_over_the_limit_refused_from_its_size(tmp_path, limit, monkeypatch):
    p = tmp_path / "big.txt"
    p.write_text("x" * 200)
    limit(100)
    reads = []
    real_read = rio.InputFile.read
    monkeypatch.setattr(rio.InputFile, "read",
                        lambda self, n: reads.append(n) or real_read(self, n))
    with pytest.raises(InputError, match=r"big.txt: larger than the input limit of 100 bytes "
                                         r"\(100 bytes\); set RNNKIT_MAX_INPUT_BYTES to raise it"):
        read_text(p)
    assert reads == []  # not a byte read
    limit(200)
    assert read_text(p) == "x" * 200  # the limit is inclusive


def test_bad_limit_names_the_variable(tmp_path, limit):
    (tmp_path / "a.txt").write_text("abc")
    for bad in ("abc", "0", "-5"):
        limit(bad)
        with pytest.raises(InputError, match="RNNKIT_MAX_INPUT_BYTES must be a positive number"):
            read_text(tmp_path / "a.txt")


# ---- pipes are streams --------------------------------------------------------------------

def test_process_substitution_reads_as_a_stream():
    text = "".join(f"line {i} with some text é\n" for i in range(100_000))  # > 2 MiB
    pipe = Pipe(text.encode())
    try:
        assert read_text(pipe.path) == text
    finally:
        pipe.close()


def test_named_fifo_reads(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    t = threading.Thread(target=lambda: fifo.write_bytes(b"the cat sat\n"), daemon=True)
    t.start()
    assert read_text(fifo) == "the cat sat\n"
    t.join(timeout=10)


def test_stream_over_the_limit_stops_at_the_limit(limit):
    limit(3 << 20)
    pipe = Pipe(endless(b"a"))
    try:
        with pytest.raises(InputError, match=r"larger than the input limit of 3 MiB"):
            read_text(pipe.path)
    finally:
        pipe.close()
    assert pipe.written < (3 << 20) + (2 << 20)  # not read on to the end (there is none)


@pytest.mark.parametrize("byte,message", [(b"\x00", "NUL byte at offset 0"),
                                          (b"\xff", "not valid UTF-8: byte 0xff at offset 0")])
def test_binary_stream_refused_at_its_first_chunk(byte, message):
    pipe = Pipe(endless(byte))  # cat /dev/zero, cat /dev/urandom: never ends
    try:
        with pytest.raises(InputError, match=message):
            read_text(pipe.path)
    finally:
        pipe.close()
    assert pipe.written < 4 << 20


@pytest.mark.parametrize("data", [b"", b" \n\t", "\ufeffdéjà\n".encode(), b"ok\n\x00tail",
                                  "é".encode()[:1] + b"abc", b"abc" + "é".encode()[:1],
                                  b"\xff\xfet\x00", "x".encode() * 70_000 + b"\xc3\x28"])
def test_stream_and_file_say_the_same(tmp_path, data):
    p = tmp_path / "f.txt"
    p.write_bytes(data)

    def outcome(path):
        try:
            return "ok", read_text(path)
        except ValueError as e:
            return "error", str(e).split(": ", 1)[1]

    pipe = Pipe(data)
    try:
        assert outcome(pipe.path) == outcome(p)
    finally:
        pipe.close()


def test_stdin_closed_device_and_pipe(monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(InputError, match="^standard input is closed"):
        read_stdin_bytes()
    with open("/dev/zero", "rb") as zero:
        monkeypatch.setattr(sys, "stdin", zero)
        with pytest.raises(InputError, match="^standard input is a device"):
            read_stdin_bytes()
    pipe = Pipe(b"one\ntwo\n")
    try:
        with os.fdopen(os.dup(pipe.r), "rb") as f:
            monkeypatch.setattr(sys, "stdin", f)
            assert read_stdin_bytes() == b"one\ntwo\n"
    finally:
        pipe.close()


# ---- model files --------------------------------------------------------------------------

@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, {"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, {"step": 3})
    return path


@pytest.fixture
def bytes_read(monkeypatch):
    got = []
    real_read = rio.InputFile.read

    def read(self, n):
        data = real_read(self, n)
        got.append(len(data))
        return data
    monkeypatch.setattr(rio.InputFile, "read", read)
    return got


def test_sparse_gigabyte_model_file_refused_after_a_few_bytes(tmp_path, bytes_read):
    p = tmp_path / "model.safetensors"
    with open(p, "wb") as f:
        f.truncate(1 << 30)  # 1 GiB of zeros, no disk used
    with pytest.raises(CheckpointError, match="model.safetensors: .*(truncated|no safetensors)"):
        load_checkpoint(p)
    assert sum(bytes_read) <= 8


def test_padded_model_file_refused_before_its_data(ckpt, bytes_read):
    size = ckpt.stat().st_size
    with open(ckpt, "r+b") as f:
        f.truncate(1 << 30)  # a real header, then a sparse gigabyte
    with pytest.raises(CheckpointError, match="corrupted tensor data .*the header describes 48 "
                                              "bytes of tensors, the file holds"):
        load_checkpoint(ckpt)
    assert sum(bytes_read) < size  # header only


@pytest.mark.parametrize("claim", [1 << 40, 100_000_001])
def test_forged_header_length_refused_after_eight_bytes(ckpt, claim, bytes_read):
    data = bytearray(ckpt.read_bytes())
    data[:8] = claim.to_bytes(8, "little")
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"the header claims {claim} bytes"):
        load_checkpoint(ckpt)
    assert sum(bytes_read) <= 8 + 64


def test_model_symlink_to_device_and_model_from_a_pipe(ckpt, tmp_path):
    link = tmp_path / "zero.safetensors"
    link.symlink_to("/dev/zero")
    with pytest.raises(CheckpointError, match="zero.safetensors: is a device"):
        load_checkpoint(link)
    pipe = Pipe(ckpt.read_bytes())
    try:
        arrays, meta = load_checkpoint(pipe.path)
    finally:
        pipe.close()
    assert meta == {"step": 3} and np.array_equal(arrays["w"], np.arange(12).reshape(3, 4))


def test_endless_model_stream_refused(bytes_read):
    pipe = Pipe(endless(b"\xff"))  # header length 2**64-1
    try:
        with pytest.raises(CheckpointError, match="header claims"):
            load_checkpoint(pipe.path)
    finally:
        pipe.close()
    assert sum(bytes_read) <= 8 + 64


# ---- encoding: same ids as the old path, smallest dtype, no token list -----------------------

ALPHABET = st.sampled_from(list("ab cz.\n\r\t") + ["\r\n", "é", "日本", "😀", "\u2028", "\x1c",
                                                    "<unk>", "<eos>", " <pad> ", "\ud800", "ÿ"])
LEVELS = [("char", {}), ("word", {}), ("word", {"split_punct": True})]


def _old(tok, train, text, min_count=1):
    vocab = Vocab.build(tok.tokenize(train), min_count=min_count)
    return vocab, vocab.encode(tok.tokenize(text), return_unknown=True)


@pytest.mark.parametrize("level,opts", LEVELS, ids=["char", "word", "word-punct"])
@pytest.mark.parametrize("block", [5, 1 << 20], ids=["tiny-blocks", "default-blocks"])
@settings(max_examples=60, deadline=None)
@given(train=st.lists(ALPHABET, max_size=40).map("".join),
       text=st.lists(ALPHABET, max_size=40).map("".join), min_count=st.integers(1, 2))
def test_bulk_encoding_equals_token_list_path(level, opts, block, train, text, min_count):
    saved = tokmod._BLOCK
    tokmod._BLOCK = block  # small blocks: every boundary case of the block split is hit
    try:
        tok = get_tokenizer(level, **opts)
        vocab, (old_ids, old_unknown) = _old(tok, train, text, min_count)
        assert Vocab.from_counts(tok.count(train), min_count=min_count) == vocab
        assert tok.count(train) == Counter(t for t in tok.tokenize(train) if t != "<eos>")
        ids, unknown = tok.encode(text, vocab, return_unknown=True)
    finally:
        tokmod._BLOCK = saved
    assert ids.dtype == vocab.id_dtype
    assert ids.astype(np.int64).tolist() == old_ids.tolist() and unknown == old_unknown


def test_encoding_a_large_varied_text_matches():
    rng = np.random.default_rng(0)
    pieces = ["the", "cat", "sät", "日本語", "\n", "\r\n", "\r", " ", "  ", ".", "😀", "\n\n"]
    text = "".join(rng.choice(pieces, size=400_000))  # several blocks, every line break kind
    for level, opts in LEVELS:
        tok = get_tokenizer(level, **opts)
        vocab, (old_ids, old_unknown) = _old(tok, text[: len(text) // 2], text)
        ids, unknown = tok.encode(text, vocab, return_unknown=True)
        assert np.array_equal(ids, old_ids) and unknown == old_unknown


@pytest.mark.parametrize("V,dtype", [(3, np.uint8), (256, np.uint8), (257, np.uint16),
                                     (65536, np.uint16), (65537, np.int32)])
def test_smallest_id_dtype(V, dtype):
    assert id_dtype(V) == dtype
    vocab = Vocab(["<pad>", "<unk>", "<eos>"] + [f"w{i}" for i in range(V - 3)])
    ids = get_tokenizer("word").encode(f"w{V - 4} w0 zz\n" if V > 3 else "zz\n", vocab)
    assert ids.dtype == dtype and int(ids.max()) < V


def test_encoding_memory_is_a_small_multiple_of_the_text():
    text = "the quick brown fox jumps over the lazy dog.\n" * 100_000  # 4.5 MB
    tok = get_tokenizer("char")
    vocab = Vocab.from_counts(tok.count(text))
    tracemalloc.start()
    try:
        ids = tok.encode(text, vocab)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # ids: one byte a character; the old path held an 8-byte pointer and an 8-byte id each.
    assert ids.nbytes == len(text) and peak < 3 * len(text)


def test_stream_batcher_keeps_the_ids_dtype_and_gives_int64_chunks():
    ids = np.arange(200, dtype=np.int64) % 250
    compact = ids.astype(np.uint8)
    a, b = StreamBatcher(ids, 4, 5), StreamBatcher(compact, 4, 5)
    assert b._streams.dtype == np.uint8
    for k in range(len(a)):
        (xa, ya), (xb, yb) = a.chunk(k), b.chunk(k)
        assert xb.dtype == yb.dtype == np.int64
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)


# ---- errors while running name their file ------------------------------------------------

def test_named_errors_puts_the_file_on_a_bare_oserror(tmp_path):
    import errno

    with pytest.raises(OSError) as info:
        with rio.named_errors(tmp_path / "metrics.jsonl"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(tmp_path / "metrics.jsonl")
    with pytest.raises(FileNotFoundError) as info:  # one that names its file is left alone
        with rio.named_errors("other"):
            open(tmp_path / "missing", "rb")
    assert info.value.filename == str(tmp_path / "missing")


def test_a_read_failing_while_running_is_an_oserror_naming_the_file(ckpt, monkeypatch):
    import errno

    def failing_read(self, n):
        raise OSError(errno.EIO, f"{self.name}: cannot read it (Input/output error)")
    monkeypatch.setattr(rio.InputFile, "read", failing_read)
    with pytest.raises(OSError) as info:  # not a CheckpointError: the file is not to blame
        load_checkpoint(ckpt)
    assert not isinstance(info.value, ValueError) and info.value.errno == errno.EIO
    assert str(ckpt) in info.value.strerror
