"""The recorder: real files through soundfile, with the audio thread simulated by
``FakeAudio``, which fills the record ring exactly as ``engine.rt.cycle._record``
does (data first, then the counter; a full ring logs a drop)."""
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import threading
import tempfile
import time
import wave
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import small_tmpfs
import soundfile as sf

from engine import recorder as rec_mod
from engine.dsp.layout import (IO_OUTCH, IO_RECORD, IO_STEMS, RI_READ,
                               RI_WRITE, ST_REC_DROPPED)
from engine.errors import LivemixError
from engine.recorder import Recorder, recover
from engine.rt.state import allocate_io
from engine.session import EngineConfig, Session, Track

SR = 48000
ROOT = Path(__file__).resolve().parent.parent


def make_session(root, channels=2, tracks=("voice", "music"), name="show"):
    path = Path(root) / f"{name}.toml"
    path.write_text("# a session file (only its path and hash matter here)\n")
    return Session(path=path, engine=EngineConfig(samplerate=SR, blocksize=128,
                                                  channels=channels),
                   tracks=tuple(Track(name=t, file=None) for t in tracks))


class FakeAudio:
    """The audio thread's side of the ring: the engine's own ``_record`` kernel
    (engine/rt/cycle.py), fed the master and stems given, without the mixing."""

    def __init__(self, io, maxblock=8192):
        from engine.rt.state import allocate
        self.io = io
        self.dropped = 0
        stems = (io.rec_ring.shape[0] - int(io.io_cfg[IO_OUTCH])) // 2 \
            if int(io.io_cfg[IO_STEMS]) else 0
        tracks = tuple(f"t{i}" for i in range(max(stems, 1)))
        self.st = allocate(make_session(tempfile.mkdtemp(), tracks=tracks),
                           maxblock=maxblock, ring_frames=maxblock)

    def room(self, n):
        idx = self.io.rec_idx
        return self.io.rec_ring.shape[1] - (int(idx[RI_WRITE]) - int(idx[RI_READ])) >= n

    def push(self, master, stems=None):
        """master: (n, outch) float32; stems: (T, 2, n). True = written, False =
        dropped, None = not recording (engine_cycle calls _record only then)."""
        from engine.rt.cycle import _record
        io = self.io
        if io.io_cfg[IO_RECORD] == 0:
            return None
        n = len(master)
        if stems is not None:
            self.st.tbuf[:len(stems), :, :n] = stems
        before = int(io.stats[ST_REC_DROPPED])
        _record(self.st, io, np.ascontiguousarray(master, np.float32), 0, n, 0)
        dropped = int(io.stats[ST_REC_DROPPED]) - before
        self.dropped += dropped
        return dropped == 0

    def push_when_room(self, master, stems=None, timeout=5.0):
        """A producer that never overruns: wait for the writer to make room."""
        t_end = time.monotonic() + timeout
        while not self.room(len(master)):
            assert time.monotonic() < t_end, "the writer thread does not drain the ring"
            time.sleep(0.001)
        assert self.push(master, stems) is True


def sig(rng, *shape):
    """float32 values k / 2**23: exact in FLOAT and in PCM_24."""
    return (rng.integers(-2**23, 2**23, shape) / 2**23).astype(np.float32)


def kill_signal(start, n, channels=2):
    """A deterministic signal as a function of the frame index (for the kill -9 child)."""
    i = np.arange(start, start + n, dtype=np.int64)[:, None]
    c = np.arange(channels, dtype=np.int64)[None, :]
    return ((((i * 7919 + c * 104729) % 2**23) - 2**22) / 2**23).astype(np.float32)


def read(path):
    return sf.read(str(path), dtype="float32", always_2d=True)[0]


def sidecar_of(res):
    return json.loads(res.sidecar.read_text())


# --- contents ----------------------------------------------------------------------

