"""Takes recorded live through a real JACK server: complete, aligned, equal to the
offline render, and safe against kill -9, a full disk, a stalled disk and a
freewheeling server."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, small_tmpfs
from reference import sine

from engine.backends.offline import render
from engine.dsp.layout import ST_FRAMES
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
    session = busy_session(maker)
    eng = LiveEngine(session, backend="portaudio", say=lambda *_: None)
    eng.start()
    time.sleep(10.0)
    summary = eng.stop()
    take, _ = sf.read(summary.take, dtype="float32")
    side = json.loads(open(summary.take[:-4] + ".json").read())
    assert summary.dropped_frames == 0 and side["dropped_frames"] == 0
    assert len(take) == summary.frames == side["frames"]
    assert summary.frames >= 9.5 * SR
    assert side["complete"] is True and side["samplerate"] == SR
    if summary.xruns == 0 and sum(summary.underruns.values()) == 0:
        expected = offline(session, len(take), maker.root)
        np.testing.assert_array_equal(take, expected)


def test_what_jack_received_equals_the_take(maker, jack):
    session = busy_session(maker, ntracks=4, seconds=8.0)
    eng = LiveEngine(session, backend="portaudio", say=lambda *_: None)
    eng.start()
    try:
        time.sleep(0.5)
        cap = maker.root / "jack_rec.wav"
        ports = [p for p in jack.ports() if p.startswith("livemix:out")]
        assert len(ports) == 2, jack.ports()
        subprocess.run(["jack_rec", "-f", str(cap), "-d", "2", "-b", "32", *ports],
                       env=jack.env, check=True, capture_output=True, timeout=20)
    finally:
        summary = eng.stop()
    take, _ = sf.read(summary.take, dtype="float64")
    got, _ = sf.read(cap, dtype="float64")
    assert len(got) >= 1.5 * SR
    # find where the capture starts in the take, then compare everything
    seg = got[SR // 2:SR // 2 + 64, 0]
    start = None
    for k in range(len(take) - 64):
        if np.abs(take[k:k + 64, 0] - seg).max() < 1e-6:
            start = k - SR // 2
            break
    assert start is not None and start >= 0
    n = min(len(got), len(take) - start)
    np.testing.assert_allclose(got[:n], take[start:start + n], atol=2 ** -30)


def _run_cli_background(args, env):
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *map(str, args)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_leaves_a_take_that_opens(maker, jack):
    session = busy_session(maker, ntracks=4)
    p = _run_cli_background(["run", session.path, "--duration", "30", "--ui", "none"],
                            env=jack.env)
    takes = maker.root / "takes"
    deadline = time.monotonic() + 30
    # the audio is running once the take holds data (the file exists a little before)
    while time.monotonic() < deadline and not any(
            w.stat().st_size > 65536 for w in takes.glob("*.wav")):
        time.sleep(0.05)
    time.sleep(2.0)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    wav = sorted(takes.glob("*.wav"))[0]
    take, _ = sf.read(wav, dtype="float32")
    assert len(take) >= 1.5 * SR
    side = json.loads(wav.with_suffix(".json").read_text())
    assert side["complete"] is False
    # every frame that made it to disk is the right one
    np.testing.assert_array_equal(take, offline(session, len(take), maker.root))
    # the audio child did not outlive its parent
    time.sleep(1.0)
    assert not any(port.startswith("livemix:") for port in jack.ports())
    r = subprocess.run([sys.executable, "-m", "engine.cli", "recover", str(wav)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sf.info(wav).frames == len(take)
    assert json.loads(wav.with_suffix(".json").read_text())["recovered"] is True


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
    import engine.recorder as recorder_mod
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
    assert len(take) == summary.frames
    if summary.xruns == 0:
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
        while int(eng.io.stats[ST_FRAMES]) < frames_wanted and time.monotonic() - t0 < 120:
            time.sleep(0.05)
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
        if line.strip().startswith("2.0 s"):
            break
    p.send_signal(sig)
    out, err = p.communicate(timeout=20)
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
