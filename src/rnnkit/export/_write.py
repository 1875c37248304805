"""Writing an export: every file into a temporary folder beside OUT first, then renamed into
place, so an interrupted or failed export leaves nothing half-written and OUT is never
touched without ``force``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .._io import named_errors

# Every file name an export can write: replacing an export removes the old one's files.
EXPORT_FILES = ("model.onnx", "encoder.onnx", "decoder.onnx", "condition.onnx", "model.py",
                "model.safetensors")


def check_target(out, force: bool) -> Path:
    """OUT must not exist unless ``force``; with ``force`` it must be a directory."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not force:
            raise ValueError(f"{out} already exists (use --force to replace the export "
                                  "in it)")
        if not out.is_dir():
            raise ValueError(f"{out} exists and is not a directory; an export writes a "
                                  "directory")
    if not out.parent.is_dir():
        raise ValueError(f"{out.parent}: no such directory")
    return out


def write_files(out, files: dict, force: bool = False) -> list:
    """Write ``{name: bytes}`` as the directory OUT; returns the written paths."""
    out = check_target(out, force)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would make the renamed export private
        for name, data in files.items():
            with named_errors(out / name), open(tmp / name, "wb") as f:  # ENOSPC names the file
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        if not out.exists():
            os.rename(tmp, out)
        else:
            for name in files:
                os.replace(tmp / name, out / name)
            for name in EXPORT_FILES:  # a previous export's files that this one does not have
                if name not in files and (out / name).is_file():
                    (out / name).unlink()
            tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / name for name in files]