def test_frames_and_contents_across_wraparound_with_stems(tmp_path):
    s = make_session(tmp_path)
    io = allocate_io(s, stems=True, record_s=4096 / SR)
    size = io.rec_ring.shape[1]
    assert size == 4096
    r = Recorder(s, io, tmp_path / "takes", subtype="FLOAT", stems=True)
    r.start()
    assert io.io_cfg[IO_RECORD] == 1
    audio = FakeAudio(io)
    rng = np.random.default_rng(1)
    masters, stems = [], []
    total = 0
    while total < 6 * size:                     # the ring wraps around 6 times
        n = int(rng.integers(1, 1500))
        m, st = sig(rng, n, 2), sig(rng, 2, 2, n)
        audio.push_when_room(m, st)
        masters.append(m)
        stems.append(st)
        total += n
    res = r.stop()
    assert io.io_cfg[IO_RECORD] == 0
    assert io.rec_idx[RI_READ] == io.rec_idx[RI_WRITE] == total
    assert res.frames == total and res.dropped_frames == 0 and res.stopped_reason is None
    take = tmp_path / "takes" / r.take
    assert res.paths == [take.with_name(take.name + ".wav"),
                         take.with_name(take.name + ".voice.wav"),
                         take.with_name(take.name + ".music.wav")]
    master = read(res.paths[0])
    assert sf.info(str(res.paths[0])).subtype == "FLOAT"
    assert np.array_equal(master, np.concatenate(masters))
    for t in range(2):
        stem = read(res.paths[1 + t])
        assert stem.shape == (total, 2)           # aligned sample for sample with the master
        assert np.array_equal(stem, np.concatenate([st[t].T for st in stems]))
    side = sidecar_of(res)
    assert side["complete"] is True and side["frames"] == total
    assert side["dropped_frames"] == 0 and side["events"] == []
    assert side["session"] == str(s.path.resolve())
    assert side["session_sha256"] == hashlib.sha256(s.path.read_bytes()).hexdigest()
    assert (side["samplerate"], side["channels"], side["format"], side["subtype"]) == \
        (SR, 2, "wav", "FLOAT")
    assert [f["path"] for f in side["files"]] == [p.name for p in res.paths]
    assert datetime.fromisoformat(side["start_time"]).tzinfo is not None
    assert "xruns" in side and side["stopped_reason"] is None


def test_overflow_leaves_silence_of_the_dropped_length(tmp_path):
    s = make_session(tmp_path)
    io = allocate_io(s, stems=True, record_s=1024 / SR)
    assert io.rec_ring.shape[1] == 1024
    seen = []
    r = Recorder(s, io, tmp_path / "takes", subtype="FLOAT", stems=True,
                 on_event=lambda kind, detail: seen.append((kind, detail)))
    r.start()
    audio = FakeAudio(io)
    rng = np.random.default_rng(2)
    exp_m, exp_s, outcome = [], [], []

    def feed(blocks, wait):
        for _ in range(blocks):
            m, st = sig(rng, 256, 2), sig(rng, 2, 2, 256)
            if wait:
                audio.push_when_room(m, st)
                ok = True
            else:
                ok = audio.push(m, st)
            outcome.append(ok)
            exp_m.append(m if ok else np.zeros_like(m))
            exp_s.append(st if ok else np.zeros_like(st))

    feed(3, wait=True)
    with r._lock:                 # the writer thread is held up: the ring overflows
        feed(12, wait=False)
    feed(4, wait=True)
    with r._lock:
        feed(8, wait=False)
    feed(3, wait=True)
    res = r.stop()
    assert audio.dropped >= 2 * 256 and outcome.count(False) * 256 == audio.dropped
    expected = np.concatenate(exp_m)
    master = read(res.paths[0])
    assert np.array_equal(master, expected)
    for t in range(2):
        assert np.array_equal(read(res.paths[1 + t]), np.concatenate([x[t].T for x in exp_s]))
    assert res.frames == len(expected)
    assert res.dropped_frames == audio.dropped == io.stats[ST_REC_DROPPED]
    side = sidecar_of(res)
    assert side["dropped_frames"] == audio.dropped
    # one event per run of consecutive drops, at the take frame where it starts
    runs, i = [], 0
    while i < len(outcome):
        if outcome[i] is False:
            j = i
            while j < len(outcome) and outcome[j] is False:
                j += 1
            runs.append((i * 256, (j - i) * 256))
            i = j
        else:
            i += 1
    drops = [(e["frame"], e["frames"]) for e in side["events"] if e["kind"] == "drop"]
    assert drops == runs
    assert [k for k, _ in seen] == ["drop"] * len(runs)


