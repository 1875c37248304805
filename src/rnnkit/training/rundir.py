"""The run directory (``--out``): what may be written there, by whom, and when.

- :func:`check_out` refuses, before anything is read or written, an empty or non-UTF-8 path,
  a file where the directory should be, a directory that cannot be written, ``--resume``
  with ``--force``, ``--resume`` without a checkpoint, and any file rnnkit would write
  (``model.safetensors``, ``checkpoint.safetensors``, ``metrics.jsonl``, ``loss.png``) that
  is already there without ``--force`` — the user's own ``metrics.jsonl`` included.
- :class:`RunLock`: one run at a time per directory.  ``DIR/.rnnkit.lock`` holds the holder's
  pid and host; it is removed when the run ends, and taken over when its holder is dead (a
  run killed by SIGKILL leaves it behind).  A second run is refused in one line.
- :func:`remove_stale_temporaries`: the ``.NAME.XXXX.tmp`` files a killed atomic write leaves.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
OWN_FILES = (MODEL_FILE, CHECKPOINT_FILE, "metrics.jsonl", "loss.png")  # a language model's
TASK_FILES = OWN_FILES[:3]  # a task trainer draws no loss.png
LOCK_FILE = ".rnnkit.lock"


def check_utf8(value, what: str) -> None:
    """ValueError if ``value`` (a path or a JSON-able structure of them) is not valid UTF-8
    text: a file name of undecodable bytes would otherwise fail at the first save."""
    try:
        json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what}: the name is not valid UTF-8; rename it or give another "
                         "path") from None


def check_out(out, *, resume: bool, force: bool, own=OWN_FILES) -> Path:
    """The checks on ``--out`` a training run makes before it reads any data (ValueError or
    PermissionError, one line); ``own``: the files this run writes there."""
    if out is None or not str(out):
        raise ValueError("--out must name a directory (an empty path would write into the "
                         "working directory)")
    check_utf8(str(out), f"--out {os.fsdecode(str(out))!r}")
    out = Path(out)
    if resume and force:
        raise ValueError("--resume and --force contradict each other: --resume continues the "
                         "run in --out, --force starts over and replaces it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    parent = out if out.exists() else _existing_parent(out)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "cannot write there (permission denied)", str(parent))
    has_model, has_state = (out / MODEL_FILE).exists(), (out / CHECKPOINT_FILE).exists()
    if resume:
        if not has_state:
            hint = (" (its training ended before a checkpoint was written: start over with "
                    "--force)" if has_model else "")
            raise ValueError(f"--resume: no {CHECKPOINT_FILE} in {out}{hint}")
    elif not force:
        if has_model:
            raise ValueError(f"--out {out}: already holds a model: --resume continues it, "
                             "--force starts over and replaces it")
        if has_state:
            raise ValueError(f"--out {out}: already holds a training run ({CHECKPOINT_FILE}): "
                             "--resume continues it, --force starts over")
        theirs = [n for n in own if (out / n).exists()]
        if theirs:
            raise ValueError(f"--out {out}: holds {', '.join(theirs)}, which training would "
                             "overwrite; choose another --out or add --force to replace it")
    return out


def _existing_parent(p: Path) -> Path:
    p = p.absolute()
    while not p.exists():
        p = p.parent
    return p


class RunLock:
    """``with RunLock(directory):`` — the directory is this process's until the block ends.

    ValueError (one line) if a live process holds it.  The directory is created if needed.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.token = f"{os.getpid()} {socket.gethostname()}"
        self.held = False

    def __enter__(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None:
                    raise ValueError(
                        f"--out {self.directory}: another rnnkit run (pid {holder}) is "
                        f"training into it; wait for it to end or stop it (a stale lock: "
                        f"delete {self.path})") from None
                try:  # its holder is dead: take the lock over
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self.token + "\n")
            self.held = True
            return self
        raise ValueError(f"--out {self.directory}: cannot take the lock {self.path}")

    def _holder(self):
        """The pid of a live holder, or None when the lock is stale (or empty/garbled)."""
        try:
            pid_s, _, host = self.path.read_text(encoding="utf-8", errors="replace") \
                .strip().partition(" ")
            pid = int(pid_s)
        except (OSError, ValueError):
            return None
        if host and host != socket.gethostname():
            return f"{pid} on {host}"  # cannot ask another machine: assume it lives
        if pid == os.getpid():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid  # alive, someone else's
        return pid

    def __exit__(self, *exc):
        if self.held:
            try:
                if self.path.read_text(encoding="utf-8").strip() == self.token:
                    self.path.unlink()
            except OSError:
                pass
            self.held = False


def remove_stale_temporaries(directory: Path) -> None:
    """Delete the temporary files a killed run left behind (``.NAME.XXXX.tmp``).

    :func:`rnnkit.checkpoint.atomic_write_bytes` writes each file under a temporary name and
    renames it; a SIGKILL between the two leaves the temporary.  The directory is locked by
    this run, so the leftovers of rnnkit's own files are safe to remove.
    """
    for name in OWN_FILES:
        for tmp in Path(directory).glob(f".{name}.*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass


def drop_partial_line(path: Path) -> None:
    """Cut a metrics file back to its last complete line (a kill can stop an append midway)."""
    try:
        data = path.read_bytes()
    except OSError:
        return
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
