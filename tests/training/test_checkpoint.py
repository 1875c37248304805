"""Checkpoints: exact round trips, refusal of every kind of bad file, atomic writes, RNG state."""

import io
import json
import os
import pickle
import shutil
import tempfile
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnkit.checkpoint import (CheckpointError, atomic_write_bytes, atomic_write_text,
                               load_checkpoint, rng_from_json, rng_to_json, save_checkpoint)
from rnnkit.optim import Adam


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "emb.W": rng.standard_normal((7, 3)).astype(np.float32),
        "rnn.W_hh": rng.standard_normal((4, 4)),
        "ids": np.arange(5, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float16),
        "empty": np.zeros((0, 3), np.float32),
        "big_endian": np.arange(3, dtype=">i4"),
        "strided": rng.standard_normal((4, 6))[:, ::2],
    }


META = {"config": {"cell": "lstm", "hidden": 4, "layers": 2}, "step": 12, "name": "dörr",
        "vocab": {"format": "rnnkit.vocab", "format_version": 1, "tokens": ["<pad>", "<unk>", "<eos>"]}}


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, _arrays(), META)
    return path


def test_round_trip_exact(ckpt):
    arrays, meta = load_checkpoint(ckpt)
    assert meta == META
    src = _arrays()
    assert set(arrays) == set(src)
    for k, a in src.items():
        b = arrays[k]
        assert b.shape == a.shape and b.dtype == a.dtype.newbyteorder("=")
        assert np.array_equal(a, b)
        assert b.flags.writeable and b.flags.c_contiguous
    assert list(ckpt.parent.iterdir()) == [ckpt]  # no temporary file left behind


def test_file_is_standard_safetensors(ckpt):
    # Other tools read it: the tensors load with the plain safetensors reader.
    from safetensors.numpy import load_file
    plain = load_file(str(ckpt))
    assert np.array_equal(plain["rnn.W_hh"], _arrays()["rnn.W_hh"])


def test_optimizer_state_through_checkpoint(tmp_path):
    p = {"w": np.ones(3)}
    opt = Adam(lr=0.01)
    opt.step(p, {"w": np.array([1.0, 2.0, 3.0])})
    sd = opt.state_dict()
    arrays = {f"optim/{k}": v for k, v in sd.items() if isinstance(v, np.ndarray)}
    scalars = {k: v for k, v in sd.items() if not isinstance(v, np.ndarray)}
    save_checkpoint(tmp_path / "c", {**arrays, "w": p["w"]}, {"optim": scalars})
    arrays2, meta2 = load_checkpoint(tmp_path / "c")
    restored = dict(meta2["optim"], **{k[6:]: v for k, v in arrays2.items() if k.startswith("optim/")})
    opt2 = Adam(lr=1.0)
    opt2.load_state_dict(restored)
    q = {"w": arrays2["w"]}
    g = {"w": np.array([0.5, -1.0, 0.0])}
    opt.step(p, g)
    opt2.step(q, g)
    assert np.array_equal(p["w"], q["w"])


def _rewrite_header(path, edit):
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    edit(header)
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    path.write_bytes(len(hb).to_bytes(8, "little") + hb + data[8 + n:])


def _set_meta(header, key, value):
    header["__metadata__"][key] = value


