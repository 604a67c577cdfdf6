"""Nothing a user types can destroy a file, hang a command or bend the engine.

Every command that writes follows one rule (engine.outputs): no overwrite without
--force, never over an input (by path, symlink or hard link), a temporary name
renamed when complete. Bounds are one validator for files, flags and the API.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from clips import make_clip, need_ffmpeg, noise
from conftest import ROOT, small_tmpfs
from reference import sine

from engine.errors import LivemixError
from engine.session import load_session

SR = 48000


def one_track(maker, seconds=1.0, **extra):
    maker.audio("a.wav", sine(440, seconds, SR, amp=0.2))
    return maker.session([{"name": "a", "file": "a.wav"}], **extra)


def one_line_error(p, *words):
    assert p.returncode != 0, p.stdout
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in p.stderr, p.stderr
    for w in words:
        assert w in err[0], (w, err[0])


# --- render: the rule -------------------------------------------------------------------

def test_render_never_overwrites_without_force_and_never_an_input(maker, cli, tmp_path):
    s = one_track(maker)
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious")
    one_line_error(cli("render", s, "-o", out, check=False), str(out), "already exists",
                   "--force")
    assert out.read_bytes() == b"precious"
    cli("render", s, "-o", out, "--force")
    assert sf.info(out).frames == SR
    # a source, by a hard link and by a symlink: refused even with --force
    os.link(tmp_path / "a.wav", tmp_path / "hard.wav")
    os.symlink(tmp_path / "a.wav", tmp_path / "soft.wav")
    before = (tmp_path / "a.wav").read_bytes()
    for name in ("hard.wav", "soft.wav", "a.wav"):
        one_line_error(cli("render", s, "-o", tmp_path / name, "--force", check=False),
                       "is one of this render's inputs")
    assert (tmp_path / "a.wav").read_bytes() == before
    one_line_error(cli("render", s, "-o", s, "--force", check=False), "inputs")   # the session
    assert not list(tmp_path.glob(".*.part*"))


def test_render_refuses_what_cannot_fit_and_leaves_the_old_file(maker, cli, tmp_path):
    """A render needing more than the disk has is refused before it writes; the file it
    would have replaced is untouched (it writes to a temporary name, renamed at the end)."""
    s = one_track(maker, seconds=1.0)
    with small_tmpfs(tmp_path / "small", "size=600k") as small:
        out = small / "out.wav"
        out.write_bytes(b"old")
        p = cli("render", s, "-o", out, "--force", "--duration", "10", check=False)
        one_line_error(p, str(out), "needs", "free")
        assert out.read_bytes() == b"old"
        assert not list(small.glob(".*"))


@pytest.mark.parametrize("args,words", [
    (["--duration", "1e12"], "more than 24 hours"),
    (["--duration", "inf"], "more than 24 hours"),
    (["--duration", "nan"], "not a number"),
    (["--duration", "0"], "more than 0"),
    (["--blocksize", "100000"], "8192"),
])
def test_render_bounds_are_one_line(maker, cli, tmp_path, args, words):
    s = one_track(maker)
    one_line_error(cli("render", s, "-o", tmp_path / "o.wav", *args, check=False), words)


def test_a_huge_offset_in_a_session_is_refused(maker):
    from engine.errors import SessionError
    maker.audio("a.wav", np.zeros(100))
    p = maker.session([{"name": "a", "file": "a.wav", "offset_s": 1e12}])
    with pytest.raises(SessionError, match="offset_s.*above the maximum 86400"):
        load_session(p)


def test_a_wav_render_past_4_gib_is_rf64_and_says_so(maker, tmp_path, monkeypatch):
    """(4 GiB shrunk to 100 kB for the test: the same code decides.)"""
    from engine.backends import offline
    monkeypatch.setattr(offline, "WAV_MAX_BYTES", 100_000)
    s = load_session(one_track(maker, seconds=2.0))
    out = tmp_path / "big.wav"
    r = offline.render(s, str(out), subtype="FLOAT")
    assert sf.info(out).format == "RF64" and sf.info(out).frames == 2 * SR
    assert any("written as RF64" in n for n in r.notices)
    assert "MB" in r.summary()                      # the size is shown


# --- run: one validator ------------------------------------------------------------------

@pytest.mark.parametrize("args,words", [
    (["--samplerate", "1"], "1 Hz is not supported"),
    (["--samplerate", "12345"], "12345 Hz is not supported"),
    (["--blocksize", "100000"], "not supported live (16 to 8192)"),
    (["--blocksize", "1"], "not supported live (16 to 8192)"),
    (["--duration", "inf"], "more than 24 hours"),
])
def test_run_takes_only_what_sessions_take(maker, cli, args, words):
    s = one_track(maker)
    one_line_error(cli("run", s, "--backend", "virtual", *args, check=False), words)


def test_the_python_api_checks_the_same(maker):
    from engine.live import LiveEngine
    s = load_session(one_track(maker))
    for kw, words in (({"samplerate": 12345}, "12345 Hz"), ({"blocksize": 1}, "16 to 8192"),
                      ({"backend": "jack"}, "backend 'jack'")):
        with pytest.raises(LivemixError, match=words):
            LiveEngine(s, **kw)


# --- report and video -------------------------------------------------------------------

def _fake_take(tmp_path, session_path):
    """A finished take (master WAV + sidecar) as livemix run leaves it."""
    d = tmp_path / "takes"
    d.mkdir()
    sf.write(d / "t.wav", np.zeros((SR, 2), np.float32), SR, subtype="FLOAT")
    side = {"take": "t", "complete": True, "session": str(session_path), "samplerate": SR,
            "channels": 2, "frames": SR, "start_frame": 0, "events": [],
            "files": [{"path": "t.wav", "kind": "master", "track": None, "part": 1,
                       "start_frame": 0, "frames": SR}]}
    (d / "t.json").write_text(json.dumps(side))
    return d / "t.json"


def test_report_writes_a_png_and_nothing_else(maker, cli, tmp_path):
    side = _fake_take(tmp_path, one_track(maker))
    wav = side.with_suffix(".wav")
    before = wav.read_bytes()
    one_line_error(cli("report", side, "-o", wav, check=False), "PNG", ".png")
    one_line_error(cli("report", side, "-o", tmp_path / "x.txt", check=False), ".png")
    (tmp_path / "r.png").write_bytes(b"mine")
    one_line_error(cli("report", side, "-o", tmp_path / "r.png", check=False), "already exists")
    assert wav.read_bytes() == before and (tmp_path / "r.png").read_bytes() == b"mine"
    cli("report", side, "-o", tmp_path / "r.png", "--force")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_video_never_writes_over_the_sessions_clip(maker, cli, tmp_path):
    need_ffmpeg()
    clip = make_clip(tmp_path / "clip.mp4", noise(1.0, amp=0.05))
    s = maker.session([{"name": "amb", "video": "clip.mp4"}], output={"video": "clip.mp4"})
    side = _fake_take(tmp_path, s)
    before = clip.read_bytes()
    one_line_error(cli("video", side, "-o", clip, "--force", check=False), "write to another")
    one_line_error(cli("video", side, "-o", side.with_suffix(".wav"), "--force", check=False),
                   "a video is")
    assert clip.read_bytes() == before
    one_line_error(cli("video", side.with_suffix(".wav"), "-o", tmp_path / "o.txt",
                       check=False), "a video is")
    p = cli("video", side.with_suffix(".wav"), "-o", tmp_path / "final.mp4")   # any take file
    assert (tmp_path / "final.mp4").is_file() and "final.mp4" in p.stdout


# --- Ctrl-C at any moment ------------------------------------------------------------------

def test_ctrl_c_at_any_moment_ends_cleanly(maker, tmp_path):
    """SIGINT at moments from the first imports through the engine's start to playing:
    every time one line and no traceback; interrupted before it played, no take is left
    (it is nobody's take); once playing, the take is complete. The waits are hang
    guards (the run ends at once in practice), not timing assertions. (The first
    ~50 ms are the interpreter's own start-up, before any livemix code can run: a
    Ctrl-C there is Python's, so the earliest moment here is 0.15 s.)"""
    s = one_track(maker, seconds=30.0, record={"dir": "takes"})
    for at in (0.15, 0.3, 0.8, 1.5, 2.5, 4.0):
        takes = tmp_path / "takes"
        for f in takes.glob("*") if takes.exists() else ():
            f.unlink()
        p = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", str(s), "--backend",
                              "virtual", "--ui", "plain", "--duration", "30"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(at)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        assert "Traceback" not in err, (at, err)
        left = sorted(f.name for f in takes.glob("*")) if takes.exists() else []
        if p.returncode == 0:                           # it was playing: a real take
            assert "take:" in out
            side = json.loads(next(takes.glob("*.json")).read_text())
            assert side["complete"] is True, at
        else:
            assert p.returncode in (130, -signal.SIGINT), (at, p.returncode, err)
            assert err.strip().splitlines() == ["livemix: interrupted"], (at, err)
            assert left == [], (at, left)


def test_a_script_without_a_main_guard_runs_the_engine(maker, tmp_path):
    """The audio process and the file readers do not run the user's script again."""
    s = one_track(maker, seconds=3.0)
    script = tmp_path / "mix.py"
    script.write_text(
        "import time\n"
        "from engine.live import LiveEngine\n"
        "from engine.session import load_session\n"
        f"eng = LiveEngine(load_session({str(s)!r}), backend='virtual', record=False,\n"
        "                 say=lambda *_: None)\n"
        "eng.start()\n"
        "time.sleep(0.5)\n"
        "print(eng.stop().lines()[0])\n")
    p = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("ran ") == 1 and "on virtual" in p.stdout


# --- the engine cannot be bent ---------------------------------------------------------------

@pytest.mark.parametrize("mode", ["sample-peak", "true-peak"])
def test_no_source_or_gain_pushes_the_output_over_the_ceiling(maker, tmp_path, mode):
    """Sources holding 1e30, 3e38, inf and NaN, every fader and the master at their
    +24 dB maximum (and a set() of 1e30 dB is clamped there: test_control): the output
    is finite and under the ceiling, and the render says what it scrubbed."""
    from engine.backends.offline import render
    x = np.zeros(SR)
    x[100:200], x[300], x[400], x[500:600], x[1000:2000] = 1e30, np.inf, np.nan, -1e30, 3e38
    maker.audio("wild.wav", x)
    maker.audio("loud.wav", 0.5 * np.ones(SR))
    s = load_session(maker.session(
        [{"name": "w", "file": "wild.wav", "gain_db": 24.0},
         {"name": "l", "file": "loud.wav", "gain_db": 24.0}],
        master={"gain_db": 24.0, "ceiling_db": -1.0, "ceiling_mode": mode}))
    r = render(s, str(tmp_path / "o.wav"), subtype="FLOAT")
    y, _ = sf.read(tmp_path / "o.wav")
    assert np.isfinite(y).all()
    assert np.abs(y).max() <= 10 ** (-1.0 / 20) * (1 + 2 ** -23)
    assert any("NaN/Inf" in n for n in r.notices)


def test_mutual_ducking_is_defined_each_key_before_any_ducking(maker, tmp_path):
    """A ducks B and B ducks A: each rule's key is its tracks' signal after the fader
    and before any ducking, so the rules never feed back. Alone, each plays at its level;
    together, both dip by the depth."""
    from engine.backends.offline import render
    t = np.arange(2 * SR) / SR
    a = 0.3 * np.sin(2 * np.pi * 300 * t) * (t < 1.0)
    b = 0.3 * np.sin(2 * np.pi * 500 * t) * (t >= 0.5)
    maker.audio("a.wav", a)
    maker.audio("b.wav", b)
    s = load_session(maker.session(
        [{"name": "a", "file": "a.wav", "pan": -1.0}, {"name": "b", "file": "b.wav", "pan": 1.0}],
        ducking=[{"key": ["a"], "targets": ["b"], "depth_db": -10.0, "hold_ms": 0.0},
                 {"key": ["b"], "targets": ["a"], "depth_db": -10.0, "hold_ms": 0.0}],
        master={"ceiling_db": 0.0}))
    render(s, str(tmp_path / "o.wav"), subtype="FLOAT")
    y, _ = sf.read(tmp_path / "o.wav")

    def level(ch, t0, t1):
        seg = y[int(t0 * SR):int(t1 * SR), ch]
        return 20 * np.log10(np.sqrt(2) * np.sqrt(np.mean(seg ** 2)) / (0.3 * np.sqrt(2)))

    assert level(0, 0.1, 0.45) == pytest.approx(0.0, abs=0.1)      # a alone
    assert level(0, 0.7, 0.95) == pytest.approx(-10.0, abs=0.5)    # together: both ducked
    assert level(1, 0.7, 0.95) == pytest.approx(-10.0, abs=0.5)
    assert level(1, 1.6, 1.95) == pytest.approx(0.0, abs=0.1)      # b alone


# --- messages: one line, the right words -----------------------------------------------------

def test_version_and_device_and_recover_messages(maker, cli, tmp_path):
    p = cli("--version")
    assert p.stdout.strip().startswith("livemix ")
    s = one_track(maker)
    env = {"JACK_DEFAULT_SERVER": "livemix-no-such-server"}    # no output device at all
    one_line_error(cli("run", s, "--device", "nope", "--duration", "1", "--no-record",
                       check=False, env=env), "--device 'nope'", "no audio output device")
    one_line_error(cli("recover", tmp_path, check=False), "is a directory")
    p = cli("devices", env=env)
    assert p.stderr == ""                       # no library noise from probing


def test_recover_takes_the_sidecar(maker, cli, tmp_path):
    side = _fake_take(tmp_path, one_track(maker))
    p = cli("recover", side)
    assert "t.wav" in p.stdout and json.loads(side.read_text())["recovered"] is True


def test_new_names_the_file_it_writes_never_a_temporary_one(maker, cli, tmp_path):
    need_ffmpeg()
    make_clip(tmp_path / "clip.mp4", noise(1.0, amp=0.05))
    sf.write(tmp_path / "zero.wav", np.zeros((0, 2), np.float32), SR)
    p = cli("new", "--video", tmp_path / "clip.mp4", "--voice", tmp_path / "zero.wav", "-o",
            tmp_path / "s.toml", check=False)
    if p.returncode != 0:
        one_line_error(p)
        assert ".part" not in p.stderr and ".new" not in p.stderr
    with small_tmpfs(tmp_path / "ro", "size=64k,ro") as ro:
        one_line_error(cli("new", "--video", tmp_path / "clip.mp4", "-o", ro / "s.toml",
                           check=False), "not writable")


def test_check_calls_nan_samples_what_they_are(cli, tmp_path):
    x = 0.1 * np.sin(np.arange(3 * SR) * 0.05)
    x[SR:SR + 2000] = np.nan
    sf.write(tmp_path / "nan.wav", np.stack([x, x], 1).astype(np.float32), SR, subtype="FLOAT")
    r = json.loads(cli("check", tmp_path / "nan.wav", "--json").stdout)[0]
    assert r["verdict"] == "replace" and "NaN/Inf" in r["reason"]
    assert not any(p["kind"] == "dropout" for p in r["problems"])


def test_near_silence_reads_minus_inf_not_minus_a_thousand():
    from engine.live import _loudness
    assert _loudness(1e-130) == -float("inf") and _loudness(0.0) == -float("inf")
    assert _loudness(1.0) == pytest.approx(-0.691)
