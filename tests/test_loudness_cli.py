"""`livemix analyze` and `livemix normalize` on real files (issue 5, section 4).

Files are written with soundfile into tmp_path; the commands run through
``engine.cli.main`` (in this process, for speed) or the ``cli`` fixture (a
real subprocess, where the exit code and stderr of the process matter).
"""
import json
import math

import numpy as np
import pytest
import soundfile as sf

from engine.cli import main
from engine.loudness import analyze
from engine.targets import PRESETS

SR = 48000
TOL_S = 0.010                       # timestamps: +/- 10 ms


def noise(seconds, dbfs, seed=1, sr=SR, channels=2, frames=None):
    """Seeded white noise, RMS ``dbfs`` per channel, (frames, channels) float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr) if frames is None else frames
    return (rng.standard_normal((n, channels)) * 10 ** (dbfs / 20)).astype(np.float32)


def write(path, x, sr=SR, subtype="PCM_24"):
    sf.write(str(path), np.asarray(x, np.float32), sr, subtype=subtype)
    return path


def run(capsys, *args):
    """(exit code, stdout, stderr) of `livemix ARGS` run in this process."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def analyze_json(capsys, *args):
    code, out, err = run(capsys, "analyze", "--json", *args)
    assert code == 0, err
    return json.loads(out)


def found(problems, kind, start, end=None):
    """The problem of ``kind`` starting within TOL_S of ``start`` (and ending near ``end``)."""
    hits = [p for p in problems if p["kind"] == kind and abs(p["start_s"] - start) <= TOL_S]
    assert hits, f"no {kind} at {start} s in {json.dumps(problems, indent=1)}"
    if end is not None:
        assert abs(hits[0]["end_s"] - end) <= TOL_S, hits[0]
    return hits[0]


# --- analyze ----------------------------------------------------------------------

def test_analyze_json_on_a_known_sine(tmp_path, cli):
    """EBU Tech 3341 case 1: a 1 kHz stereo sine at -23 dBFS reads -23.0 LUFS."""
    t = np.arange(10 * SR) / SR
    x = 10 ** (-23 / 20) * np.sin(2 * np.pi * 1000 * t)
    path = write(tmp_path / "sine.wav", np.stack([x, x], 1))
    r = json.loads(cli("analyze", path, "--json").stdout)
    for key in ("integrated_lufs", "lra_lu", "true_peak_dbtp", "sample_peak_dbfs",
                "momentary_max_lufs", "short_term_max_lufs", "problems"):
        assert key in r
    assert r["integrated_lufs"] == pytest.approx(-23.0, abs=0.1)
    assert r["momentary_max_lufs"] == pytest.approx(-23.0, abs=0.1)
    assert r["short_term_max_lufs"] == pytest.approx(-23.0, abs=0.1)
    assert r["lra_lu"] == pytest.approx(0.0, abs=0.1)
    assert r["sample_peak_dbfs"] == pytest.approx(-23.0, abs=0.01)
    assert -23.4 <= r["true_peak_dbtp"] <= -22.8
    assert r["problems"] == []
    assert (r["samplerate"], r["channels"], r["duration_s"]) == (SR, 2, 10.0)


def test_analyze_true_peak_between_samples(tmp_path, capsys):
    """A 0 dBFS sine at fs/4 with 45 degree phase: samples at -3 dBFS, true peak 0 dBTP."""
    k = np.arange(5 * SR)
    x = np.sin(np.pi / 2 * k + np.pi / 4)
    path = write(tmp_path / "isp.wav", np.stack([x, x], 1), subtype="FLOAT")
    r = analyze_json(capsys, path)
    assert r["sample_peak_dbfs"] == pytest.approx(-3.01, abs=0.01)
    assert -0.4 <= r["true_peak_dbtp"] <= 0.2
    over = [p for p in r["problems"] if p["kind"] == "true_peak_over"]
    assert len(over) == 1 and over[0]["start_s"] <= TOL_S and over[0]["end_s"] >= 5 - TOL_S