@pytest.mark.parametrize("corrupt, match", [
    (lambda p: p.write_bytes(p.read_bytes()[:-5]), "corrupted tensor data"),
    (lambda p: p.write_bytes(p.read_bytes()[:100]), "truncated"),
    (lambda p: p.write_bytes(p.read_bytes()[:5]), "truncated"),
    (lambda p: p.write_bytes(b""), "truncated"),
    (lambda p: p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1])), "checksum"),
    (lambda p: _rewrite_header(p, lambda h: _set_meta(
        h, "rnnkit.meta", h["__metadata__"]["rnnkit.meta"].replace('"hidden": 4', '"hidden": 5'))),
     "checksum"),
    (lambda p: _rewrite_header(p, lambda h: h["ids"].update(shape=[1, 5])), "checksum"),
    (lambda p: _rewrite_header(p, lambda h: _set_meta(h, "rnnkit.format_version", "2")),
     "format_version 2 is not supported"),
    (lambda p: _rewrite_header(p, lambda h: _set_meta(h, "rnnkit.format_version", "one")),
     "bad format_version"),
    (lambda p: _rewrite_header(p, lambda h: _set_meta(h, "rnnkit.format", "other")), "format is"),
    (lambda p: _rewrite_header(p, lambda h: h.pop("__metadata__")), "not an rnnkit checkpoint"),
    (lambda p: _rewrite_header(p, lambda h: h["ids"].update(dtype="O")), "corrupted tensor data"),
    (lambda p: _rewrite_header(p, lambda h: h["ids"].update(dtype="C64")), "checksum|dtype"),
    (lambda p: p.write_text("hello, not a checkpoint at all"), "truncated|not an rnnkit"),
])
def test_refuses_bad_files(ckpt, corrupt, match):
    corrupt(ckpt)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(ckpt)
    msg = str(info.value)
    assert msg.startswith(str(ckpt)) and "\n" not in msg
    assert isinstance(info.value, ValueError)


def test_refuses_missing_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