def test_a_stall_longer_than_ring_and_drop_log_keeps_the_take_aligned(tmp_path):
    """The writer stalls while the audio thread drops more blocks than the drop log has
    entries (4,096): consecutive drops are one entry, so every dropped frame becomes
    silence in its place and the take is exactly as long as what was played."""
    from engine.rt.state import DROP_LOG
    s = make_session(tmp_path)
    io = allocate_io(s, record_s=1024 / SR)
    r = Recorder(s, io, tmp_path / "takes", subtype="FLOAT")
    r.start()
    audio = FakeAudio(io)
    rng = np.random.default_rng(6)
    expected = []

    def feed(blocks, wait):
        for _ in range(blocks):
            m = sig(rng, 64, 2)
            if wait:
                audio.push_when_room(m)
                expected.append(m)
            else:
                expected.append(m if audio.push(m) else np.zeros_like(m))

    feed(4, wait=True)
    with r._lock:                              # the disk stalls
        feed(DROP_LOG + 1000, wait=False)
    feed(4, wait=True)
    res = r.stop()
    assert audio.dropped > DROP_LOG * 64
    assert res.frames == sum(len(m) for m in expected) and res.dropped_frames == audio.dropped
    assert np.array_equal(read(res.paths[0]), np.concatenate(expected))


# --- kill -9 -------------------------------------------------------------------------

CHILD_KILL = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
from test_recorder import FakeAudio, kill_signal, make_session
from engine.recorder import Recorder
from engine.rt.state import allocate_io
fmt, out = sys.argv[1], Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
s = make_session(out)
io = allocate_io(s)
rec = Recorder(s, io, out / "takes", format=fmt, subtype="PCM_24")
rec.start()
print("take", rec.take, flush=True)
audio = FakeAudio(io)
pushed = 0
while True:
    audio.push_when_room(kill_signal(pushed, 480))
    pushed += 480
    print(pushed, flush=True)
    time.sleep(0.002)
