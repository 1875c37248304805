"""Checkpoints: named arrays plus a JSON dict in one safetensors file, written atomically.

File format (``format_version`` 1): a standard safetensors file (an 8-byte little-endian header
length, a JSON header, then the raw little-endian tensor bytes) whose ``__metadata__`` holds

- ``rnnkit.format``: ``"rnnkit.checkpoint"``
- ``rnnkit.format_version``: ``"1"``
- ``rnnkit.meta``: the caller's ``meta`` dict as strict JSON (the model config, step, ...)
- ``rnnkit.sha256``: SHA-256 over the meta JSON and every array's name, dtype, shape and bytes.

Safetensors was chosen over ``.npz`` because its reader has no pickle code path at all (an
``.npz`` is one ``allow_pickle`` flag away from running code) and other tools read it as is.
Loading checks the format name, the version, the tensor layout and the checksum, so truncated,
corrupted, hand-edited and foreign files are refused with a :class:`CheckpointError` naming the
file.  The checksum catches accidents and naive edits; it is not a signature.

Writes go to a temporary file in the same directory, are flushed and fsynced, then renamed over
the target (``os.replace``) and the directory is fsynced: a crash leaves the old file or the
new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

FORMAT = "rnnkit.checkpoint"
FORMAT_VERSION = 1
_ALLOWED_DTYPES = frozenset(np.dtype(t) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
    np.float16, np.float32, np.float64))


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read; the message is one line naming the file."""


# --------------------------------------------------------------------------- atomic writes

def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new, never a mix.

    The parent directory must exist.  The new file gets the usual permissions (0666 less the
    umask), not the private ones of a temporary file.
    """
    path = Path(path)
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(f.fileno(), 0o666 & ~umask)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, BrokenPipeError):
            # A full disk or a file-size limit says only "[Errno 28] No space left on device":
            # the message names the file the user will look for.
            raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from None
        raise
    _fsync_dir(directory)
    return path


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (no newline translation)."""
    return atomic_write_bytes(path, text.encode(encoding))


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry is on disk.  Windows cannot open a
    # directory for fsync; there the rename is as durable as the OS makes it.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- checkpoints