class _Marker:
    """Unpickling this object would create a file: the proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_payloads_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Marker(str(marker)))
    # 1) a raw pickle file
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(payload)
    # 2) an .npz whose member is an object array (np.save would pickle it)
    buf = io.BytesIO()
    np.save(buf, np.array([_Marker(str(marker))], dtype=object), allow_pickle=True)
    npz = tmp_path / "obj.npz"
    with zipfile.ZipFile(npz, "w") as z:
        z.writestr("W.npy", buf.getvalue())
    # 3) a torch-style checkpoint (zip with data.pkl)
    tz = tmp_path / "torch.pt"
    with zipfile.ZipFile(tz, "w") as z:
        z.writestr("archive/data.pkl", payload)
    # 4) a safetensors-looking header followed by a pickle instead of tensor bytes
    hdr = json.dumps({"__metadata__": {"rnnkit.format": "rnnkit.checkpoint",
                                       "rnnkit.format_version": "1", "rnnkit.meta": "{}",
                                       "rnnkit.sha256": "0" * 64},
                      "x": {"dtype": "U8", "shape": [len(payload)],
                            "data_offsets": [0, len(payload)]}}).encode()
    st_pickle = tmp_path / "st.safetensors"
    st_pickle.write_bytes(len(hdr).to_bytes(8, "little") + hdr + payload)
    for path in (raw, npz, tz, st_pickle):
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
    assert not marker.exists()
    # the control: the payload really would have created the marker
    pickle.loads(payload).close()
    assert marker.exists()


def test_save_refuses_bad_input(tmp_path):
    p = tmp_path / "c"
    with pytest.raises(CheckpointError, match="unsupported dtype object"):
        save_checkpoint(p, {"x": np.array([None, 1], dtype=object)}, {})
    with pytest.raises(CheckpointError, match="unsupported dtype"):
        save_checkpoint(p, {"x": np.array([1 + 2j])}, {})
    with pytest.raises(CheckpointError, match="strict JSON"):
        save_checkpoint(p, {}, {"loss": float("nan")})
    with pytest.raises(CheckpointError, match="strict JSON"):
        save_checkpoint(p, {}, {"obj": object()})
    with pytest.raises(CheckpointError, match="bad array name"):
        save_checkpoint(p, {"__metadata__": np.ones(1)}, {})
    assert not p.exists()


def test_save_replaces_atomically(tmp_path, monkeypatch):
    p = tmp_path / "c"
    save_checkpoint(p, {"x": np.ones(2)}, {"v": 1})
    # a crash while writing the new file leaves the old one intact and no temp file
    def boom(*a):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        save_checkpoint(p, {"x": np.zeros(2)}, {"v": 2})
    monkeypatch.undo()
    arrays, meta = load_checkpoint(p)
    assert meta == {"v": 1} and arrays["x"].tolist() == [1.0, 1.0]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["c"]
    save_checkpoint(p, {"x": np.zeros(2)}, {"v": 2})
    assert load_checkpoint(p)[1] == {"v": 2}


def test_atomic_write_text_and_bytes(tmp_path):
    p = tmp_path / "vocab.json"
    atomic_write_text(p, "héllo\r\n")
    assert p.read_bytes() == "héllo\r\n".encode()
    atomic_write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~umask)
    with pytest.raises(OSError, match="cannot write"):
        atomic_write_text(tmp_path / "no_dir" / "x.json", "x")


@pytest.mark.parametrize("bitgen", ["PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"])
def test_rng_state_round_trip(bitgen):
    rng = np.random.Generator(getattr(np.random, bitgen)(1234))
    rng.standard_normal(5)
    rng.integers(0, 10, 3)  # leaves a buffered 32-bit half in some generators
    state = json.loads(json.dumps(rng_to_json(rng)))
    expected = (rng.standard_normal(7), rng.integers(0, 1 << 62, 4), rng.random(3))
    restored = rng_from_json(state)
    got = (restored.standard_normal(7), restored.integers(0, 1 << 62, 4), restored.random(3))
    for a, b in zip(expected, got):
        assert np.array_equal(a, b)
    # in place: an object holding the generator sees the restored state
    holder = np.random.Generator(getattr(np.random, bitgen)(99))
    same = rng_from_json(state, rng=holder)
    assert same is holder and np.array_equal(holder.standard_normal(7), expected[0])


def test_rng_state_through_checkpoint(tmp_path):
    rng = np.random.default_rng(5)
    rng.random(3)
    save_checkpoint(tmp_path / "c", {}, {"rng": rng_to_json(rng)})
    _, meta = load_checkpoint(tmp_path / "c")
    assert np.array_equal(rng_from_json(meta["rng"]).random(4), rng.random(4))


@pytest.mark.parametrize("state, match", [
    ({"bit_generator": "os.system"}, "one of"),
    ([], "one of"),
    ({"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}}, "malformed"),
    ({"bit_generator": "MT19937", "state": {"key": {"__ndarray__": "object", "values": []},
                                            "pos": 0}}, "malformed"),
    ({"bit_generator": "MT19937", "state": {"key": {"__ndarray__": "uint32", "values": [1, 2]},
                                            "pos": 0}}, "malformed"),
])
def test_rng_state_refuses_malformed(state, match):
    with pytest.raises(ValueError, match=match):
        rng_from_json(state)
    with pytest.raises(ValueError, match="MT19937"):
        rng_from_json(rng_to_json(np.random.Generator(np.random.MT19937(0))),
                      rng=np.random.default_rng(0))


# ----------------------------------------------------------------------------- fuzzing

_TMP = tempfile.mkdtemp(prefix="rnnkit-fuzz-")
_GOOD = os.path.join(_TMP, "good.safetensors")
save_checkpoint(_GOOD, {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2)},
                {"k": [1, 2]})
_GOOD_BYTES = open(_GOOD, "rb").read()


def teardown_module():
    shutil.rmtree(_TMP, ignore_errors=True)


def _mutate(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for kind, pos, val in edits:
        pos %= max(len(b), 1)
        if kind == 0 and b:
            b[pos] = val
        elif kind == 1:
            b.insert(pos, val)
        elif kind == 2 and b:
            del b[pos]
        else:
            del b[pos:]
    return bytes(b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=300),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255)),
             min_size=1, max_size=4).map(lambda e: _mutate(_GOOD_BYTES, e)),
    st.binary(max_size=200).map(lambda b: len(b).to_bytes(8, "little") + b),
))
def test_fuzz_loader_only_raises_checkpoint_error(data):
    path = os.path.join(_TMP, "fuzz.safetensors")
    with open(path, "wb") as f:
        f.write(data)
    try:
        arrays, meta = load_checkpoint(path)
    except CheckpointError as e:
        assert "\n" not in str(e)
    else:
        # Only a mutation that changes nothing meaningful (e.g. header padding) may load.
        assert meta == {"k": [1, 2]} and set(arrays) == {"a", "b"}
        assert np.array_equal(arrays["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
