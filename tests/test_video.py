"""Video clips as sources, clip sequences, loudness matching, `check`, `new` and video
delivery: real clips made by ffmpeg, decoded by PyAV, checked with ffprobe."""
import json
import math
import tomllib

import numpy as np
import pytest
import soundfile as sf

from clips import (decode_audio, ffprobe, make_clip, need_ffmpeg, noise, packets, phrases,
                   sine, speech)
from engine.errors import LivemixError
from engine.session import Clip, Track, load_session
from engine.strip import Comp, Hpf, Strip
from engine.sources.files import ClipsSource, FileSource

SR = 48000


@pytest.fixture(autouse=True)
def _ffmpeg():
    need_ffmpeg()


def timeline(src) -> np.ndarray:
    return np.concatenate(list(src.chunks()))


def pitch(x, sr) -> float:
    """Frequency of the strongest partial (Hann window, 8x zero padding, parabolic peak)."""
    n = len(x)
    spec = np.abs(np.fft.rfft(x * np.hanning(n), 8 * n))
    k = int(np.argmax(spec))
    a, b, c = np.log(spec[k - 1:k + 2] + 1e-30)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / (8 * n)


def lufs(x, sr=SR) -> float:
    pyln = pytest.importorskip("pyloudnorm")
    return pyln.Meter(sr).integrated_loudness(np.asarray(x, np.float64))


# --- 1. decoding ------------------------------------------------------------------

@pytest.mark.parametrize("ext,codec,rate,channels", [
    (".mp4", "aac", 44100, 2), (".mov", "pcm16", 32000, 1), (".mkv", "opus", 48000, 2),
    (".webm", "opus", 48000, 2), (".mkv", "ac3", 48000, 6)])
