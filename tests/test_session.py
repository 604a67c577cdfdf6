"""Session validation: one test per error a user can make; each message names
the file, the line and the key."""
import math

import numpy as np
import pytest
import soundfile as sf

from engine.errors import SessionError
from engine.session import load_session


def base():
    return {
        "engine": {"samplerate": 48000, "blocksize": 128, "channels": 2},
        "tracks": [{"name": "voice", "file": "a.wav"}, {"name": "music", "file": "a.wav"}],
        "ducking": [{"key": ["voice"], "targets": ["music"]}],
        "master": {"gain_db": 0.0, "ceiling_db": -1.0},
    }


def write(maker, data):
    maker.audio("a.wav", np.zeros(100))
    return maker.session(**{"tracks": data.pop("tracks"), "ducking": data.pop("ducking", ()),
                            "master": data.pop("master", None),
                            "engine": data.pop("engine", None)}, **data)


def expect_error(maker, data, key, problem):
    path = write(maker, data)
    with pytest.raises(SessionError) as e:
        load_session(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    assert key in msg, msg
    assert problem in msg, msg
    assert "\n" not in msg
    return msg


def test_valid_session_loads(maker):
    s = load_session(write(maker, base()))
    assert [t.name for t in s.tracks] == ["voice", "music"]
    assert s.ducking[0].targets == ("music",) and s.master.ceiling_db == -1.0
    assert s.tracks[0].file == maker.root / "a.wav"   # relative to the session file


def test_minus_inf_fader_accepted_both_ways(maker):
    d = base()
    d["tracks"][0]["gain_db"] = -math.inf
    d["tracks"][1]["gain_db"] = "-inf"
    s = load_session(write(maker, d))
    assert s.tracks[0].gain_db == -math.inf and s.tracks[1].gain_db == -math.inf


def test_missing_audio_file(maker):
    d = base()
    d["tracks"][1]["file"] = "nope.wav"
    msg = expect_error(maker, d, "tracks[2].file", "no such file")
    assert "nope.wav" in msg


def test_unreadable_audio_file(maker):
    (maker.root / "text.wav").write_text("this is not audio")
    d = base()
    d["tracks"][0]["file"] = "text.wav"
    expect_error(maker, d, "tracks[1].file", "not a readable audio file")


def test_more_than_two_channels(maker):
    sf.write(maker.root / "surround.wav", np.zeros((10, 6), np.float32), 48000)
    d = base()
    d["tracks"][0]["file"] = "surround.wav"
    expect_error(maker, d, "tracks[1].file", "6 channels")


def test_unknown_track_in_ducking_key(maker):
    d = base()
    d["ducking"][0]["key"] = ["vocie"]
    expect_error(maker, d, "ducking[1].key", "unknown track 'vocie'")


def test_unknown_track_in_ducking_targets(maker):
    d = base()
    d["ducking"][0]["targets"] = ["music", "ambience"]
    expect_error(maker, d, "ducking[1].targets", "unknown track 'ambience'")


def test_track_ducking_itself(maker):
    d = base()
    d["ducking"][0]["targets"] = ["voice"]
    expect_error(maker, d, "ducking[1].targets", "cannot duck itself")


def test_duplicate_names(maker):
    d = base()
    d["tracks"][1]["name"] = "voice"
    expect_error(maker, d, "tracks[2].name", "duplicate track name 'voice'")


@pytest.mark.parametrize("table, key, value", [
    ("tracks", "offset_s", -1.0),
    ("ducking", "attack_ms", -5.0),
    ("ducking", "hold_ms", -5.0),
    ("ducking", "release_ms", -5.0),
])
def test_negative_times(maker, table, key, value):
    d = base()
    d[table][0][key] = value
    expect_error(maker, d, f"{table}[1].{key}", "below the minimum")


def test_pan_out_of_range(maker):
    d = base()
    d["tracks"][1]["pan"] = 1.5
    expect_error(maker, d, "tracks[2].pan", "above the maximum 1.0")


def test_depth_above_zero(maker):
    d = base()
    d["ducking"][0]["depth_db"] = 3.0
    expect_error(maker, d, "ducking[1].depth_db", "above the maximum 0.0")


def test_ceiling_above_zero(maker):
    d = base()
    d["master"]["ceiling_db"] = 0.5
    expect_error(maker, d, "master.ceiling_db", "above the maximum 0.0")


@pytest.mark.parametrize("table, typo, suggestion", [
    ("tracks", "gian_db", "gain_db"),
    ("ducking", "treshold_db", "threshold_db"),
    ("master", "celing_db", "ceiling_db"),
    ("engine", "sample_rate", "samplerate"),
])
def test_unknown_keys_are_errors_with_a_suggestion(maker, table, typo, suggestion):
    d = base()
    target = d[table][0] if isinstance(d[table], list) else d[table]
    target[typo] = 1.0
    msg = expect_error(maker, d, typo, "unknown key")
    assert f"did you mean '{suggestion}'" in msg


def test_unknown_top_level_table(maker):
    d = base()
    d["mastr"] = {"gain_db": 0.0}
    expect_error(maker, d, "mastr", "unknown key")


def test_unsupported_samplerate(maker):
    d = base()
    d["engine"]["samplerate"] = 12345
    expect_error(maker, d, "engine.samplerate", "12345 Hz is not supported")


@pytest.mark.parametrize("value", [0, 100000])
def test_unsupported_blocksize(maker, value):
    d = base()
    d["engine"]["blocksize"] = value
    expect_error(maker, d, "engine.blocksize", "not supported")


def test_unsupported_channels(maker):
    d = base()
    d["engine"]["channels"] = 6
    expect_error(maker, d, "engine.channels", "use 1 or 2")


def test_wrong_type(maker):
    d = base()
    d["tracks"][0]["gain_db"] = "loud"
    expect_error(maker, d, "tracks[1].gain_db", "is not a number")


def test_missing_file_key(maker):
    d = base()
    del d["tracks"][0]["file"]
    expect_error(maker, d, "tracks[1].file", "missing")


def test_no_tracks(maker):
    d = base()
    d["tracks"] = []
    d["ducking"] = []
    path = maker.root / "empty.toml"
    path.write_text("[engine]\nsamplerate = 48000\n")
    with pytest.raises(SessionError, match="at least one"):
        load_session(path)


def test_line_numbers_point_at_the_key(maker):
    d = base()
    d["tracks"][1]["pan"] = 2.0
    path = write(maker, d)
    lines = path.read_text().splitlines()
    with pytest.raises(SessionError) as e:
        load_session(path)
    line = int(str(e.value).split(":")[1])
    assert lines[line - 1].startswith("pan = 2.0")


def test_bad_toml_and_missing_session(maker, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine\nsamplerate = 48000\n")
    with pytest.raises(SessionError, match="not valid TOML"):
        load_session(bad)
    with pytest.raises(SessionError, match="session file not found"):
        load_session(tmp_path / "missing.toml")


def test_cli_prints_one_line_and_exits_nonzero(maker, cli):
    d = base()
    d["tracks"][0]["pan"] = -3
    path = write(maker, d)
    p = cli("render", path, "-o", maker.root / "o.wav", check=False)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "tracks[1].pan" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (maker.root / "o.wav").exists()