"""
KILL_AFTER_FRAMES = 24000     # 0.5 s of audio, about 0.1 s of wall time in the child


@pytest.fixture(scope="module")
def killed_takes(tmp_path_factory):
    """Three children (WAV, W64, RF64) record at once and are killed with SIGKILL
    0.15 s after they report KILL_AFTER_FRAMES frames pushed into the ring."""
    root = tmp_path_factory.mktemp("kill")
    code = CHILD_KILL.format(root=str(ROOT), tests=str(ROOT / "tests"))
    results = {}

    def run(fmt):
        d = root / fmt
        p = subprocess.Popen([sys.executable, "-c", code, fmt, str(d)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        take, pushed = None, 0
        try:
            for line in p.stdout:
                if line.startswith("take "):
                    take = line.split()[1]
                else:
                    pushed = int(line)
                    if pushed >= KILL_AFTER_FRAMES:
                        break
            assert take is not None, p.stderr.read()
            time.sleep(0.15)
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
        results[fmt] = (d / "takes" / f"{take}.{fmt}", pushed, p.returncode)

    threads = [threading.Thread(target=run, args=(f,)) for f in ("wav", "w64", "rf64")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def header_frames(path, block_align):
    """Frames the header declares, parsed independently of engine.recorder; also
    checks the RIFF size against the file size. None if the sizes disagree."""
    raw = Path(path).read_bytes()
    size = len(raw)
    if raw[:4] == b"RIFF":
        with wave.open(str(path)) as w:
            n = w.getnframes()
        riff = int.from_bytes(raw[4:8], "little")
        return n if riff == size - 8 else None
    if raw[:4] == b"RF64":
        riff, data, count = (int.from_bytes(raw[20 + 8 * k:28 + 8 * k], "little")
                             for k in range(3))
        ok = riff == size - 8 and data == count * block_align
        return count if ok else None
    if raw[:4] == b"riff":
        riff = int.from_bytes(raw[16:24], "little")
        pos = raw.index(b"data\xf3\xac\xd3\x11")
        data = int.from_bytes(raw[pos + 16:pos + 24], "little") - 24
        ok = riff == size and data == size - pos - 24
        return data // block_align if ok else None
    raise AssertionError(f"{path}: unknown header")


@pytest.mark.parametrize("fmt", ["wav", "w64", "rf64"])
def test_kill9_take_opens_and_recover_fixes_the_header(killed_takes, fmt, tmp_path):
    path, pushed, rc = killed_takes[fmt]
    assert rc == -signal.SIGKILL
    info = sf.info(str(path))
    # every frame pushed more than 0.15 s before the kill is in the file
    assert info.frames >= pushed
    data = read(path)
    assert np.array_equal(data, kill_signal(0, len(data)))
    frames = len(data)
    side_path = path.with_suffix(".json")
    assert json.loads(side_path.read_text())["complete"] is False
    before = None
    try:
        before = header_frames(path, 6)
    except (wave.Error, EOFError, ValueError):
        pass
    if fmt == "rf64":
        # header auto-update (SFC_SET_UPDATE_HEADER_AUTO): libsndfile read the frames
        # from the header itself; it can be at most one write behind
        assert info.frames > 0
    else:
        assert before != frames                    # the header really was unfinished
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)

    msg = recover(path)
    assert str(path) in msg and "\n" not in msg
    after = read(path)
    n = len(after)
    assert n >= frames and np.array_equal(after, kill_signal(0, n))
    assert header_frames(path, 6) == n            # Python's wave module / raw header agree
    assert f"{n} frames" in msg
    side = json.loads(side_path.read_text())
    assert side["recovered"] is True and side["recovered_files"][path.name] == n
    assert side["frames"] == n
    # a second run finds nothing to do and leaves the file as it is
    raw = path.read_bytes()
    assert "header already correct" in recover(path)
    assert path.read_bytes() == raw
    # the copy-through-libsndfile variant gives the same audio
    recover(copy, rewrite=True)
    assert header_frames(copy, 6) == n and np.array_equal(read(copy), after)


def test_recover_rejects_missing_and_non_audio_files(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(LivemixError) as e:
        recover(missing)
    assert str(missing) in str(e.value) and "\n" not in str(e.value)
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n" * 10)
    with pytest.raises(LivemixError) as e:
        recover(text)
    assert str(text) in str(e.value) and "\n" not in str(e.value)


# --- disk full and unwritable places -----------------------------------------------------

def _record_until_stopped(r, io, rng, timeout=10.0):
    """Push 4096-frame blocks until the recorder clears IO_RECORD; returns the input."""
    audio = FakeAudio(io)
    pushed = []
    t_end = time.monotonic() + timeout
    while io.io_cfg[IO_RECORD] == 1:
        assert time.monotonic() < t_end, "recording did not stop"
        m = sig(rng, 4096, 2)
        if audio.room(4096):
            if audio.push(m):
                pushed.append(m)
        else:
            time.sleep(0.002)
    return np.concatenate(pushed)


def test_disk_full_on_a_tiny_tmpfs(tmp_path):
    with small_tmpfs(tmp_path / "mnt") as mnt:
        s = make_session(tmp_path)
        io = allocate_io(s)
        seen = []
        d = mnt / "takes"
        r = Recorder(s, io, d, on_event=lambda kind, detail: seen.append((kind, detail)))
        r.start()
        pushed = _record_until_stopped(r, io, np.random.default_rng(5))
        res = r.stop()
        reason = f"disk full: no space left on {d}"
        assert res.stopped_reason == reason and r.warning == reason
        assert ("recording_stopped", reason) in seen
        assert seen[0][0] == "disk_low"              # 1 MB free < 1 GiB: warned at start
        out = read(res.paths[0])                     # the partial take is a valid file
        assert 0 < len(out) == res.frames < len(pushed)
        assert np.array_equal(out, pushed[:len(out)])
        side = sidecar_of(res)
        assert side["stopped_reason"] == reason and side["frames"] == len(out)
        assert [e["kind"] for e in side["events"]] == ["disk_low", "recording_stopped"]


CHILD_FSIZE = r"""
import json, resource, signal, sys
import numpy as np
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
from test_recorder import make_session, sig, _record_until_stopped
from engine.recorder import Recorder
from engine.rt.state import allocate_io
from pathlib import Path
out = Path(sys.argv[1])
s = make_session(out)
io = allocate_io(s)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, hard))
r = Recorder(s, io, out / "takes")
r.start()
pushed = _record_until_stopped(r, io, np.random.default_rng(6))
res = r.stop()
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
np.save(out / "pushed.npy", pushed)
print(json.dumps({{"reason": res.stopped_reason, "path": str(res.paths[0]),
                  "frames": res.frames, "recording": int(io.io_cfg[0])}}))