def test_clip_audio_is_decoded_and_resampled(tmp_path, ext, codec, rate, channels):
    """A 1 kHz sine in each container and codec plays at 1 kHz at the session rate, as
    long as the clip (within one codec frame), on both channels (5.1 folded to stereo)."""
    a = sine(1000.0, 2.0, sr=rate, amp=0.3, channels=channels)
    if channels == 6:
        a[:, 2:] = 0.0                          # the sine on front left / right only
    clip = make_clip(tmp_path / f"clip{ext}", a, sr=rate, codec=codec)
    x = timeline(FileSource(Track(name="amb", file=clip), SR))
    assert abs(len(x) - 2 * SR) <= 1536        # AC-3's frame is the longest: 1536 samples
    mid = x[SR // 2:SR // 2 + SR]
    for ch in (0, 1):
        assert pitch(mid[:, ch], SR) == pytest.approx(1000.0, abs=0.2)
        assert np.sqrt(np.mean(mid[:, ch] ** 2)) > 0.1


def test_pcm_clip_decodes_to_its_exact_samples(tmp_path):
    a = noise(1.0, amp=0.2, seed=3)
    clip = make_clip(tmp_path / "pcm.mkv", a, codec="pcm")
    x = timeline(FileSource(Track(name="amb", file=clip), SR))
    np.testing.assert_array_equal(x, a.astype(np.float32))


def test_stream_picks_an_audio_stream(tmp_path, maker):
    clip = make_clip(tmp_path / "two.mkv", sine(440.0, 1.0), extra_audio=[sine(880.0, 1.0)],
                     codec="pcm")
    x = timeline(FileSource(Track(name="amb", file=clip, stream=1), SR))
    assert pitch(x[:, 0], SR) == pytest.approx(880.0, abs=0.2)
    path = maker.session([{"name": "amb", "video": "two.mkv", "stream": 2}])
    with pytest.raises(LivemixError) as e:
        load_session(path)
    assert "two.mkv" in str(e.value) and "stream = 2" in str(e.value)
    assert "2 audio streams" in str(e.value) and "1: pcm_f32le" in str(e.value)


@pytest.mark.parametrize("kind,expect", [
    ("noaudio", "has no audio stream"), ("garbage", "not a readable video"),
    ("truncated", "not a readable video"), ("codec", "cannot be decoded")])
def test_unusable_clips_are_one_line_naming_the_clip(tmp_path, maker, cli, kind, expect):
    good = make_clip(tmp_path / "good.mp4", sine(440.0, 1.0))
    if kind == "noaudio":
        make_clip(tmp_path / "bad.mp4", None, seconds=1.0)
    elif kind == "codec":         # an audio codec no decoder knows: Opus renamed in the header
        make_clip(tmp_path / "bad.mkv", sine(440.0, 1.0), codec="opus")
        data = (tmp_path / "bad.mkv").read_bytes()
        assert data.count(b"A_OPUS") == 1
        (tmp_path / "bad.mp4").write_bytes(data.replace(b"A_OPUS", b"A_ZZZZ"))
    elif kind == "garbage":
        (tmp_path / "bad.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    else:
        data = good.read_bytes()
        (tmp_path / "bad.mp4").write_bytes(data[:len(data) // 3])
    path = maker.session([{"name": "amb", "video": "bad.mp4"}])
    p = cli("render", path, "-o", tmp_path / "out.wav", check=False)
    assert p.returncode != 0
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "bad.mp4" in err[0] and expect in err[0], p.stderr
    assert "tracks[1].video" in err[0]


# --- clip sequences ---------------------------------------------------------------

def _fade_ref(a, b, cut, fade):
    """float64 reference of two clips cut at frame ``cut`` with equal-power fades."""
    stop_a = min(len(a), cut + fade)
    total = cut + len(b)
    out = np.zeros((total, a.shape[1]))
    t = np.arange(stop_a)
    wa = np.ones(stop_a)
    wa[t < fade] *= np.sin(0.5 * np.pi * (t[t < fade] + 0.5) / fade)
    tail = stop_a - t <= fade
    wa[tail] *= np.sin(0.5 * np.pi * (stop_a - t[tail] - 0.5) / fade)
    out[:stop_a] += a[:stop_a] * wa[:, None]
    u = np.arange(len(b))
    wb = np.ones(len(b))
    wb[u < fade] *= np.sin(0.5 * np.pi * (u[u < fade] + 0.5) / fade)
    end = len(b) - u <= fade
    wb[end] *= np.sin(0.5 * np.pi * (len(b) - u[end] - 0.5) / fade)
    out[cut:] += b * wb[:, None]
    return out


def test_clip_sequence_crossfades_like_the_reference(tmp_path):
    """Two PCM clips (exact samples): the sequence equals the float64 reference, and the
    largest sample step at the cut stays within the signals' own (a hard cut jumps 0.5)."""
    a = sine(440.0, 3.0, amp=0.5, phase=np.pi / 2)     # at the cut, a is at +0.5
    b = sine(660.0, 2.0, amp=0.4)
    make_clip(tmp_path / "a.mkv", a, codec="pcm")
    make_clip(tmp_path / "b.mkv", b, codec="pcm")
    track = Track(name="amb", file=None, clips=(Clip(tmp_path / "a.mkv", 0.0),
                                                Clip(tmp_path / "b.mkv", 1.5)))
    src = ClipsSource(track, SR)
    x = timeline(src)
    cut, fade = round(1.5 * SR), round(0.010 * SR)
    ref = _fade_ref(a, b, cut, fade)
    assert len(x) == len(ref) == cut + len(b)
    assert np.max(np.abs(x - ref)) < 1e-6
    own = max(np.max(np.abs(np.diff(a[:, 0]))), np.max(np.abs(np.diff(b[:, 0]))))
    step = np.max(np.abs(np.diff(x[cut - 200:cut + fade + 200, 0])))
    # equal power: |a' cos + b' sin| <= sqrt(a'^2 + b'^2) <= sqrt(2) * max, plus the fade's own slope
    assert step <= math.sqrt(2) * own + 0.5 * (np.pi / 2) / fade
    hard = np.concatenate([a[:cut, 0], b[:, 0]])
    assert np.max(np.abs(np.diff(hard[cut - 200:cut + 200]))) > 10 * own   # what it prevents
    assert src.spans_s == [(0.0, 1.5 + fade / SR), (1.5, 3.5)]


def test_clip_sequence_renders_without_clicks(tmp_path, maker, cli):
    """AAC clips of noise in a session: around each cut the rendered track's steps are no
    larger than the noise's own."""
    for k, seed in enumerate((1, 2, 3)):
        make_clip(tmp_path / f"s{k}.mp4", noise(2.0, amp=0.05, seed=seed))
    path = maker.session([{"name": "amb", "clips": [{"video": f"s{k}.mp4", "at_s": 1.6 * k}
                                                    for k in range(3)]}])
    cli("render", path, "-o", tmp_path / "out.wav", "--subtype", "FLOAT")
    x, sr = sf.read(tmp_path / "out.wav")
    assert len(x) == round(3.2 * sr) + 2 * sr
    own = np.percentile(np.abs(np.diff(x[: sr, 0])), 99.99)
    for k in (1, 2):
        cut = round(1.6 * k * sr)
        assert np.max(np.abs(np.diff(x[cut - 500:cut + 1000, 0]))) <= 1.2 * own


def test_match_loudness_levels_each_clip(tmp_path):
    loud = make_clip(tmp_path / "loud.mp4", noise(3.0, amp=0.3, seed=4))
    quiet = make_clip(tmp_path / "quiet.mp4", noise(3.0, amp=0.01, seed=5))
    track = Track(name="amb", file=None, match_loudness=-30.0,
                  clips=(Clip(loud, 0.0), Clip(quiet, 3.0)))
    x = timeline(ClipsSource(track, SR))
    before = [lufs(noise(3.0, amp=0.3, seed=4)), lufs(noise(3.0, amp=0.01, seed=5))]
    assert before[0] - before[1] > 25                       # they did jump
    for a, b in ((0.05, 2.95), (3.05, 5.95)):
        assert lufs(x[round(a * SR):round(b * SR)]) == pytest.approx(-30.0, abs=0.5)
    one = timeline(FileSource(Track(name="amb", file=quiet, match_loudness=-20.0), SR))
    assert lufs(one[round(0.05 * SR):]) == pytest.approx(-20.0, abs=0.5)


@pytest.mark.parametrize("clips,problem", [
    ([{"video": "a.mp4", "at_s": 1.0}, {"video": "a.mp4", "at_s": 0.5}], "time order"),
    ([{"video": "a.mp4"}, {"video": "a.mp4"}], "at_s: missing"),
    ([{"video": "a.mp4", "gain": 1}], "unknown key"),
    ([], "give a list of clips")])
def test_clip_list_errors_name_the_key(tmp_path, maker, clips, problem):
    make_clip(tmp_path / "a.mp4", sine(440.0, 1.0))
    path = maker.session([{"name": "amb", "clips": clips}])
    with pytest.raises(LivemixError) as e:
        load_session(path)
    assert "tracks[1].clips" in str(e.value) and problem in str(e.value)


# --- 2. check ---------------------------------------------------------------------

def test_check_verdicts_on_planted_problems(tmp_path, cli):
    bed = noise(4.0, amp=0.02, seed=6)                  # about -31 LUFS: a clean bed
    burst = bed.copy()
    burst[2 * SR:round(2.3 * SR)] *= 20.0               # +26 dB for 0.3 s at 2.0 s
    clipped = bed.copy()
    clipped[SR:SR + 2400] = np.clip(sine(200.0, 0.05, amp=3.0), -1, 1)
    silent = bed.copy()
    silent[round(0.5 * SR):round(3.5 * SR)] = 0.0
    make_clip(tmp_path / "clean.mp4", bed)
    make_clip(tmp_path / "loud.mp4", noise(4.0, amp=0.4, seed=7))
    make_clip(tmp_path / "burst.mp4", burst)
    make_clip(tmp_path / "clipped.mkv", clipped, codec="pcm16")
    make_clip(tmp_path / "silent.mp4", silent)
    make_clip(tmp_path / "mute.mp4", None, seconds=2.0)
    names = ["clean.mp4", "loud.mp4", "burst.mp4", "clipped.mkv", "silent.mp4", "mute.mp4"]
    p = cli("check", *[tmp_path / n for n in names], "--json")
    assert p.returncode == 0                            # a report, whatever the verdicts
    out = {r["clip"].rsplit("/", 1)[-1]: r for r in json.loads(p.stdout)}
    for r in out.values():
        assert {"clip", "verdict", "reason", "integrated_lufs", "true_peak_dbtp",
                "problems"} <= set(r)
    assert out["clean.mp4"]["verdict"] == "keep"
    decoded, rate = decode_audio(tmp_path / "clean.mp4")      # what AAC left of the noise
    assert out["clean.mp4"]["integrated_lufs"] == pytest.approx(lufs(decoded, rate), abs=0.1)
    loud = out["loud.mp4"]
    assert loud["verdict"] == "lower" and "-14" in loud["reason"]
    assert loud["lower_db"] >= math.ceil(loud["integrated_lufs"] + 14.0)
    b = out["burst.mp4"]
    assert b["verdict"] == "replace" and "burst" in b["reason"]
    bursts = [q for q in b["problems"] if q["kind"] == "burst"]
    assert len(bursts) == 1 and bursts[0]["start_s"] == pytest.approx(2.0, abs=0.05)
    c = out["clipped.mkv"]
    assert c["verdict"] == "replace" and "clipping" in c["reason"]
    assert any(q["kind"] == "clipping" and abs(q["start_s"] - 1.0) < 0.05
               for q in c["problems"])
    s = out["silent.mp4"]
    assert s["verdict"] == "replace" and "silent" in s["reason"]
    assert any(q["kind"] == "silence" for q in s["problems"])
    assert out["mute.mp4"]["verdict"] == "replace"
    assert "no audio" in out["mute.mp4"]["reason"]
    # the same as a table, one row per clip
    p = cli("check", *[tmp_path / n for n in names])
    rows = [ln for ln in p.stdout.splitlines() if ln.split() and ln.split()[0] in names]
    assert [ln.split()[1] for ln in rows] == ["keep", "lower", "replace", "replace",
                                             "replace", "replace"]


def test_check_error_is_non_zero_but_reports_the_rest(tmp_path, cli):
    make_clip(tmp_path / "ok.mp4", noise(2.0, amp=0.02))
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all" * 100)
    p = cli("check", tmp_path / "ok.mp4", tmp_path / "broken.mp4", check=False)
    assert p.returncode != 0
    assert "broken.mp4" in p.stderr and "not a readable video" in p.stderr
    assert "Traceback" not in p.stderr
    assert any(ln.startswith("ok.mp4") and " keep " in ln for ln in p.stdout.splitlines())


PHRASES = (1.6, 1.2, 1.6, 1.2, 1.6)      # speech, gap, speech, gap, speech (s)


def voice_clip(path, floor_dbfs=None, voice_db=-20.0, swing_db=0.0, seed=21):
    """A clip of speech in three phrases (``voice_db`` dBFS RMS) with 1.2 s gaps. The gaps
    hold digital silence (``floor_dbfs`` None), or the whole clip lies over seeded white
    noise at ``floor_dbfs`` dBFS RMS per channel, ``swing_db`` louder in its second half.
    Returns (path, the noise, the gap mask)."""
    x, gaps = phrases(PHRASES, rms_db=voice_db, seed=seed)
    hiss = np.zeros_like(x)
    if floor_dbfs is not None:
        hiss = noise(len(x) / SR, amp=10 ** (floor_dbfs / 20), seed=seed + 100)
        hiss[len(x) // 2:] *= 10 ** (swing_db / 20)
    return make_clip(path, x + hiss), hiss, gaps


def test_check_denoise_wants_a_steady_floor_above_minus_60_in_the_gaps(tmp_path, cli):
    from engine.check import STEADY_LU
    _, hiss, gaps = voice_clip(tmp_path / "hiss.mp4", -50.0)
    voice_clip(tmp_path / "silent_gaps.mp4")
    voice_clip(tmp_path / "faint.mp4", -75.0)
    voice_clip(tmp_path / "swinging.mp4", -56.0, swing_db=12.0)      # -56 then -44 dBFS
    voice_clip(tmp_path / "loud.mp4", -44.0, voice_db=-14.0)         # over the -14 target
    names = ["hiss.mp4", "silent_gaps.mp4", "faint.mp4", "swinging.mp4", "loud.mp4"]
    p = cli("check", *[tmp_path / n for n in names], "--json")
    out = {r["clip"].rsplit("/", 1)[-1]: r for r in json.loads(p.stdout)}
    h = out["hiss.mp4"]
    assert h["verdict"] == "denoise" and h["lower_db"] == 0.0
    assert "steady noise floor" in h["reason"] and "denoise it" in h["reason"]
    assert not h["problems"]                                # nothing else wrong with it
    nf = h["noise_floor"]
    # the floor it reads is the loudness of the noise in the gaps, as decoded (AAC takes
    # about 1 LU off -50 dBFS of white noise: what the pure noise measures is the bound)
    decoded, rate = decode_audio(tmp_path / "hiss.mp4")
    inner = np.concatenate([decoded[round(a * rate):round(b * rate)]
                            for a, b in ((1.8, 2.7), (4.6, 5.5))])
    assert nf["lufs"] == pytest.approx(lufs(inner, rate), abs=0.3)
    assert lufs(hiss[gaps]) - 2.0 < nf["lufs"] < lufs(hiss[gaps]) + 0.3
    assert nf["spread_lu"] <= STEADY_LU and nf["steady"]
    assert 1.5 <= nf["noise_s"] <= 2.4                      # of the two 1.2 s gaps
    assert nf["content_lufs"] - nf["lufs"] > 20
    s = out["silent_gaps.mp4"]                              # the same voice, clean gaps
    assert s["verdict"] == "keep" and s["noise_floor"]["lufs"] is None
    assert [q["kind"] for q in s["problems"]] == ["silence", "silence"]
    f = out["faint.mp4"]                                    # a floor under -60 LUFS
    assert f["verdict"] == "keep" and f["noise_floor"]["lufs"] < -60.0
    assert f["noise_floor"]["steady"]                       # steady, but not heard
    w = out["swinging.mp4"]                                 # heard, but not steady
    assert w["verdict"] == "keep" and w["noise_floor"]["lufs"] > -60.0
    assert w["noise_floor"]["spread_lu"] > 2 * STEADY_LU and not w["noise_floor"]["steady"]
    loud = out["loud.mp4"]                                  # lower comes first ...
    assert loud["verdict"] == "lower" and loud["lower_db"] > 0
    assert "steady noise floor" in loud["reason"]           # ... and names the floor too
    p = cli("check", *[tmp_path / n for n in names])
    rows = [ln for ln in p.stdout.splitlines() if ln.split() and ln.split()[0] in names]
    assert [ln.split()[1] for ln in rows] == ["denoise", "keep", "keep", "keep", "lower"]


def test_a_steady_ambience_without_gaps_is_no_noise_floor(tmp_path):
    """Rain or room tone that never drops is the sound itself: no gaps, no denoise; and
    artifacts come before the floor."""
    from engine.check import check_clip
    r = check_clip(make_clip(tmp_path / "rain.mp4", noise(6.0, amp=0.02, seed=31)))
    assert r["verdict"] == "keep" and r["noise_floor"] is None
    clip, _, _ = voice_clip(tmp_path / "hiss.mp4", -50.0)
    assert check_clip(clip)["verdict"] == "denoise"
    a, _ = phrases(PHRASES, seed=21)
    a = a + noise(len(a) / SR, amp=10 ** (-50 / 20), seed=121)
    a[round(2.0 * SR):round(2.0 * SR) + 4800] = 0.0            # a 100 ms dropout in a gap
    r = check_clip(make_clip(tmp_path / "dropout.mkv", a, codec="pcm"))
    assert r["verdict"] == "replace" and "dropout" in r["reason"]
    assert r["noise_floor"] is not None


# --- 3. new -------------------------------------------------------------------------

def test_new_writes_a_hybrid_session_that_renders(tmp_path, cli):
    make_clip(tmp_path / "shot1.mp4", noise(2.0, amp=0.05, seed=8))
    make_clip(tmp_path / "shot2.mp4", noise(2.0, amp=0.01, seed=9))
    sf.write(tmp_path / "vo.wav", sine(300.0, 3.0, amp=0.3)[:, 0], SR)
    sf.write(tmp_path / "bed.wav", sine(200.0, 5.0, amp=0.2), SR)
    out = tmp_path / "hybrid.toml"
    args = ["new", "--video", tmp_path / "shot1.mp4", "--video", tmp_path / "shot2.mp4",
            "--voice", tmp_path / "vo.wav", "--music", tmp_path / "bed.wav",
            "--preset", "ebu-r128", "-o", out]
    cli(*args)
    s = load_session(out)
    amb, voice, music = s.tracks
    assert (amb.name, voice.name, music.name) == ("ambience", "voice", "music")
    assert amb.gain_db == -9.0 and amb.match_loudness == -23.0
    assert [c.at_s for c in amb.clips] == [0.0, 2.0]
    assert music.gain_db == -6.0 and voice.file == tmp_path / "vo.wav"
    assert voice.strip == VOICE_STRIP and music.strip.empty
    assert amb.strip.empty                              # steady beds, no gaps: no denoise
    (rule,) = s.ducking
    assert rule.key == ("voice",) and set(rule.targets) == {"music", "ambience"}
    assert (rule.depth_db, rule.attack_ms, rule.hold_ms, rule.release_ms) == \
        (-10.0, 15.0, 200.0, 500.0)
    assert s.master.ceiling_mode == "true-peak" and s.master.target.name == "ebu-r128"
    assert s.master.ceiling_db == -1.0
    assert s.output.video == (tmp_path / "shot1.mp4", tmp_path / "shot2.mp4")
    p = cli(*args, check=False)                         # never overwrites without --force
    assert p.returncode != 0 and "--force" in p.stderr and "hybrid.toml" in p.stderr
    cli(*args, "--force")
    p = cli("render", out, "-o", tmp_path / "final.mp4")
    assert "cut at the video's end" in p.stdout        # the 5 s bed is longer than 4 s
    got = packets(tmp_path / "final.mp4")
    assert [b for _, b in got] == [b for _, b in packets(tmp_path / "shot1.mp4")] + \
        [b for _, b in packets(tmp_path / "shot2.mp4")]


VOICE_STRIP = Strip(denoise=True, hpf=Hpf(freq_hz=80.0, slope=12),
                    comp=Comp(threshold_db=-18.0, ratio=3.0, knee_db=6.0, attack_ms=5.0,
                              release_ms=80.0))


def _tracks(path) -> dict:
    return {t["name"]: t for t in tomllib.loads(path.read_text())["tracks"]}


def _level(x, a, b, rate=SR) -> float:
    return lufs(x[round(a * rate):round(b * rate)], rate)


def test_new_denoises_the_voice_and_a_clip_with_a_noise_floor(tmp_path, cli):
    """The voice strip as written, denoise on the ambience for the clip check calls
    ``denoise`` (not for the clean one), and a render in which the hiss between the
    clip's phrases is gone but its phrases are not."""
    voice_clip(tmp_path / "hiss.mp4", -50.0)
    make_clip(tmp_path / "bed.mp4", noise(2.0, amp=0.02, seed=32))
    sf.write(tmp_path / "vo.wav", speech(1.0, seed=7), SR)      # over before the 2nd gap
    out = tmp_path / "s.toml"
    p = cli("new", "--video", tmp_path / "hiss.mp4", "--video", tmp_path / "bed.mp4",
            "--voice", tmp_path / "vo.wav", "-o", out)
    assert "hiss.mp4: a steady noise floor" in p.stderr and "bed.mp4" not in p.stderr
    t = _tracks(out)
    v = t["voice"]
    assert v["denoise"] is True
    assert v["hpf"] == {"freq_hz": 80.0, "slope": 12}
    assert v["comp"] == {"threshold_db": -18.0, "ratio": 3.0, "knee_db": 6.0,
                         "attack_ms": 5.0, "release_ms": 80.0}
    assert t["ambience"]["denoise"] is True
    (line,) = [ln for ln in out.read_text().splitlines() if ln.startswith("denoise = true   #")
               and "hiss.mp4" in ln]
    assert "bed.mp4" not in line and "whole track" in line
    s = load_session(out)
    amb, voice = s.tracks
    assert voice.strip == VOICE_STRIP
    assert amb.strip.denoise and amb.strip.hpf is None and amb.strip.comp is None
    cli("render", out, "-o", tmp_path / "mix.wav")
    mix, rate = sf.read(tmp_path / "mix.wav")
    assert rate == SR and len(mix) == round(9.2 * SR) and np.isfinite(mix).all()
    clip, _ = decode_audio(tmp_path / "hiss.mp4")
    # the second gap (4.4 .. 5.6 s, the voice long over) against the last phrase: the
    # clip's own hiss sits 28 LU under its phrases; through RNNoise, more than 40
    before = _level(clip, 4.6, 5.5) - _level(clip, 5.8, 7.0)
    after = _level(mix, 4.6, 5.5) - _level(mix, 5.8, 7.0)
    assert -32 < before < -24 and after < -40              # (-inf: under pyloudnorm's gate)
    # the phrase is still there, levelled with the clip (match_loudness -14, fader -9)
    expect = _level(clip, 5.8, 7.0) + (-14.0 - lufs(clip)) - 9.0
    assert _level(mix, 5.8, 7.0) == pytest.approx(expect, abs=2.0)


def test_new_without_the_denoiser_leaves_denoise_out_and_says_why(tmp_path, cli):
    """With no RNNoise library the session still loads: denoise is a comment giving the
    reason, the rest of the strip stays."""
    voice_clip(tmp_path / "hiss.mp4", -50.0)
    sf.write(tmp_path / "vo.wav", speech(1.0, seed=7), SR)
    out = tmp_path / "s.toml"
    # the kernels' cached code calls RNNoise by its symbol, which this process binds to
    # the stub: the shared cache serves it (no compile)
    env = {"LIVEMIX_RNNOISE_LIB": "/nonexistent/librnnoise.so"}
    p = cli("new", "--video", tmp_path / "hiss.mp4", "--voice", tmp_path / "vo.wav", "-o",
            out, env=env)
    assert "denoise is left out" in p.stderr and "/nonexistent/librnnoise.so" in p.stderr
    t = _tracks(out)
    assert "denoise" not in t["voice"] and "denoise" not in t["ambience"]
    assert t["voice"]["hpf"] == {"freq_hz": 80.0, "slope": 12}
    assert t["voice"]["comp"]["ratio"] == 3.0
    left = [ln for ln in out.read_text().splitlines() if ln.startswith("# denoise = true")]
    assert len(left) == 2 and all("not available here" in ln for ln in left)
    assert "hiss.mp4" in left[0]                            # the ambience's, for that clip
    s = load_session(out)
    assert not any(tr.strip.denoise for tr in s.tracks)
    assert s.tracks[1].strip.comp == VOICE_STRIP.comp


def test_new_errors_are_one_line(tmp_path, cli):
    make_clip(tmp_path / "a.mp4", noise(1.0))
    p = cli("new", "--video", tmp_path / "a.mp4", "--voice", tmp_path / "nope.wav", "-o",
            tmp_path / "s.toml", check=False)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1
    assert "nope.wav" in p.stderr and not (tmp_path / "s.toml").exists()


# --- 4. delivery ----------------------------------------------------------------------

def _session(maker, clip, extra_tracks=(), keep_native=False, **track):
    tracks = [{"name": "amb", "video": clip, **track}, *extra_tracks]
    return maker.session(tracks, output={"video": clip, "keep_native": keep_native})


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov", ".webm"])
def test_render_to_video_copies_the_picture_and_matches_the_mix(tmp_path, maker, cli, ext):
    clip = make_clip(tmp_path / f"clip{ext}", noise(3.0, amp=0.05, seed=10),
                     codec="opus" if ext == ".webm" else "aac")
    sf.write(tmp_path / "vo.wav", sine(300.0, 2.0, amp=0.3), SR)
    path = _session(maker, clip.name, [{"name": "vo", "file": "vo.wav", "offset_s": 0.5}],
                    keep_native=True)
    final = tmp_path / f"final{ext}"
    p = cli("render", path, "-o", final)
    assert "video copied" in p.stdout
    # as long as the video (Matroska states lengths in whole milliseconds)
    assert "exactly as long" in p.stdout or "(0.001 s unused)" in p.stdout
    # the picture: the same packets, bit for bit, at the same times
    assert packets(final) == packets(clip)
    # ffprobe: video, the mix (default), the native audio (not default); lengths agree
    info = ffprobe(final)
    kinds = [(s["codec_type"], s["codec_name"], s["disposition"]["default"])
             for s in info["streams"]]
    mix_codec = "opus" if ext in (".mkv", ".webm") else "aac"
    native_codec = "opus" if ext == ".webm" else "aac"
    assert kinds[0][0] == "video"
    assert kinds[1:] == [("audio", mix_codec, 1), ("audio", native_codec, 0)]
    mix, rate = decode_audio(final, 0)
    assert abs(len(mix) / rate - 3.0) <= 1024 / rate + 1e-6
    if ext != ".mkv" and ext != ".webm":        # Matroska keeps no per-stream duration
        durs = [float(s["duration"]) for s in info["streams"]]
        assert max(durs) - min(durs) <= 1024 / 48000 + 1e-6
    # the mix decodes to the offline render within the codec's tolerance, in sync
    cli("render", path, "-o", tmp_path / "ref.wav", "--duration", "3.0", "--subtype", "FLOAT")
    ref, _ = sf.read(tmp_path / "ref.wav", dtype="float32")
    n = min(len(ref), len(mix)) - 2048
    assert lufs(mix[:n], rate) == pytest.approx(lufs(ref[:n]), abs=0.5)
    a, b = ref[1000:n, 0], mix[1000:n, 0]
    lag = np.argmax(np.correlate(b[2000:12000], a[2000 - 50:12000 + 50], "valid")) - 50
    assert lag == 0
    assert np.corrcoef(a, b)[0, 1] > 0.95
    # the native audio is the clip's own
    native, _ = decode_audio(final, 1)
    own, _ = decode_audio(clip, 0)
    assert lufs(native[:n], rate) == pytest.approx(lufs(own[:n], rate), abs=0.1)


def test_render_length_follows_the_video(tmp_path, maker, cli):
    make_clip(tmp_path / "clip.mp4", noise(2.0, amp=0.05), seconds=2.0)
    sf.write(tmp_path / "long.wav", sine(300.0, 3.5, amp=0.3), SR)
    sf.write(tmp_path / "short.wav", sine(300.0, 1.0, amp=0.3), SR)
    cut = maker.session([{"name": "m", "file": "long.wav"}], output={"video": "clip.mp4"},
                        name="cut.toml")
    p = cli("render", cut, "-o", tmp_path / "cut.mp4")
    assert "cut at the video's end (1.500 s unused)" in p.stdout
    pad = maker.session([{"name": "m", "file": "short.wav"}], output={"video": "clip.mp4"},
                        name="pad.toml")
    p = cli("render", pad, "-o", tmp_path / "pad.mp4")
    assert "padded with 1.000 s of silence" in p.stdout
    x, rate = decode_audio(tmp_path / "pad.mp4")
    assert abs(len(x) - 2 * rate) <= 1024
    assert np.max(np.abs(x[round(1.1 * rate):])) < 1e-3      # the padding is silence
    assert len(ffprobe(tmp_path / "pad.mp4")["streams"]) == 2  # no native stream asked for


def test_render_to_video_errors(tmp_path, maker, cli):
    make_clip(tmp_path / "small.mp4", noise(1.0), size="160x120")
    make_clip(tmp_path / "big.mp4", noise(1.0), size="320x240")
    sf.write(tmp_path / "m.wav", sine(300.0, 1.0), SR)
    plain = maker.session([{"name": "m", "file": "m.wav"}], name="plain.toml")
    p = cli("render", plain, "-o", tmp_path / "x.mp4", check=False)
    assert p.returncode != 0 and "[output] video" in p.stderr
    mixed = maker.session([{"name": "m", "file": "m.wav"}],
                          output={"video": ["small.mp4", "big.mp4"]}, name="mixed.toml")
    p = cli("render", mixed, "-o", tmp_path / "y.mp4", check=False)
    assert p.returncode != 0 and "big.mp4" in p.stderr and "joined" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = cli("render", plain, "-o", tmp_path / "x.mp4", "--duration", "1", check=False)
    assert p.returncode != 0


def test_mux_places_a_take_at_its_session_frame(tmp_path):
    from engine.video import FileMix, mux
    clip = make_clip(tmp_path / "clip.mp4", noise(2.0, amp=0.05), seconds=2.0)
    sf.write(tmp_path / "take.wav", sine(440.0, 1.0, amp=0.5), SR, subtype="FLOAT")
    r = mux([clip], FileMix([tmp_path / "take.wav"]), tmp_path / "t.mp4", offset_frames=SR // 2)
    assert "silence for the first 0.500 s" in r.fit() and "padded with 0.500 s" in r.fit()
    x, rate = decode_audio(tmp_path / "t.mp4")
    rms = [np.sqrt(np.mean(x[round(a * rate):round(b * rate), 0] ** 2))
           for a, b in ((0.0, 0.45), (0.55, 1.45), (1.55, 2.0))]
    assert rms[0] < 1e-3 and rms[1] == pytest.approx(0.5 / math.sqrt(2), rel=0.05)
    assert rms[2] < 1e-3


def test_live_take_is_delivered_as_video(tmp_path, maker, jack, cli):
    """`livemix run` through JACK plays a clip's audio live; the take comes out as a video:
    the clip's picture, the take's audio at its session frame, padded to the video."""
    clip = make_clip(tmp_path / "clip.mp4", noise(4.0, amp=0.05, seed=11), seconds=4.0)
    make_clip(tmp_path / "s1.webm", noise(1.0, amp=0.02, seed=13), codec="opus")
    make_clip(tmp_path / "s2.mkv", sine(500.0, 2.0, amp=0.1), codec="pcm16")
    sf.write(tmp_path / "vo.wav", sine(300.0, 4.0, amp=0.3), SR)
    path = maker.session([{"name": "amb", "video": "clip.mp4"},
                          {"name": "seq", "match_loudness": -30.0,
                           "clips": [{"video": "s1.webm", "at_s": 0.0},
                                     {"video": "s2.mkv", "at_s": 0.8}]},
                          {"name": "vo", "file": "vo.wav"}], output={"video": "clip.mp4"})
    p = cli("run", path, "--duration", "2", "--ui", "none", "--backend", "portaudio",
            "--takes-dir", tmp_path / "takes")
    assert "take video:" in p.stdout, p.stdout
    (video,) = (tmp_path / "takes").glob("*.mp4")
    (wav,) = (tmp_path / "takes").glob("*.wav")
    side = json.loads(wav.with_suffix(".json").read_text())
    assert packets(video) == packets(clip)
    x, rate = decode_audio(video)
    assert abs(len(x) - 4 * rate) <= 1024
    take, _ = sf.read(wav, dtype="float32")
    start = side["start_frame"]
    assert 1.5 * rate < len(take) < 2.5 * rate
    seg = x[start:start + len(take)]
    n = min(len(seg), len(take)) - 1024
    assert np.corrcoef(seg[1000:n, 0], take[1000:n, 0])[0, 1] > 0.95     # in place, in sync
    assert np.max(np.abs(x[start + len(take) + 2048:])) < 1e-3            # then silence
    # the same job by hand, into another container
    p = cli("video", wav.with_suffix(".json"), "-o", tmp_path / "again.mkv")
    assert "again.mkv: video copied" in p.stdout
    assert packets(tmp_path / "again.mkv") == packets(clip)
    p = cli("video", tmp_path / "nope.json", check=False)
    assert p.returncode != 0 and "nope.json" in p.stderr and "Traceback" not in p.stderr


def test_analyze_takes_a_clip(tmp_path, cli):
    clip = make_clip(tmp_path / "c.mp4", noise(2.0, amp=0.05, seed=12))
    r = json.loads(cli("analyze", clip, "--json").stdout)
    decoded, rate = decode_audio(clip)
    assert r["file"] == str(clip) and r["samplerate"] == rate
    assert r["integrated_lufs"] == pytest.approx(lufs(decoded, rate), abs=0.1)


def test_video_render_guards(tmp_path, maker, cli):
    """Never overwrite a source; the real reason when a container cannot hold the
    picture; keep_native refuses what it would drop; no audio-only options."""
    make_clip(tmp_path / "a.mp4", noise(1.0, amp=0.05), size="160x120")
    make_clip(tmp_path / "b44.mp4", noise(1.0, amp=0.05, sr=44100), sr=44100, size="160x120")
    make_clip(tmp_path / "mute.mp4", None, seconds=1.0, size="160x120")
    s = maker.session([{"name": "amb", "video": "a.mp4"}], output={"video": "a.mp4"})
    before = (tmp_path / "a.mp4").read_bytes()
    for out, words in ((tmp_path / "a.mp4", "is one of this render's inputs"),
                       (tmp_path / "x.webm", "WEBM cannot hold this video (h264)")):
        p = cli("render", s, "-o", out, check=False)
        assert p.returncode != 0 and words in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    assert (tmp_path / "a.mp4").read_bytes() == before
    assert not list(tmp_path.glob(".*.part"))
    p = cli("render", s, "-o", tmp_path / "y.mp4", "--subtype", "FLOAT", check=False)
    assert p.returncode != 0 and "--subtype" in p.stderr
    for clips, words in ((["a.mp4", "mute.mp4"], "mute.mp4: has no audio stream to keep"),
                         (["a.mp4", "b44.mp4"], "44100 Hz")):
        s = maker.session([{"name": "amb", "video": "a.mp4"}],
                          output={"video": clips, "keep_native": True}, name="k.toml")
        p = cli("render", s, "-o", tmp_path / "k.mp4", check=False)
        assert p.returncode != 0 and words in p.stderr, p.stderr


def test_take_parts_play_back_to_back(tmp_path):
    """A take recorded in several files: the video gets them without gaps."""
    from engine.video import FileMix, mux
    clip = make_clip(tmp_path / "clip.mp4", noise(2.0, amp=0.05), seconds=2.0)
    x = np.zeros((SR, 2), np.float32)
    x[round(0.3 * SR)] = 0.9                        # an impulse at 0.3 s of the take
    sf.write(tmp_path / "p1.wav", x[:10000], SR, subtype="FLOAT")
    sf.write(tmp_path / "p2.wav", x[10000:], SR, subtype="FLOAT")
    mix = FileMix([tmp_path / "p1.wav", tmp_path / "p2.wav"])
    r = mux([clip], mix, tmp_path / "t.mp4")
    mix.close()
    assert r.mix_s == pytest.approx(1.0)
    y, rate = decode_audio(tmp_path / "t.mp4")
    assert np.argmax(np.abs(y[:, 0])) == pytest.approx(0.3 * rate, abs=2)


def test_truncated_clip_is_reported(tmp_path):
    clip = make_clip(tmp_path / "full.mkv", noise(3.0, amp=0.05), codec="pcm16")
    data = clip.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[:len(data) // 2])
    src = FileSource(Track(name="amb", file=tmp_path / "cut.mkv"), SR)
    x = timeline(src)
    assert len(x) < 2 * SR
    assert any("truncated" in n and "cut.mkv" in n for n in src.notices)
    assert src.length_frames == len(x)


def test_clip_measurements_are_remembered(tmp_path, monkeypatch):
    from engine.sources import media
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    clip = make_clip(tmp_path / "c.mp4", noise(1.0, amp=0.05, seed=14))
    first = media.measure(clip)
    calls = []
    real = media._measure
    monkeypatch.setattr(media, "_measure", lambda *a: calls.append(a) or real(*a))
    assert media.measure(clip) == first and calls == []          # remembered
    make_clip(tmp_path / "c.mp4", noise(1.5, amp=0.2, seed=15))  # the clip changed
    again = media.measure(clip)
    assert len(calls) == 1 and again[0] > first[0] + 10 and again[1] > first[1]
    (tmp_path / "cache" / "livemix" / "measured.json").write_text("{not json")
    assert media.measure(clip) == again                          # a broken cache is ignored


def test_a_looping_clip_repeats_sample_exact(tmp_path):
    a = noise(0.5, amp=0.2, seed=16)
    clip = make_clip(tmp_path / "loop.mkv", a, codec="pcm")
    src = FileSource(Track(name="amb", file=clip, loop=True), SR)
    assert src.length_frames is None
    x = np.concatenate([c for c, _ in zip(src.chunks(), range(3))])   # 3 chunks of 65536
    np.testing.assert_array_equal(x, np.tile(a.astype(np.float32), (len(x) // len(a) + 1, 1))
                                  [:len(x)])


@pytest.mark.parametrize("track,output,key,problem", [
    ({"file": "a.wav", "stream": 1}, None, "tracks[1].stream", "use it with video"),
    ({"input": [1], "match_loudness": -20.0}, None, "tracks[1].match_loudness", "live input"),
    ({"file": "a.wav", "crossfade_ms": 5.0}, None, "tracks[1].crossfade_ms", "clips"),
    ({"clips": [{"video": "c.mp4"}], "loop": True}, None, "tracks[1].loop", "not with clips"),
    ({"file": "a.wav", "video": "c.mp4"}, None, "tracks[1].video", "exactly one source"),
    ({"video": "c.mp4", "match_loudness": 5.0}, None, "tracks[1].match_loudness", "maximum"),
    ({"file": "a.wav"}, {"keep_native": True}, "output.keep_native", "needs video"),
    ({"file": "a.wav"}, {"video": "a.wav"}, "output.video", "has no video stream"),
    ({"file": "a.wav"}, {"video": "nope.mp4"}, "output.video", "no such file"),
    ({"file": "a.wav"}, {"video": "c.mp4", "codec": "aac"}, "output.codec", "unknown key")])
def test_video_session_errors_name_the_key(tmp_path, maker, track, output, key, problem):
    sf.write(tmp_path / "a.wav", sine(440.0, 0.5), SR)
    make_clip(tmp_path / "c.mp4", sine(440.0, 1.0))
    extra = {"output": output} if output else {}
    path = maker.session([{"name": "t", **track}], **extra)
    with pytest.raises(LivemixError) as e:
        load_session(path)
    assert key in str(e.value) and problem in str(e.value), str(e.value)
