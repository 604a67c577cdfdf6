"""Takes recorded live through a real JACK server: complete, aligned, equal to the
offline render, and safe against kill -9, a full disk, a stalled disk and a
freewheeling server."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, run_cli, small_tmpfs
from reference import sine

from engine.backends.offline import render
from engine.dsp.layout import ST_FRAMES, ST_FREEWHEEL, ST_XRUNS
from engine.live import LiveEngine
from engine.session import load_session

SR = 48000


def busy_session(maker, ntracks=16, seconds=12.0, loop=False, record=None):
    """ntracks file tracks (sines and seeded noise), track 0 keys a ducking rule."""
    rng = np.random.default_rng(5)
    n = int(seconds * SR)
    tracks = []
    for i in range(ntracks):
        if i == 0:
            x = sine(180, seconds, SR, 0.3) * (np.sin(2 * np.pi * 0.7 * np.arange(n) / SR) > 0)
        elif i % 2:
            x = sine(110 * (i + 1), seconds, SR, 0.05)
        else:
            x = rng.uniform(-0.05, 0.05, n)
        maker.audio(f"t{i}.wav", x)
        tracks.append({"name": f"t{i}", "file": f"t{i}.wav", "loop": loop,
                       "pan": round((i % 5 - 2) / 2.5, 2)})
    rec = {"format": "wav", "subtype": "FLOAT", "dir": "takes"}
    rec.update(record or {})
    targets = [f"t{i}" for i in range(1, min(4, ntracks))]
    path = maker.session(tracks, ducking=[{"key": ["t0"], "targets": targets,
                                           "depth_db": -9.0}],
                         master={"ceiling_db": -1.0}, record=rec)
    return load_session(path)


def offline(session, frames, tmp):
    out = tmp / "offline.wav"
    render(session, str(out), duration_s=frames / SR, subtype="FLOAT")
    return sf.read(out, dtype="float32")[0]


def test_take_equals_frames_played_and_the_offline_render(maker, jack):
    """Every frame the engine played is in the take, equal to the offline render. JACK
    xruns do not change what the engine computed (they are the graph being late), so
    the comparison holds with them; only a source that ran dry would differ."""
    session = busy_session(maker)
    eng = LiveEngine(session, backend="portaudio", say=lambda *_: None)
    eng.start()
    time.sleep(10.0)
    summary = eng.stop()
    take, _ = sf.read(summary.take, dtype="float32")
    side = json.loads(open(summary.take[:-4] + ".json").read())
    assert summary.dropped_frames == 0 and side["dropped_frames"] == 0
    # the take ends where recording stopped; the engine played on until the audio stopped
    assert len(take) == side["frames"] <= summary.frames
    assert len(take) >= 2 * SR                      # it ran (10 s were asked)
    assert side["complete"] is True and side["samplerate"] == SR
    assert sum(summary.underruns.values()) == 0, summary.underruns
    np.testing.assert_array_equal(take, offline(session, len(take), maker.root))


def _align_blocks(got, take, block):
    """Follow the capture through the take block by block: (blocks matched in sequence,
    realignments, blocks found nowhere). A block equal to the take where the previous
    one left off continues the run; otherwise it is looked for anywhere in the take
    (a new run starts there: a discontinuity) or counted as found nowhere."""
    def find(seg):
        hits = np.flatnonzero(np.abs(take[:len(take) - block + 1, 0] - seg[0, 0]) < 1e-9)
        for k in hits:
            if np.abs(take[k:k + block] - seg).max() < 1e-6:
                return int(k)
        return None

    matched = jumps = lost = 0
    at = None
    for i in range(0, len(got) - block + 1, block):
        seg = got[i:i + block]
        if at is not None and at + block <= len(take) and \
                np.abs(take[at:at + block] - seg).max() < 1e-6:
            matched += 1
            at += block
            continue
        k = find(seg)
        if k is None:
            lost += 1
            if at is not None:
                at += block
            continue
        if at is not None:
            jumps += 1
        matched += 1
        at = k + block
    return matched, jumps, lost


def test_what_jack_received_equals_the_take(maker, jack):
    """jack_rec, another JACK client, records livemix's output ports: what it received
    is the take, block for block. A JACK xrun (any client late, jack_rec included) can
    skip or repeat a cycle in the capture, and jack_rec drops cycles its disk thread
    cannot take (its "overruns"): the capture may break only as many times as those
    two counts, measured in the same run, allow."""
    session = busy_session(maker, ntracks=4, seconds=8.0)
    eng = LiveEngine(session, backend="portaudio", say=lambda *_: None)
    eng.start()
    try:
        time.sleep(0.5)
        cap = maker.root / "jack_rec.wav"
        ports = [p for p in jack.ports() if p.startswith("livemix:out")]
        assert len(ports) == 2, jack.ports()
        x0 = int(eng.io.stats[ST_XRUNS])
        rec = subprocess.run(["jack_rec", "-f", str(cap), "-d", "2", "-b", "32", *ports],
                             env=jack.env, capture_output=True, text=True, timeout=20)
        xruns = int(eng.io.stats[ST_XRUNS]) - x0
    finally:
        summary = eng.stop()
    overruns = re.search(r"(\d+) overruns", rec.stderr)
    overruns = int(overruns.group(1)) if overruns else 0
    take, _ = sf.read(summary.take, dtype="float64")
    got, _ = sf.read(cap, dtype="float64")
    assert len(got) >= 1.5 * SR
    block = jack.period
    matched, jumps, lost = _align_blocks(got, take, block)
    blocks = len(got) // block
    assert jumps + lost <= 2 * (xruns + overruns), (matched, jumps, lost, xruns, overruns)
    assert matched >= blocks - 2 * (xruns + overruns) - 1


def _run_cli_background(args, env):
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *map(str, args)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _last_stats(path):
    """The last complete line of a --stats-json file, or None."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def test_kill_9_loses_nothing_the_engine_recorded(maker, jack):
    """kill -9 of the parent mid-take, then `livemix recover`: the take holds at least
    every frame the engine had mixed at the last --stats-json line before the kill (a
    frame count from the running engine, not from wall-clock time), each equal to the
    offline render: what the writer had not yet written is salvaged from the record
    ring, which outlives the parent. The audio child does not outlive it, and the
    ring's memory is freed by the salvage."""
    session = busy_session(maker, ntracks=4)
    stats = maker.root / "stats.jsonl"
    p = _run_cli_background(["run", session.path, "--duration", "30", "--ui", "none",
                             "--stats-json", stats], env=jack.env)
    deadline = time.monotonic() + 60
    line = None
    while time.monotonic() < deadline:
        line = _last_stats(stats)
        if line and line["engine"]["recording"] and line["frame"] >= 2 * SR:
            break
        time.sleep(0.02)
    assert line is not None and line["frame"] >= 2 * SR, p.stderr.read() if p.poll() else line
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    wav = sorted((maker.root / "takes").glob("*.wav"))[0]
    side = json.loads(wav.with_suffix(".json").read_text())
    assert side["complete"] is False
    block = Path("/dev/shm") / side["record_ring"]["block"]
    assert block.exists()                          # the ring outlived the parent
    r = subprocess.run([sys.executable, "-m", "engine.cli", "recover", str(wav)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "salvaged" in r.stdout
    take, _ = sf.read(wav, dtype="float32")
    assert len(take) >= line["frame"]              # the take started with the run (frame 0)
    np.testing.assert_array_equal(take, offline(session, len(take), maker.root))
    side = json.loads(wav.with_suffix(".json").read_text())
    assert side["recovered"] is True and side["frames"] == len(take)
    assert side["salvaged_frames"] >= 0 and "record_ring" not in side
    assert not block.exists()
    # the audio child did not outlive its parent
    assert not any(port.startswith("livemix:") for port in jack.ports())
    # a second recover finds nothing more to do and changes nothing
    r = subprocess.run([sys.executable, "-m", "engine.cli", "recover", str(wav)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0 and sf.info(wav).frames == len(take)


def test_recover_refuses_a_take_still_recording(maker, jack):
    session = busy_session(maker, ntracks=2)
    eng = LiveEngine(session, backend="portaudio", say=lambda *_: None)
    eng.start()
    try:
        time.sleep(1.0)
        wav = sorted((maker.root / "takes").glob("*.wav"))[0]
        r = subprocess.run([sys.executable, "-m", "engine.cli", "recover", str(wav)],
                           cwd=ROOT, capture_output=True, text=True)
    finally:
        summary = eng.stop()
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "still being recorded" in err[0] and wav.name in err[0]
    side = json.loads(wav.with_suffix(".json").read_text())
    assert summary.take == str(wav) and sf.info(wav).frames == side["frames"] > 0


def test_disk_full_stops_recording_not_audio(maker, jack, tmp_path):
    with small_tmpfs(tmp_path / "small") as small:
        session = busy_session(maker, ntracks=2, record={"dir": str(small)})
        said = []
        eng = LiveEngine(session, backend="portaudio", say=said.append)
        eng.start()
        time.sleep(3.0)                   # 1 MiB of FLOAT stereo is ~2.7 s
        frames_at_3s = int(eng.io.stats[ST_FRAMES])
        time.sleep(1.0)
        assert int(eng.io.stats[ST_FRAMES]) > frames_at_3s + 0.8 * SR   # audio goes on
        summary = eng.stop()
        assert summary.stopped_reason and "disk full" in summary.stopped_reason
        assert any("disk full" in s for s in said)
        take, _ = sf.read(summary.take, dtype="float32")
        assert 0.5 * SR < len(take) < 3 * SR
        np.testing.assert_array_equal(take, offline(session, len(take), maker.root))


def test_disk_stall_of_3_s_loses_nothing(maker, jack, monkeypatch):
    session = busy_session(maker, ntracks=4)
    eng = LiveEngine(session, backend="portaudio", say=lambda *_: None)
    eng.start()
    time.sleep(1.0)
    write = eng.recorder._drain
    stalled = {"done": False}

    def stalled_drain(*a, **k):
        if not stalled["done"]:
            stalled["done"] = True
            time.sleep(3.0)               # the disk does not answer for 3 s
        return write(*a, **k)

    eng.recorder._drain = stalled_drain
    time.sleep(5.0)
    summary = eng.stop()
    assert stalled["done"]
    assert summary.dropped_frames == 0
    take, _ = sf.read(summary.take, dtype="float32")
    assert len(take) == json.loads(Path(summary.take).with_suffix(".json").read_text())["frames"]
    assert sum(summary.underruns.values()) == 0, summary.underruns
    np.testing.assert_array_equal(take, offline(session, len(take), maker.root))


def _freewheel(env, on):
    subprocess.run(["jack_freewheel", "y" if on else "n"], env=env, check=True,
                   capture_output=True, timeout=10)


def _rss_kb():
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.parametrize("minutes", [float(os.environ.get("LIVEMIX_SOAK_MINUTES", "5"))])
def test_freewheel_soak_is_deterministic(maker, jack, minutes):
    """A long take twice with JACK freewheeling: bit-identical, memory flat.
    (CI runs 5 minutes of session time; benchmarks and LIVEMIX_SOAK_MINUTES=20 the full length.)"""
    session = busy_session(maker, ntracks=8, seconds=7.0, loop=True)
    frames_wanted = int(minutes * 60 * SR)
    takes, rss = [], []
    for _ in range(2):
        eng = LiveEngine(session, backend="portaudio", say=lambda *_: None)
        eng.start()
        rss.append(_rss_kb())
        _freewheel(jack.env, True)
        t0 = time.monotonic()
        seen = set()
        while int(eng.io.stats[ST_FRAMES]) < frames_wanted and time.monotonic() - t0 < 120:
            seen.add(int(eng.io.stats[ST_FREEWHEEL]))
            time.sleep(0.05)
        assert 1 in seen                    # the engine knew it was freewheeling
        _freewheel(jack.env, False)
        rss.append(_rss_kb())
        summary = eng.stop()
        assert summary.dropped_frames == 0
        assert sum(summary.underruns.values()) == 0, summary.underruns
        takes.append(summary.take)
    a = sf.read(takes[0], dtype="float32", frames=frames_wanted)[0]
    b = sf.read(takes[1], dtype="float32", frames=frames_wanted)[0]
    assert len(a) == len(b) == frames_wanted
    np.testing.assert_array_equal(a, b)
    assert rss[1] - rss[0] < 50_000 and rss[3] - rss[2] < 50_000, rss   # KiB


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_stop_with_a_complete_take(maker, jack, sig):
    session = busy_session(maker, ntracks=2)
    p = _run_cli_background(["run", session.path, "--ui", "plain"], env=jack.env)
    lines = []
    for line in p.stdout:                 # wait until 2 s have played, however slow start-up is
        lines.append(line)
        m = re.match(r"\s*([\d.]+) s  load max", line)
        if m and float(m.group(1)) >= 2.0:  # a status line a second, wherever it falls
            break
    p.send_signal(sig)
    out, err = p.communicate(timeout=180)       # a hang guard: the report is drawn first
    out = "".join(lines) + out
    assert p.returncode == 0, err
    assert "xruns" in out and "take:" in out and "Traceback" not in err
    assert " s  load max" in out                       # the plain status line ran
    take = out.split("take: ")[1].split()[0]
    side = json.loads(open(take[:-4] + ".json").read())
    assert side["complete"] is True and side["dropped_frames"] == 0
    assert side["frames"] == sf.info(take).frames >= 1.5 * SR
    for key in ("device", "hostapi", "latency_s", "load", "underruns", "xruns"):
        assert key in side or key in side.get("extra", {}), key


@pytest.mark.parametrize("mode", ["sample-peak", "true-peak"])
def test_an_impulse_is_at_its_session_frame_in_render_take_and_stems(maker, jack, mode):
    """Every file livemix writes is in session time: the master's delay (the limiter's
    lookahead, longer in true-peak mode) is compensated in the offline render (rendered
    past the end, cut from the start: exactly as long as asked) and in the take, whose
    stems are delayed to meet the master."""
    F = SR + 1000
    click = np.zeros(4 * SR, np.float32)
    click[F] = 0.5
    maker.audio("click.wav", click)
    maker.audio("bed.wav", np.zeros(4 * SR, np.float32))
    session = load_session(maker.session(
        [{"name": "click", "file": "click.wav"}, {"name": "bed", "file": "bed.wav"}],
        master={"ceiling_db": -1.0, "ceiling_mode": mode},
        record={"format": "wav", "subtype": "FLOAT", "dir": "takes", "stems": True}))
    out = maker.root / "render.wav"
    render(session, str(out), duration_s=2.0, subtype="FLOAT")
    r, _ = sf.read(out, dtype="float32")
    assert len(r) == 2 * SR
    assert np.flatnonzero(r[:, 0]).tolist() == [F]
    eng = LiveEngine(session, backend="portaudio", say=lambda *_: None)
    eng.start()
    try:
        while int(eng.io.stats[ST_FRAMES]) < F + SR // 2:
            time.sleep(0.05)
    finally:
        summary = eng.stop()
    side = json.loads(Path(summary.take).with_suffix(".json").read_text())
    at = F - side["start_frame"]
    take, _ = sf.read(summary.take, dtype="float32")
    assert np.flatnonzero(take[:, 0]).tolist() == [at]
    stem = next(Path(summary.take).parent.glob(Path(summary.take).stem + ".click.wav"))
    s, _ = sf.read(stem, dtype="float32")
    assert np.flatnonzero(s[:, 0]).tolist() == [at] and len(s) == len(take)
    n = min(len(take), len(r) - side["start_frame"])
    np.testing.assert_array_equal(take[:n], r[side["start_frame"]:side["start_frame"] + n])


def test_an_outage_pauses_session_time_and_the_take_stays_in_step(maker, jack):
    """The audio server dies mid-take and comes back: session time pauses with the
    device, so the take stays one continuous piece of session time: it equals the
    offline render frame for frame across the outage, a fader move made after it is
    logged and heard at the same frame, and the sidecar marks the outage where it
    happened in the take."""
    session = busy_session(maker, ntracks=4)
    eng = LiveEngine(session, backend="portaudio", say=lambda *_: None)
    eng.start()
    try:
        while int(eng.io.stats[ST_FRAMES]) < SR:
            time.sleep(0.02)
        jack.kill()
        end = time.monotonic() + 10
        while not eng.backend.device_lost and time.monotonic() < end:
            time.sleep(0.01)
        lost_at = int(eng.io.stats[ST_FRAMES])
        time.sleep(0.5)
        jack.start()
        while eng.backend.device_lost and time.monotonic() < end + 10:
            time.sleep(0.01)
        resumed = int(eng.io.stats[ST_FRAMES])
        eng.set("t1", "gain", -12.0)
        while int(eng.io.stats[ST_FRAMES]) < resumed + SR:
            time.sleep(0.02)
    finally:
        summary = eng.stop()
    side = json.loads(Path(summary.take).with_suffix(".json").read_text())
    kinds = {e["kind"]: e["frame"] for e in side["events"]}
    assert "device_lost" in kinds and "device_back" in kinds
    assert abs(kinds["device_lost"] - lost_at) <= SR // 10       # where it happened
    assert kinds["device_back"] - kinds["device_lost"] < SR // 10  # no time went by
    move = [a for a in side["automation"] if a["target"] == "t1"][-1]
    assert move["frame"] >= resumed
    take, _ = sf.read(summary.take, dtype="float32")
    assert sum(summary.underruns.values()) == 0, summary.underruns
    out = maker.root / "replay.wav"
    run_cli("render", session.path, "--automation", Path(summary.take).with_suffix(".json"),
            "-o", out, "--subtype", "FLOAT")
    np.testing.assert_array_equal(sf.read(out, dtype="float32")[0], take)