def planted_file(path):
    """Continuous noise at -30 dBFS with a clip, a dropout, a burst and a true-peak over."""
    x = noise(30, -30, seed=3)
    x[int(3.0 * SR):int(3.0 * SR) + 5, 0] = 1.0                     # 5 samples at full scale
    x[int(7.25 * SR):int(7.30 * SR)] = 0.0                           # 50 ms dropout
    b = int(12.34 * SR)                                              # 300 ms sine burst
    t = np.arange(int(0.3 * SR)) / SR
    x[b:b + len(t)] += (0.5 * np.sin(2 * np.pi * 1000 * t))[:, None]
    o = int(20.0 * SR)                                               # 5 ms, true peak +1.6 dBTP
    k = np.arange(int(0.005 * SR))
    x[o:o + len(k), 1] = 1.2 * np.sin(np.pi / 2 * k + np.pi / 4)
    return write(path, x, subtype="FLOAT")


def test_analyze_finds_planted_problems(tmp_path, capsys):
    path = planted_file(tmp_path / "planted.wav")
    r = analyze_json(capsys, path, "--ceiling", "0")
    probs = r["problems"]
    clip = found(probs, "clipping", 3.0, 3.0 + 5 / SR)
    assert clip["detail"].startswith("5 samples")
    found(probs, "dropout", 7.25, 7.30)
    found(probs, "burst", 12.34, 12.64)
    found(probs, "true_peak_over", 20.0, 20.005)
    assert r["sample_peak_dbfs"] == pytest.approx(0.0, abs=0.01)
    kinds = {}
    for p in probs:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    # the clip's 1.0 samples are an over too; nothing else anywhere
    assert kinds == {"clipping": 1, "dropout": 1, "burst": 1, "true_peak_over": 2}, probs
    assert r["problem_counts"] == kinds


def test_analyze_human_report(tmp_path, capsys):
    path = planted_file(tmp_path / "planted.wav")
    code, out, err = run(capsys, "analyze", path)
    assert code == 0, err
    assert "integrated" in out and "LUFS" in out and "dBTP" in out
    assert "00:03.000" in out and "clipping" in out
    assert "00:07.250 - 00:07.300" in out and "dropout" in out
    assert "00:12.34" in out and "burst" in out


def test_analyze_dc_offset(tmp_path, capsys):
    x = noise(20, -30, seed=4)
    x[:, 1] += 0.01                                  # -40 dBFS on the right channel
    r = analyze_json(capsys, write(tmp_path / "dc.wav", x))
    dc = [p for p in r["problems"] if p["kind"] == "dc_offset"]
    assert len(dc) == 1 and dc[0]["start_s"] == 0.0 and dc[0]["end_s"] == 20.0
    assert "channel 2" in dc[0]["detail"] and "-40.0 dBFS" in dc[0]["detail"]
    assert [p["kind"] for p in r["problems"]] == ["dc_offset"]


def test_clean_file_has_no_problems(tmp_path, capsys):
    """Speech-like: noise in syllables with pauses over room tone, -1 dB headroom."""
    rng = np.random.default_rng(7)
    x = noise(20, -72, seed=8)
    pos = int(0.2 * SR)
    while pos < len(x) - SR:
        n = int(rng.uniform(0.1, 0.4) * SR)
        x[pos:pos + n] += noise(0, -20, seed=pos, frames=n)
        pos += n + int((rng.uniform(0.4, 1.0) if rng.random() < 0.2 else 0.05) * SR)
    r = analyze_json(capsys, write(tmp_path / "speech.wav", x))
    assert r["problems"] == [] and r["problem_counts"] == {}
    assert r["true_peak_dbtp"] < -1.0


def test_silence_reads_as_nulls(tmp_path, capsys):
    r = analyze_json(capsys, write(tmp_path / "silent.wav", np.zeros((SR, 2))))
    assert r["integrated_lufs"] is None and r["true_peak_dbtp"] is None
    assert r["momentary_max_lufs"] is None and r["problems"] == []


