"""Salvage: what a killed run had recorded but not yet written, back into its take.

The record ring lives in a shared-memory block that outlives the parent process
(``engine.rt.shm.create(keep=("io",))``), and a recording take's sidecar names
it (``record_ring``). The writer thread publishes, after every write, where the
files end in ring terms (``engine.recorder.Recorder._anchor``). So when the
parent dies by ``kill -9`` (or a crash), every frame the audio thread put into
the ring and the writer had not yet written is still in memory: ``salvage``
(``livemix recover TAKE``) repairs each file's header, appends those frames to
every file of the take (master and stems, with the silence of any logged ring
overflow in its place), marks the sidecar and frees the block.

The bound this gives: a kill -9 of the parent loses no frame the audio thread
had recorded. What it cannot put back: the silence a device-loss gap would have
received if the process died during the outage, and anything after the writer
stopped on a full disk (that take has a ``stopped_reason`` and is left alone).
The block stays in /dev/shm (memory) until it is salvaged or the machine
restarts. Control thread.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import soundfile as sf

from .dsp.layout import RI_ANCHOR, RI_ANCHOR_SEQ, RI_DROP_W, RI_WRITE
from .errors import LivemixError
from .recorder import CHUNK, WAV_LIMIT_BYTES, recover, write_json
from .rt.shm import _untrack, unlink

QUIET_S = 0.2      # the ring's write counter must stand still this long (the audio child is gone)


def _assert_dead(master: Path, pid) -> None:
    """The live run holds a shared flock on the master's first file while it records."""
    try:
        fd = os.open(master, os.O_RDONLY)
    except OSError as e:
        raise LivemixError(f"{master}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LivemixError(f"{master}: still being recorded by a running livemix (pid {pid}): "
                           "stop that run; its take finishes by itself") from None
    finally:
        os.close(fd)


def _segments(idx, drops, r, dr):
    """[("ring", ring frame, n) | ("silence", None, n)] from the anchor to the ring's
    end, each logged overflow as silence at its place (as the writer would have)."""
    w = int(idx[RI_WRITE])          # the data counter first: every drop before w is
    dw = int(idx[RI_DROP_W])        # already in the log when its counter is read
    dmask = drops.shape[0] - 1
    out = []
    while True:
        pos = int(drops[dr & dmask, 0]) if dr < dw else None
        end = w if pos is None else max(r, min(pos, w))
        if r < end:
            out.append(("ring", r, end - r))
            r = end
        if pos is not None and pos <= w:      # the audio thread is gone: every drop is final
            out.append(("silence", None, int(drops[dr & dmask, 1])))
            dr += 1
            continue
        return out


def _append(path: Path, ring, row, channels, segments, skip) -> int:
    """Append the segments' frames (after the first ``skip``) to ``path``. Returns frames."""
    info = sf.info(str(path))
    adding = sum(n for _, _, n in segments) - skip
    if info.format == "WAV" and (info.frames + adding) * _frame_bytes(info) > WAV_LIMIT_BYTES:
        raise LivemixError(f"{path}: the {adding} salvaged frames would take it past the WAV "
                           "size limit; they stay in the record ring")
    mask = ring.shape[1] - 1
    added = 0
    with sf.SoundFile(str(path), "r+") as f:
        f.seek(0, sf.SEEK_END)
        for kind, start, n in segments:
            k = min(skip, n)
            skip -= k
            n -= k
            pos = (start + k) if kind == "ring" else None
            while n > 0:
                m = min(CHUNK, n)
                if kind == "silence":
                    block = np.zeros((m, channels), np.float32)
                else:
                    cols = (np.arange(pos, pos + m) & mask)
                    block = ring[row:row + channels, cols].T
                    pos += m
                f.write(block)
                added += m
                n -= m
    return added


def _frame_bytes(info) -> int:
    bits = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}
    return bits.get(info.subtype, 4) * info.channels


def salvage(sidecar: Path, data: dict) -> list[str] | None:
    """Repair every file of a killed take and append what its record ring still holds.
    Returns the lines to print, or None when the take has nothing to salvage (finished,
    stopped on a write error, or recorded by a livemix that kept no ring)."""
    ring_info = data.get("record_ring")
    if not ring_info or data.get("complete") or data.get("stopped_reason"):
        return None
    files = [f for f in data.get("files") or [] if isinstance(f, dict)]
    masters = [f for f in files if f.get("kind") == "master"]
    if not masters:
        return None
    _assert_dead(sidecar.parent / masters[0]["path"], ring_info.get("pid"))
    lines = [recover(sidecar.parent / f["path"]) for f in files]
    data = json.loads(sidecar.read_text())      # recover marked the files' frame counts
    try:
        shm = shared_memory.SharedMemory(name=ring_info["block"])
    except FileNotFoundError:
        lines.append(f"{sidecar.name}: its record ring is gone (the machine restarted, or it "
                     "was salvaged already): the files hold what the writer had written")
        data.pop("record_ring", None)
        write_json(sidecar, data)
        return lines
    _untrack(shm)
    try:
        arr = {name: np.ndarray(tuple(shape), np.dtype(dt), buffer=shm.buf, offset=off)
               for name, (shape, dt, off) in ring_info["arrays"].items()}
        ring, idx, drops = arr["rec_ring"], arr["rec_idx"], arr["rec_drops"]
        last, since = int(idx[RI_WRITE]), time.monotonic()
        deadline = since + 5.0
        while time.monotonic() - since < QUIET_S and time.monotonic() < deadline:
            time.sleep(0.02)                       # an audio child still exiting
            if int(idx[RI_WRITE]) != last:
                last, since = int(idx[RI_WRITE]), time.monotonic()
        k = RI_ANCHOR + 3 * (int(idx[RI_ANCHOR_SEQ]) & 1)
        r, dr, anchored = int(idx[k]), int(idx[k + 1]), int(idx[k + 2])
        segments = _segments(idx, drops, r, dr)
        total = sum(n for _, _, n in segments)
        salvaged = None
        for st in ring_info["streams"]:
            parts = sorted((f for f in files if f.get("kind") == st["kind"]
                            and f.get("track") == st["track"]), key=lambda f: f["part"])
            paths = [sidecar.parent / f["path"] for f in parts]
            on_disk = sum(sf.info(str(p)).frames for p in paths)
            skip = on_disk - anchored               # a write the kill cut short
            if skip < 0 or skip > total:
                raise LivemixError(f"{paths[-1]}: holds {on_disk} frames where the record "
                                   f"ring expects {anchored}: cannot place its frames")
            added = _append(paths[-1], ring, st["row"], st["channels"], segments, skip)
            entry = next(f for f in data["files"] if f["path"] == parts[-1]["path"])
            entry["frames"] = sf.info(str(paths[-1])).frames
            if st["kind"] == "master":
                salvaged = added
    finally:
        shm.close()
    masters = [f["frames"] for f in data["files"] if f.get("kind") == "master"]
    data["frames"] = sum(masters)
    data["seconds"] = data["frames"] / data["samplerate"]
    data["salvaged_frames"] = salvaged
    data["recovered"] = True
    data.pop("record_ring", None)
    write_json(sidecar, data)
    unlink(shm, tracked=False)
    lines.append(f"{sidecar.name}: salvaged {salvaged} frames ({salvaged / data['samplerate']:.3f} "
                 "s) the run had recorded but not yet written, from its record ring")
    return lines
