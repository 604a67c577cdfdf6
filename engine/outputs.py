"""The one rule for every command that writes a file.

- Never overwrite an existing file without ``--force``.
- Never write over any input of the job, however it is named: the same path,
  a symlink to it, or a hard link (the same device and inode), ``--force`` or not.
- Write to a temporary name beside the output and rename it into place when
  complete (``atomic``): a job that fails or is interrupted leaves the old file,
  if there was one, as it was, and no half-written file under the real name.
- Say what is wrong in one line naming the file: a missing or read-only
  directory, a path that is a directory.

Control thread.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import LivemixError


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def check_output(path, inputs=(), force: bool = False, what: str = "",
                 hint: str = "") -> Path:
    """The output path, once it may be written: not one of ``inputs`` (any of their
    names, links included), not an existing file unless ``force``, in a directory
    that exists and is writable. LivemixError naming the file otherwise.
    what: how to call an input in the message ("one of the session's sources", ...);
    hint: what else the user may do (appended to the message)."""
    out = Path(path)
    for src in inputs:
        if src is None:
            continue
        src = Path(src)
        if out.resolve() == src.resolve() or _same_file(out, src):
            raise LivemixError(f"{out}: is {what or 'an input of this job'} ({src}): "
                               f"write to another file{hint}")
    if out.is_dir():
        raise LivemixError(f"{out}: is a directory; give a file name")
    if out.exists() and not force:
        raise LivemixError(f"{out}: already exists (use --force to overwrite it)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise LivemixError(f"{out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LivemixError(f"{out}: directory {parent} is not writable")
    return out


def part_path(out: Path) -> Path:
    """Where a job writes before its file is renamed into place."""
    out = Path(out)
    return out.with_name(f".{out.name}.part")


@contextlib.contextmanager
def atomic(out):
    """``with atomic(out) as tmp:`` write ``tmp``; on success it replaces ``out``
    (a rename: whole or not at all), on any error or interruption it is removed."""
    out = Path(out)
    tmp = part_path(out)
    try:
        yield tmp
        try:
            os.replace(tmp, out)
        except OSError as e:
            raise LivemixError(f"{out}: cannot write ({e.strerror or e})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