"""


def test_file_size_limit_stops_recording_cleanly(tmp_path):
    """RLIMIT_FSIZE (SIGXFSZ ignored): a write fails like on a full disk, unprivileged."""
    limit = 200_000
    code = CHILD_FSIZE.format(root=str(ROOT), tests=str(ROOT / "tests"), limit=limit)
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    path = Path(res["path"])
    assert res["reason"] == f"cannot write {path}: File too large"
    assert res["recording"] == 0
    out = read(path)
    assert 0 < len(out) == res["frames"] and path.stat().st_size <= limit
    assert np.array_equal(out, np.load(tmp_path / "pushed.npy")[:len(out)])
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["stopped_reason"] == res["reason"] and side["complete"] is True
    assert any(e["kind"] == "recording_stopped" for e in side["events"])


def test_unwritable_takes_dir_fails_in_start(tmp_path):
    s = make_session(tmp_path)
    io = allocate_io(s)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    d = blocker / "takes"
    with pytest.raises(LivemixError) as e:
        Recorder(s, io, d).start()
    assert str(d) in str(e.value) and "\n" not in str(e.value)
    assert io.io_cfg[IO_RECORD] == 0


def test_read_only_takes_dir_fails_in_start(tmp_path):
    with small_tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        s = make_session(tmp_path)
        io = allocate_io(s)
        with pytest.raises(LivemixError) as e:
            Recorder(s, io, ro).start()
        msg = str(e.value)
        assert str(ro) in msg and "Read-only file system" in msg and "\n" not in msg
        assert io.io_cfg[IO_RECORD] == 0 and list(ro.iterdir()) == []


def test_low_disk_space_warns_with_the_time_left(tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(rec_mod.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=10_000_000))
    s = make_session(tmp_path)
    io = allocate_io(s)
    seen = []
    r = Recorder(s, io, tmp_path / "takes", on_event=lambda k, d: seen.append((k, d)))
    r.start()
    res = r.stop()
    # 10 MB at 48 kHz x 2 ch x 3 bytes = 34.7 s
    assert len(seen) == 1 and seen[0][0] == "disk_low"
    assert "about 34 s of recording left" in seen[0][1] and r.warning == seen[0][1]
    assert [e["kind"] for e in sidecar_of(res)["events"]] == ["disk_low"]
    assert res.stopped_reason is None


# --- formats, rollover, names ------------------------------------------------------------

def test_flac_is_transcoded_at_stop_and_the_wav_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(rec_mod, "WAV_LIMIT_BYTES", 5000 * 6)   # the WAV rolls over too
    s = make_session(tmp_path)
    io = allocate_io(s, stems=True, record_s=8192 / SR)
    d = tmp_path / "takes"
    r = Recorder(s, io, d, format="flac", subtype="PCM_24", stems=True)
    r.start()
    assert (d / f"{r.take}.wav").exists() and not (d / f"{r.take}.flac").exists()
    audio = FakeAudio(io)
    rng = np.random.default_rng(7)
    m, st = sig(rng, 12000, 2), sig(rng, 2, 2, 12000)
    for k in range(0, 12000, 1000):
        audio.push_when_room(m[k:k + 1000], st[:, :, k:k + 1000])
    res = r.stop()
    assert [p.name for p in res.paths] == [f"{r.take}.flac", f"{r.take}.voice.flac",
                                           f"{r.take}.music.flac"]
    for p in res.paths:
        assert sf.info(str(p)).format == "FLAC" and sf.info(str(p)).subtype == "PCM_24"
    assert np.array_equal(read(res.paths[0]), m)
    assert np.array_equal(read(res.paths[1]), st[0].T)
    assert np.array_equal(read(res.paths[2]), st[1].T)
    assert list(d.glob("*.wav")) == []
    side = sidecar_of(res)
    assert side["format"] == "flac" and side["frames"] == 12000
    assert [f["path"] for f in side["files"]] == [p.name for p in res.paths]


def test_flac_needs_an_integer_subtype(tmp_path):
    s = make_session(tmp_path)
    with pytest.raises(LivemixError, match="flac"):
        Recorder(s, allocate_io(s), tmp_path, format="flac", subtype="FLOAT")


def test_wav_rolls_over_to_parts(tmp_path, monkeypatch):
    limit = 3000 * 6 + 5                         # 3000 stereo PCM_24 frames per file
    monkeypatch.setattr(rec_mod, "WAV_LIMIT_BYTES", limit)
    s = make_session(tmp_path)
    io = allocate_io(s, stems=True, record_s=8192 / SR)
    r = Recorder(s, io, tmp_path / "takes", subtype="PCM_24", stems=True)
    r.start()
    audio = FakeAudio(io)
    rng = np.random.default_rng(8)
    m1, s1 = sig(rng, 4000, 2), sig(rng, 2, 2, 4000)
    m2, s2 = sig(rng, 3700, 2), sig(rng, 2, 2, 3700)
    for k in range(0, 4000, 800):
        audio.push_when_room(m1[k:k + 800], s1[:, :, k:k + 800])
    for k in range(0, 3500, 700):               # silence across a part boundary
        audio.push_when_room(np.zeros((700, 2), np.float32), np.zeros((2, 2, 700), np.float32))
    for k in range(0, 3700, 740):
        audio.push_when_room(m2[k:k + 740], s2[:, :, k:k + 740])
    res = r.stop()
    take = r.take
    names = [f"{take}.wav", f"{take}-part2.wav", f"{take}-part3.wav", f"{take}-part4.wav"]
    for t in ("voice", "music"):
        names += [n.replace(".wav", f".{t}.wav") for n in names[:4]]
    assert [p.name for p in res.paths] == names
    z = np.zeros((3500, 2), np.float32)
    expected = [np.concatenate([m1, z, m2])]
    expected += [np.concatenate([s1[t].T, z, s2[t].T]) for t in range(2)]
    for k, exp in enumerate(expected):
        parts = res.paths[4 * k:4 * k + 4]
        lens = [sf.info(str(p)).frames for p in parts]
        assert lens == [3000, 3000, 3000, 2200]
        assert all(p.stat().st_size - 44 <= limit for p in parts)
        assert np.array_equal(np.concatenate([read(p) for p in parts]), exp)
    assert res.frames == 11200
    side = sidecar_of(res)
    assert [(f["path"], f["start_frame"], f["frames"]) for f in side["files"]] == \
        [(n, 3000 * (i % 4), 3000 if i % 4 < 3 else 2200) for i, n in enumerate(names)]


@pytest.mark.parametrize("fmt", ["w64", "rf64"])
def test_w64_and_rf64_do_not_roll_over(tmp_path, monkeypatch, fmt):
    monkeypatch.setattr(rec_mod, "WAV_LIMIT_BYTES", 1000 * 6)
    s = make_session(tmp_path)
    io = allocate_io(s, record_s=8192 / SR)
    r = Recorder(s, io, tmp_path / "takes", format=fmt)
    r.start()
    audio = FakeAudio(io)
    m = sig(np.random.default_rng(9), 5000, 2)
    audio.push_when_room(m)
    res = r.stop()
    assert [p.name for p in res.paths] == [f"{r.take}.{fmt}"]
    assert sf.info(str(res.paths[0])).format == fmt.upper()
    assert np.array_equal(read(res.paths[0]), m)


def test_takes_in_the_same_second_get_suffixes(tmp_path, monkeypatch):
    fixed = datetime(2026, 1, 2, 3, 4, 5).astimezone()
    monkeypatch.setattr(rec_mod, "_now", lambda: fixed)
    s = make_session(tmp_path)
    io = allocate_io(s)
    names = []
    for _ in range(3):
        r = Recorder(s, io, tmp_path / "takes")
        r.start()
        names.append(r.stop().paths[0].name)
    assert names == ["show-20260102-030405.wav", "show-20260102-030405-2.wav",
                     "show-20260102-030405-3.wav"]
    assert (tmp_path / "takes" / "show-20260102-030405-2.json").exists()


def test_start_refuses_while_another_take_records(tmp_path):
    s = make_session(tmp_path)
    io = allocate_io(s)
    r = Recorder(s, io, tmp_path / "takes")
    r.start()
    try:
        with pytest.raises(LivemixError, match="already recording"):
            Recorder(s, io, tmp_path / "takes2").start()
    finally:
        r.stop()
    assert not (tmp_path / "takes2").exists()


def test_flac_that_does_not_check_out_keeps_the_wav(tmp_path, monkeypatch):
    def mismatch(a, b):
        raise rec_mod._Mismatch(f"FLAC check: {b[0]} differs from the WAV near frame 0")
    monkeypatch.setattr(rec_mod, "_compare_int", mismatch)
    s = make_session(tmp_path)
    io = allocate_io(s, record_s=8192 / SR)
    seen = []
    r = Recorder(s, io, tmp_path / "takes", format="flac", subtype="PCM_16",
                 on_event=lambda k, d: seen.append(k))
    r.start()
    m = (np.random.default_rng(10).integers(-2**15, 2**15, (3000, 2)) / 2**15).astype(np.float32)
    FakeAudio(io).push_when_room(m)
    res = r.stop()
    assert [p.name for p in res.paths] == [f"{r.take}.wav"]
    assert np.array_equal(read(res.paths[0]), m)
    assert not (tmp_path / "takes" / f"{r.take}.flac").exists()
    assert seen == ["transcode_failed"]
    side = sidecar_of(res)
    assert "differs" in side["flac_error"] and side["files"][0]["path"] == f"{r.take}.wav"


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_24"), ("WAV", "FLOAT"),
                                         ("W64", "FLOAT")])
def test_recover_cuts_a_partial_frame_and_pads_odd_data(tmp_path, fmt, subtype):
    """The state kill -9 leaves, without a process: a copy of a file libsndfile still
    has open (its header says 0 frames), plus part of a frame written at the kill.
    The repair equals what libsndfile writes when it closes the file (float files:
    but for the PEAK chunk's peak values, which recover leaves alone)."""
    x = (np.arange(-1001, 1000, 2)[:, None] / 2**23).astype(np.float32)   # 1001 frames
    ext = fmt.lower()
    live = tmp_path / f"live.{ext}"
    f = sf.SoundFile(str(live), "w", SR, 1, subtype, format=fmt)
    f.write(x)
    path = tmp_path / f"take.{ext}"
    shutil.copyfile(live, path)                    # libsndfile writes unbuffered
    f.close()
    with open(path, "ab") as g:
        g.write(b"\x01\x02")                       # 2 bytes of frame 1002
    raw = path.read_bytes()
    d = raw.index(b"data")
    unfinished = (int.from_bytes(raw[d + 16:d + 24], "little") == 24 if fmt == "W64"
                  else int.from_bytes(raw[d + 4:d + 8], "little") == 0)
    assert unfinished                              # the data size was never written
    msg = recover(path)
    assert "header repaired: 1001 frames" in msg and "the header said 0" in msg
    assert np.array_equal(read(path), x)
    raw, ref = path.read_bytes(), live.read_bytes()
    if b"PEAK" in ref:                             # fact chunk included: same bytes
        a, b = ref.index(b"PEAK"), ref.index(b"data")
        raw, ref = raw[:a] + raw[b:], ref[:a] + ref[b:]
    assert raw == ref
    if subtype == "PCM_24":
        with wave.open(str(path)) as w:
            assert w.getnframes() == 1001 and w.getsampwidth() == 3
        assert path.stat().st_size == 44 + 3003 + 1   # odd data: one pad byte