def save_checkpoint(path, arrays: Mapping[str, np.ndarray], meta: Mapping) -> Path:
    """Write ``arrays`` (name -> ndarray) and ``meta`` (a JSON dict) to one file at ``path``.

    Array dtypes: bool, (u)int8-64, float16/32/64.  ``meta`` must be strict JSON (no NaN or
    infinity; store None instead).  CheckpointError on anything else; the file is untouched then.
    """
    import safetensors.numpy

    path = Path(path)
    if not isinstance(meta, Mapping):
        raise CheckpointError(f"{path}: meta must be a dict, got {type(meta).__name__}")
    try:
        meta_json = json.dumps(dict(meta), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: meta is not strict JSON ({e})") from None
    clean = {}
    for name, a in arrays.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise CheckpointError(f"{path}: bad array name {name!r}")
        if not isinstance(a, np.ndarray):
            raise CheckpointError(f"{path}: array {name!r} is a {type(a).__name__}, not an ndarray")
        if a.dtype.newbyteorder("=") not in _ALLOWED_DTYPES:
            raise CheckpointError(f"{path}: array {name!r} has unsupported dtype {a.dtype}")
        clean[name] = _little_endian_c(a)
    metadata = {
        "rnnkit.format": FORMAT,
        "rnnkit.format_version": str(FORMAT_VERSION),
        "rnnkit.meta": meta_json,
        "rnnkit.sha256": _digest(clean, meta_json),
    }
    data = safetensors.numpy.save(clean, metadata=metadata)
    return atomic_write_bytes(path, data)


def load_checkpoint(path) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays, meta)`` from a file written by :func:`save_checkpoint`.

    Arrays are fresh writeable arrays in native byte order.  CheckpointError (a ValueError) with
    a one-line message naming the file for a missing or unreadable path, a file that is not an
    rnnkit checkpoint, another format version, truncation, corruption or an edit.  The file is
    read through :mod:`rnnkit._io` (a device or a file over the input limit refused, the header
    length checked before the rest is read); a read that fails while running (EIO) is an
    OSError naming the file.
    """
    from ._io import InputError, open_input

    path = Path(path)
    try:
        with open_input(path, what="checkpoint file") as f:
            data = _read_bounded(f)
    except InputError as e:  # missing, unreadable, a device, over the limit: one line
        raise CheckpointError(str(e)) from None
    # An OSError while reading (EIO: the disk failing) passes on as one, naming the file: a
    # failure while running, not a bad file.
    try:
        return _parse(data)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except Exception as e:  # any other failure of a parser on hostile bytes is still "bad file"
        raise CheckpointError(f"{path}: unreadable checkpoint ({_one_line(e)})") from None


# A safetensors header is JSON describing the tensors (and our metadata, the vocabulary
# included): megabytes at most.  The safetensors library itself refuses more than 100 MB.
MAX_HEADER_BYTES = 100_000_000


def read_meta(path) -> dict:
    """The meta dict of a checkpoint read from its header alone, the tensors left unread.

    Not verified (the checksum covers the arrays too): it tells what a file claims to be —
    its kind, to pick the loader that then reads and checks all of it.  Anything unusual
    (short, foreign, another version, bad JSON) goes to :func:`load_checkpoint`, so the
    refusal is the same one-line CheckpointError.
    """
    from ._io import InputError, open_input

    path = Path(path)
    header = None
    try:
        with open_input(path, what="checkpoint file") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            follow = None if f.size is None else f.size - 8
            if 0 <= n <= MAX_HEADER_BYTES and (follow is None or n <= follow):
                header = f.read(n)
    except InputError as e:
        raise CheckpointError(str(e)) from None
    try:
        md = json.loads(header.decode("utf-8"))["__metadata__"]
        if md["rnnkit.format"] == FORMAT and md["rnnkit.format_version"] == str(FORMAT_VERSION):
            meta = json.loads(md["rnnkit.meta"])
            if isinstance(meta, dict):
                return meta
    except Exception:  # noqa: S110 - the full reader below says what is wrong
        pass
    return load_checkpoint(path)[1]


def _read_bounded(f) -> bytes:
    """The bytes of a checkpoint, read only as far as its own header says it goes.

    The 8-byte header length is checked against the file's size (and MAX_HEADER_BYTES) before
    the header is read, and the tensor bytes the header describes against the size before they
    are read: a sparse gigabyte file or a forged length is refused after a few bytes.  What
    fails here is returned short, for :func:`_parse` to refuse with its usual message.
    """
    head = f.read(8)
    if len(head) < 8:
        return head
    n = int.from_bytes(head, "little")
    follow = None if f.size is None else f.size - 8
    if n > MAX_HEADER_BYTES or (follow is not None and n > follow):
        peek = head + f.read(64)
        reason = (f"truncated or not a checkpoint: the header claims {n} bytes, "
                  + (f"{follow} follow" if follow is not None and n > follow
                     else f"more than a header may hold ({MAX_HEADER_BYTES})"))
        foreign = _foreign_format(peek)
        if foreign is not None:
            reason = _foreign_reason(foreign)
        raise CheckpointError(f"{f.name}: {reason}")
    header = f.read(n)
    if len(header) < n:
        return head + header
    try:
        described = json.loads(header.decode("utf-8"))
        ends = [int(t["data_offsets"][1]) for k, t in described.items() if k != "__metadata__"]
        body = max(ends, default=0)
    except Exception:  # not JSON, or not safetensors' layout: _parse says which
        return head + header
    if follow is not None and body != follow - n:
        raise CheckpointError(
            f"{f.name}: corrupted tensor data (the header describes {body} bytes of tensors, "
            f"the file holds {follow - n}: truncated or padded)")
    if f.size is not None:
        # A regular file of the size its header describes: read it again as one piece (no
        # concatenated copy of a large model).
        return f.reread()
    return head + header + f.read_rest()


def _foreign_reason(foreign: str) -> str:
    return (f"not an rnnkit checkpoint: this is {foreign}; rnnkit reads only its own "
            "safetensors files and never unpickles anything")


def _foreign_format(data: bytes) -> str | None:
    """The name of a well-known non-rnnkit format ``data`` starts with, if any.

    Only magic bytes are compared; nothing is parsed, so a pickle is never unpickled.  Asked
    only of data that already failed as safetensors (a real header's 8-byte little-endian
    length may well start with 0x80, like a pickle).
    """
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return "a zip archive (.npz, or a PyTorch .pt/.pth file holding pickles)"
    if data[:6] == b"\x93NUMPY":
        return "a NumPy .npy file"
    # PROTO 2-5 then an opcode (never a zero byte); a truncated rnnkit file whose header
    # length happens to start 80 02 has zeros next, or its JSON header at offset 8.
    if (len(data) > 2 and data[0] == 0x80 and 2 <= data[1] <= 5 and data[2] != 0
            and data[8:9] != b"{"):
        return "a Python pickle"
    if data[:8] == b"\x89HDF\r\n\x1a\n":
        return "an HDF5 file"
    return None


def _parse(data: bytes) -> tuple[dict[str, np.ndarray], dict]:
    import safetensors.numpy

    def refuse(reason: str):
        foreign = _foreign_format(data)
        if foreign is not None:
            reason = _foreign_reason(foreign)
        raise CheckpointError(reason)

    if len(data) < 8:
        refuse(f"truncated or not a checkpoint: only {len(data)} bytes")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        refuse(f"truncated or not a checkpoint: the header claims {n} bytes, "
               f"{len(data) - 8} follow")
    try:
        header = json.loads(data[8: 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        refuse("not an rnnkit checkpoint (no safetensors header)")
    md = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(md, dict) or "rnnkit.format" not in md:
        raise CheckpointError("not an rnnkit checkpoint (no rnnkit metadata in the header)")
    if md["rnnkit.format"] != FORMAT:
        raise CheckpointError(f"format is {_short(md['rnnkit.format'])}, expected {FORMAT!r}")
    version = md.get("rnnkit.format_version")
    if not isinstance(version, str) or not re.fullmatch(r"[0-9]{1,9}", version):
        raise CheckpointError(f"bad format_version {_short(version)}")
    if int(version) != FORMAT_VERSION:
        raise CheckpointError(f"format_version {int(version)} is not supported "
                              f"(this rnnkit reads version {FORMAT_VERSION})")
    meta_json, digest = md.get("rnnkit.meta"), md.get("rnnkit.sha256")
    if not isinstance(meta_json, str) or not isinstance(digest, str):
        raise CheckpointError("the rnnkit metadata lacks its meta or checksum")
    try:
        tensors = safetensors.numpy.load(data)
    except Exception as e:
        raise CheckpointError(f"corrupted tensor data ({_one_line(e)})") from None
    arrays = {}
    for name, a in tensors.items():
        if a.dtype.newbyteorder("=") not in _ALLOWED_DTYPES:
            raise CheckpointError(f"array {_short(name)} has unsupported dtype {a.dtype}")
        # The parser's arrays are already fresh; copy only one that is not native, writeable
        # and C-ordered (a model is then held twice while loading, not three times).
        if a.dtype.isnative and a.flags.writeable and a.flags.c_contiguous:
            arrays[name] = a
        else:
            arrays[name] = a.astype(a.dtype.newbyteorder("="), copy=True)
    if _digest(arrays, meta_json) != digest:
        raise CheckpointError("checksum mismatch: the file is corrupted or was edited")
    meta = json.loads(meta_json)
    if not isinstance(meta, dict):
        raise CheckpointError("meta is not a JSON object")
    return arrays, meta


def _digest(arrays: Mapping[str, np.ndarray], meta_json: str) -> str:
    # Every field is length-prefixed so that no two different contents hash the same bytes.
    h = hashlib.sha256()

    def put(b: bytes) -> None:
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)

    put(FORMAT.encode())
    put(meta_json.encode("utf-8"))
    for name in sorted(arrays):
        a = arrays[name]
        put(json.dumps([name, a.dtype.name, list(a.shape)]).encode("utf-8"))
        put(_little_endian_c(a).tobytes())
    return h.hexdigest()


def _little_endian_c(a: np.ndarray) -> np.ndarray:
    # safetensors stores little-endian C-ordered bytes; asarray (unlike ascontiguousarray)
    # keeps a 0-d array 0-d.
    return np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")


def _short(x, limit: int = 60) -> str:
    s = repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(e).__name__)


# --------------------------------------------------------------------------- RNG state

# Only numpy's own bit generators may be named in a file: a name never picks arbitrary code.
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def rng_to_json(rng: np.random.Generator) -> dict:
    """The exact state of ``rng``'s bit generator as a JSON-serialisable dict.

    Integers stay Python ints (128-bit values included: Python's json writes them exactly);
    arrays become ``{"__ndarray__": dtype, "values": [...]}``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return _encode(rng.bit_generator.state)


def rng_from_json(obj, rng: np.random.Generator | None = None) -> np.random.Generator:
    """A Generator in the state saved by :func:`rng_to_json`; it draws the same numbers.

    With ``rng`` given, that generator is restored in place (everything holding it sees the
    restored state) and returned; it must use the same bit generator.  ValueError if ``obj``
    is not such a state.
    """
    if not isinstance(obj, dict) or obj.get("bit_generator") not in _BIT_GENERATORS:
        raise ValueError("rng state: not a saved numpy bit generator state "
                         f"(bit_generator must be one of {', '.join(_BIT_GENERATORS)})")
    name = obj["bit_generator"]
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if rng is not None and type(rng.bit_generator).__name__ != name:
        raise ValueError(f"rng state is for {name}, the generator uses "
                         f"{type(rng.bit_generator).__name__}")
    # Set the state on a fresh bit generator first: numpy's setters can fail half-way, and a
    # failure must not leave the caller's generator half restored.
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = _decode(obj)
    except Exception as e:  # numpy raises TypeError, ValueError, KeyError, IndexError, ...
        raise ValueError(f"rng state: malformed {name} state ({_one_line(e)})") from None
    if _encode(bit_generator.state) != obj:
        raise ValueError(f"rng state: malformed {name} state (it does not round-trip)")
    if rng is None:
        return np.random.Generator(bit_generator)
    rng.bit_generator.state = bit_generator.state
    return rng


def _encode(x):
    if isinstance(x, dict):
        return {str(k): _encode(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return {"__ndarray__": x.dtype.name, "values": [int(v) for v in x.ravel()]}
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, str):
        return x
    raise TypeError(f"unexpected {type(x).__name__} in a bit generator state")


def _decode(x):
    if isinstance(x, dict):
        if "__ndarray__" in x:
            dtype = np.dtype(x["__ndarray__"])
            if dtype.kind != "u" or not isinstance(x.get("values"), list):
                raise ValueError("bad array in state")
            return np.array(x["values"], dtype=dtype)
        return {k: _decode(v) for k, v in x.items()}
    if isinstance(x, (bool, int, str)):
        return x
    raise TypeError(f"unexpected {type(x).__name__} in a saved state")