def test_mono_other_rates_and_progress(tmp_path, capsys):
    """A 61 s mono 8 kHz file: measured like its stereo twin (-3 LU), progress every 10 %."""
    x = noise(61, -20, seed=9, sr=8000, channels=1)
    path = write(tmp_path / "mono.flac", x, sr=8000, subtype="PCM_16")
    code, out, err = run(capsys, "analyze", "--json", path)
    assert code == 0
    mono = json.loads(out)
    assert mono["channels"] == 1 and mono["samplerate"] == 8000
    assert [line.split()[-2] for line in err.splitlines()] == [str(10 * k) for k in range(1, 11)]
    twin = analyze(write(tmp_path / "twin.wav", np.repeat(x, 2, axis=1), sr=8000))
    assert mono["integrated_lufs"] == pytest.approx(twin["integrated_lufs"] - 3.01, abs=0.02)


@pytest.mark.parametrize("quiet_db", [None, -45.0])
def test_integrated_matches_pyloudnorm(tmp_path, quiet_db):
    """Seeded noise (and noise with a quiet half the relative gate drops): within 0.1 LU."""
    pyln = pytest.importorskip("pyloudnorm")
    for sr in (48000, 44100):
        x = noise(20, -24, seed=11, sr=sr)
        if quiet_db is not None:
            x[len(x) // 2:] *= 10 ** ((quiet_db + 24) / 20)
        path = write(tmp_path / f"n{sr}.wav", x, sr=sr, subtype="FLOAT")
        ref = pyln.Meter(sr).integrated_loudness(sf.read(str(path))[0])
        assert analyze(path)["integrated_lufs"] == pytest.approx(ref, abs=0.1)


# --- errors -------------------------------------------------------------------------

def test_bad_files_are_one_line_errors(tmp_path, cli):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio\n")
    three = write(tmp_path / "three.wav", np.zeros((SR, 3)))
    for args in (("analyze", bad), ("analyze", tmp_path / "missing.wav"),
                 ("normalize", bad, "-o", tmp_path / "o.wav", "--preset", "web"),
                 ("analyze", three)):
        p = cli(*args, check=False)
        assert p.returncode == 2, p
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and str(args[1]) in lines[0], p.stderr
        assert lines[0].startswith("livemix: error:")
    assert not (tmp_path / "o.wav").exists()


# --- normalize ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def programme(tmp_path_factory):
    """10 s of seeded noise at about -26 LUFS with a short 3 kHz blip every second:
    true peak about -7 dBTP, so the web and podcast presets need the limiter and
    the broadcast ones do not. PCM_24."""
    path = tmp_path_factory.mktemp("norm") / "programme.wav"
    x = noise(10, -32, seed=21)
    t = np.arange(int(0.004 * SR)) / SR
    blip = 0.3 * np.sin(2 * np.pi * 3000 * t) * np.hanning(len(t))
    for k in range(1, 10):
        x[k * SR:k * SR + len(t)] += blip[:, None]
    return write(path, x)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_normalize_presets(programme, tmp_path, capsys, preset):
    target, ceiling = PRESETS[preset]
    out = tmp_path / f"{preset}.wav"
    before = analyze(programme)
    code, text, err = run(capsys, "normalize", programme, "-o", out, "--preset", preset,
                          "--json")
    assert code == 0, err
    r = json.loads(text)
    after = analyze(out)
    gained_tp = before["true_peak_dbtp"] + (target - before["integrated_lufs"])
    assert r["limiter"] == (gained_tp > ceiling) == (preset in ("web", "podcast"))
    assert after["true_peak_dbtp"] <= ceiling
    if r["limiter"]:
        assert r["limited_samples"] > 0
        assert target - 1.0 <= after["integrated_lufs"] <= target + 0.1
    else:
        assert after["integrated_lufs"] == pytest.approx(target, abs=0.1)
        assert after["true_peak_dbtp"] == pytest.approx(gained_tp, abs=0.05)
    assert r["after"]["integrated_lufs"] == pytest.approx(after["integrated_lufs"], abs=1e-3)
    src, dst = sf.info(str(programme)), sf.info(str(out))
    assert (dst.format, dst.subtype, dst.samplerate, dst.channels, dst.frames) == (
        src.format, src.subtype, src.samplerate, src.channels, src.frames)


def test_normalize_limiter_keeps_the_signal_aligned(tmp_path, capsys):
    """Limited output is the gained input, same length, not shifted by the latency."""
    x = noise(5, -32, seed=22)
    src = write(tmp_path / "in.wav", x, subtype="FLOAT")
    out = tmp_path / "out.wav"
    code, text, err = run(capsys, "normalize", src, "-o", out, "--target", "-5",
                          "--true-peak", "-1")
    assert code == 0, err
    assert "limiter" in text and "used" in text and "before" in text and "after" in text
    y = sf.read(str(out), dtype="float32")[0]
    assert y.shape == x.shape
    gain = 10 ** ((-5 - analyze(src)["integrated_lufs"]) / 20)
    c = np.corrcoef(x[:, 0] * gain, y[:, 0])[0, 1]
    assert c > 0.95
    assert analyze(out)["true_peak_dbtp"] <= -1.0


def test_normalize_refuses_silence_and_short_files(tmp_path, capsys):
    for name, x, words in (("silent.wav", np.zeros((5 * SR, 2)), "silent"),
                           ("short.wav", noise(0.3, -20), "too short")):
        src = write(tmp_path / name, x)
        out = tmp_path / f"out-{name}"
        code, _, err = run(capsys, "normalize", src, "-o", out, "--preset", "web")
        assert code == 2 and words in err and str(src) in err, err
        assert len(err.strip().splitlines()) == 1
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.wav", "silent.wav"]


def test_normalize_never_overwrites_without_asking(programme, tmp_path, capsys):
    src = write(tmp_path / "in.wav", sf.read(str(programme), dtype="float32")[0])
    data = src.read_bytes()
    code, _, err = run(capsys, "normalize", src, "-o", src, "--preset", "web")
    assert code == 2 and "--in-place" in err
    code, _, err = run(capsys, "normalize", src, "--preset", "web")
    assert code == 2 and "-o OUT" in err
    taken = write(tmp_path / "taken.wav", np.zeros((10, 2)))
    code, _, err = run(capsys, "normalize", src, "-o", taken, "--preset", "web")
    assert code == 2 and "already exists" in err and "--force" in err
    assert src.read_bytes() == data
    code, _, err = run(capsys, "normalize", src, "-o", taken, "--preset", "web", "--force")
    assert code == 0, err
    assert analyze(taken)["integrated_lufs"] <= -13.9
    assert src.read_bytes() == data


def test_normalize_in_place(tmp_path, capsys):
    src = write(tmp_path / "in.wav", noise(5, -32, seed=23))
    code, out, err = run(capsys, "normalize", src, "--in-place", "--target", "-20",
                         "--true-peak", "-2")
    assert code == 0, err
    assert analyze(src)["integrated_lufs"] == pytest.approx(-20.0, abs=0.1)
    assert [p.name for p in tmp_path.iterdir()] == ["in.wav"]      # no temp file left
    assert sf.info(str(src)).subtype == "PCM_24"


def test_normalize_option_errors(programme, tmp_path, capsys):
    out = tmp_path / "o.wav"
    for args, words in ((("--preset", "web", "--true-peak", "-2"), "--true-peak"),
                        (("--target", "-14", "--true-peak", "1"), "at most 0"),
                        (("--target", "5"), "--target")):
        code, _, err = run(capsys, "normalize", programme, "-o", out, *args)
        assert code == 2 and words in err, err
    with pytest.raises(SystemExit) as e:
        main(["normalize", str(programme), "-o", str(out)])       # neither --preset nor --target
    assert e.value.code == 2
    assert not out.exists()


def test_json_has_no_infinities(tmp_path, capsys):
    code, out, _ = run(capsys, "analyze", "--json", write(tmp_path / "z.wav", np.zeros((100, 1))))
    assert code == 0 and "Infinity" not in out and "NaN" not in out
    assert not math.isnan(json.loads(out)["lra_lu"])
