"""Controller logic without devices: MIDI parsing, the fader law, soft takeover, mappings.

The controller numbers checked here come from /work/shared/reference/controllers.md
(vendor documentation and established mixers' maps).
"""
import dataclasses
import math
import random
import tracemalloc

import pytest

from controllers import taper
from controllers.mapping import (BUILTIN_MAPS, Binding, MappingError, load_mapping,
                                 relative_ticks)
from controllers.messages import SYSEX_MAX, Cc14, Event, MidiParser, encode
from controllers.takeover import ARM_REASONS, THRESHOLD, WINDOW_S, SoftTakeover
from engine.errors import LivemixError

EIGHT = [f"t{i}" for i in range(1, 9)]
SIXTEEN = [f"t{i}" for i in range(1, 17)]


def parse(*chunks):
    """Feed each chunk in turn to one parser; returns (events, parser)."""
    p = MidiParser()
    events = []
    for c in chunks:
        events += p.feed(c)
    return events, p


# --- parser: each message type ------------------------------------------------------

@pytest.mark.parametrize("data, event", [
    ([0x90, 60, 100], Event("note_on", 1, 60, 100)),
    ([0x9F, 127, 1], Event("note_on", 16, 127, 1)),
    ([0x90, 60, 0], Event("note_off", 1, 60, 0)),          # velocity 0 = note off
    ([0x83, 61, 64], Event("note_off", 4, 61, 64)),
    ([0xB0, 7, 100], Event("cc", 1, 7, 100)),
    ([0xBF, 0, 0], Event("cc", 16, 0, 0)),
    ([0xE0, 0x00, 0x40], Event("pitchbend", 1, 0, 8192)),  # LSB first, then MSB
    ([0xE0, 0x01, 0x00], Event("pitchbend", 1, 0, 1)),
    ([0xE0, 0x00, 0x01], Event("pitchbend", 1, 0, 128)),
    ([0xE7, 0x7F, 0x7F], Event("pitchbend", 8, 0, 16383)),
    ([0xA2, 60, 33], Event("aftertouch", 3, 60, 33)),
    ([0xC1, 5], Event("program", 2, 0, 5)),
    ([0xD0, 0x1C], Event("pressure", 1, 0, 0x1C)),
    ([0xF0, 0x00, 0x00, 0x66, 0x14, 0x00, 0xF7], Event("sysex", 0, 0, (0, 0, 0x66, 0x14, 0))),
    ([0xF0, 0xF7], Event("sysex", 0, 0, ())),
])
def test_each_message_type(data, event):
    events, p = parse(data)
    assert events == [event]
    assert p.invalid == 0
    # the same bytes as bytes and byte by byte
    assert MidiParser().feed(bytes(data)) == [event]
    assert parse(*[[b] for b in data])[0] == [event]


def test_running_status_within_and_across_calls():
    events, p = parse([0xB0, 7, 100, 7, 90], [10], [64], [0x90, 60, 1, 62], [0])
    assert events == [Event("cc", 1, 7, 100), Event("cc", 1, 7, 90), Event("cc", 1, 10, 64),
                      Event("note_on", 1, 60, 1), Event("note_off", 1, 62, 0)]
    assert p.invalid == 0


def test_running_status_for_one_data_byte_messages():
    events, p = parse([0xC0, 1, 2], [3], [0xD4, 9, 10])
    assert events == [Event("program", 1, 0, 1), Event("program", 1, 0, 2),
                      Event("program", 1, 0, 3), Event("pressure", 5, 0, 9),
                      Event("pressure", 5, 0, 10)]
    assert p.invalid == 0


def test_pitchbend_running_status_lsb_then_msb_across_calls():
    events, p = parse([0xE0, 0x7F], [0x3F, 0x01], [0x40])
    assert events == [Event("pitchbend", 1, 0, 0x7F | (0x3F << 7)),
                      Event("pitchbend", 1, 0, 1 | (0x40 << 7))]
    assert p.invalid == 0


def test_realtime_bytes_inside_messages_do_not_disturb_them():
    events, p = parse([0xB0, 0xF8, 7, 0xFE, 100, 0xFA, 7, 0xFF, 5])
    assert events == [Event("cc", 1, 7, 100), Event("cc", 1, 7, 5)]  # running status kept
    events2, p2 = parse([0xF0, 1, 0xF8, 2, 0xFC, 0xF7])
    assert events2 == [Event("sysex", 0, 0, (1, 2))]
    events3, p3 = parse([0xE2, 0x10, 0xF9], [0xFB, 0x20])
    assert events3 == [Event("pitchbend", 3, 0, 0x10 | (0x20 << 7))]
    assert p.invalid == p2.invalid == p3.invalid == 0


def test_system_common_messages_are_consumed_and_cancel_running_status():
    events, p = parse([0xF1, 0x20, 0xF2, 0x01, 0x02, 0xF3, 0x05, 0xF6])
    assert events == [] and p.invalid == 0
    events, p = parse([0xB0, 7, 1, 0xF6, 7, 2])
    assert events == [Event("cc", 1, 7, 1)]
    assert p.invalid == 2            # 7, 2: data bytes with no status left


# --- parser: garbage ----------------------------------------------------------------

def test_truncated_message_is_dropped_and_counted():
    events, p = parse([0x90, 60, 0xB0, 7, 100])
    assert events == [Event("cc", 1, 7, 100)]
    assert p.invalid == 1
    events, p = parse([0x90, 0xB0, 7, 100])            # status with no data at all
    assert events == [Event("cc", 1, 7, 100)] and p.invalid == 1
    events, p = parse([0xE0, 5], [0xB0, 7, 1])         # across calls
    assert events == [Event("cc", 1, 7, 1)] and p.invalid == 1
    events, p = parse([0xB0, 7, 1, 8, 0x90, 60, 1])    # a running-status message cut short
    assert events == [Event("cc", 1, 7, 1), Event("note_on", 1, 60, 1)] and p.invalid == 1


def test_data_bytes_without_status_are_counted():
    events, p = parse([7, 100, 3])
    assert events == [] and p.invalid == 3
    events, p = parse([1, 0xB0, 7, 1])
    assert events == [Event("cc", 1, 7, 1)] and p.invalid == 1


@pytest.mark.parametrize("status", [0xF4, 0xF5])
def test_undefined_system_common_statuses(status):
    events, p = parse([status])
    assert events == [] and p.invalid == 1
    # they are status bytes: they end a partial message and cancel running status
    events, p = parse([0xB0, 7, 1, 7, status, 7, 2, 0xB0, 7, 3])
    assert events == [Event("cc", 1, 7, 1), Event("cc", 1, 7, 3)]
    assert p.invalid == 4            # truncated + the status + two orphan data bytes


def test_undefined_realtime_fd_is_counted_but_disturbs_nothing():
    events, p = parse([0xB0, 7, 0xFD, 100, 0xFD])
    assert events == [Event("cc", 1, 7, 100)]
    assert p.invalid == 2
    events, p = parse([0xF0, 1, 0xFD, 2, 0xF7])
    assert events == [Event("sysex", 0, 0, (1, 2))] and p.invalid == 1


def test_stray_end_of_sysex():
    events, p = parse([0xF7])
    assert events == [] and p.invalid == 1
    events, p = parse([0xB0, 7, 1, 0xF7, 0xB0, 7, 2])
    assert events == [Event("cc", 1, 7, 1), Event("cc", 1, 7, 2)] and p.invalid == 1


def test_unterminated_sysex_followed_by_three_ccs():
    data = [0xF0, 0x00, 0x20, 0x6B, 0x7F, 0x42,
            0xB0, 7, 10, 0xB1, 10, 64, 0xB0, 7, 11]
    events, p = parse(data)
    assert events == [Event("cc", 1, 7, 10), Event("cc", 2, 10, 64), Event("cc", 1, 7, 11)]
    assert p.invalid == 1
    assert not p.in_sysex
    # the same split across calls, with running status for the last two
    events, p = parse([0xF0, 1, 2], [3], [0xB0, 7, 10], [7, 11, 7, 12])
    assert events == [Event("cc", 1, 7, 10), Event("cc", 1, 7, 11), Event("cc", 1, 7, 12)]
    assert p.invalid == 1


def test_sysex_at_the_cap_is_kept():
    payload = [i % 128 for i in range(SYSEX_MAX)]
    events, p = parse([0xF0], payload, [0xF7])
    assert events == [Event("sysex", 0, 0, tuple(payload))]
    assert p.invalid == 0


def test_huge_sysex_is_capped_without_growing_memory():
    p = MidiParser()
    data = bytes([0xF0]) + bytes([0x11]) * 10_000 + bytes([0xF7])
    chunks = [data[i:i + 100] for i in range(0, len(data), 100)]
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        events = []
        for c in chunks:
            events += p.feed(c)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events == []
    assert p.invalid == 1
    assert len(p._sysex) == SYSEX_MAX
    # a parser that buffered the 10,000 bytes (as a list: ~80 kB) would fail this
    assert peak - base < 16_000, peak - base
    # and it is ready for what follows
    assert p.feed([0xF0, 5, 0xF7, 0xB0, 1, 2]) == [Event("sysex", 0, 0, (5,)),
                                                   Event("cc", 1, 1, 2)]
    assert p.invalid == 1


def test_huge_unterminated_sysex_ends_at_the_next_status():
    events, p = parse([0xF0] + [0x22] * 9000 + [0x90, 60, 127])
    assert events == [Event("note_on", 1, 60, 127)]
    assert p.invalid == 1


def test_items_that_are_not_bytes_are_counted():
    events, p = parse([300, -1, "x", 1.5, None, 0xB0, 7, 1])
    assert events == [Event("cc", 1, 7, 1)]
    assert p.invalid == 5


def test_reset_forgets_partial_message_and_running_status():
    p = MidiParser()
    assert p.feed([0xB0, 7]) == []
    p.reset()
    assert p.feed([100]) == []
    assert p.invalid == 1          # the 100 has no status after the reset


def test_random_garbage_never_raises_and_events_stay_in_range():
    rng = random.Random(1234)
    p = MidiParser()
    events = []
    for _ in range(2000):
        events += p.feed([rng.randrange(256) for _ in range(rng.randrange(1, 40))])
    assert p.invalid > 0
    assert events
    for e in events:
        assert e.kind in ("note_on", "note_off", "cc", "pitchbend", "sysex", "aftertouch",
                          "program", "pressure")
        if e.kind == "sysex":
            assert e.channel == 0 and len(e.value) <= SYSEX_MAX
            assert all(0 <= b <= 127 for b in e.value)
        else:
            assert 1 <= e.channel <= 16 and 0 <= e.number <= 127
            assert 0 <= e.value <= (16383 if e.kind == "pitchbend" else 127)
    assert len(p._sysex) == SYSEX_MAX


# --- 14-bit CC -----------------------------------------------------------------------

def test_cc14_msb_then_lsb():
    c = Cc14([(1, 1)])
    assert c.feed(Event("cc", 1, 1, 64)) == Event("cc14", 1, 1, 64 << 7)
    assert c.feed(Event("cc", 1, 33, 5)) == Event("cc14", 1, 1, (64 << 7) | 5)
    # a new MSB resets the LSB to 0 (MIDI 1.0)
    assert c.feed(Event("cc", 1, 1, 65)) == Event("cc14", 1, 1, 65 << 7)
    # an LSB alone refines the last MSB
    assert c.feed(Event("cc", 1, 33, 127)) == Event("cc14", 1, 1, (65 << 7) | 127)
    assert c.orphans == 0


def test_cc14_lsb_alone_before_any_msb_is_dropped():
    c = Cc14([(1, 1)])
    assert c.feed(Event("cc", 1, 33, 5)) is None
    assert c.orphans == 1
    c.feed(Event("cc", 1, 1, 10))
    c.reset()
    assert c.feed(Event("cc", 1, 33, 5)) is None
    assert c.orphans == 2


def test_cc14_is_per_channel_and_only_for_the_pairs_given():
    c = Cc14([(1, 1), (2, 1)])
    c.feed(Event("cc", 1, 1, 100))
    assert c.feed(Event("cc", 2, 33, 3)) is None          # channel 2 has no MSB yet
    assert c.feed(Event("cc", 2, 1, 7)) == Event("cc14", 2, 1, 7 << 7)
    assert c.feed(Event("cc", 1, 33, 3)) == Event("cc14", 1, 1, (100 << 7) | 3)
    # other controllers pass through unchanged
    for e in (Event("cc", 1, 2, 9), Event("cc", 1, 34, 9), Event("cc", 3, 1, 9),
              Event("cc", 1, 64, 9), Event("note_on", 1, 1, 9)):
        assert c.feed(e) is e
    with pytest.raises(ValueError):
        Cc14([(1, 32)])


def test_cc14_from_bytes_with_running_status():
    p = MidiParser()
    c = Cc14([(1, 0)])
    out = [c.feed(e) for e in p.feed([0xB0, 0, 0x60, 32, 0x01, 0, 0x7F, 32, 0x7F])]
    assert [e.value for e in out] == [0x60 << 7, (0x60 << 7) | 1, 0x7F << 7, 16383]


def test_encode_round_trips_through_the_parser():
    cases = [("cc", 3, 7, 99), ("note_on", 1, 16, 127), ("note_off", 16, 104, 0),
             ("pitchbend", 9, 0, 12384), ("pitchbend", 1, 0, 16383),
             ("pressure", 1, 0, 0x1C), ("program", 2, 0, 5)]
    for kind, ch, num, val in cases:
        assert MidiParser().feed(encode(kind, ch, num, val)) == [Event(kind, ch, num, val)]
    assert encode("pitchbend", 1, 0, 8192) == [0xE0, 0x00, 0x40]
    assert MidiParser().feed(encode("sysex", 0, 0, (1, 2, 3))) == [Event("sysex", 0, 0, (1, 2, 3))]
    c = Cc14([(2, 4)])
    got = [c.feed(e) for e in MidiParser().feed(encode("cc14", 2, 4, 9999))]
    assert got[-1] == Event("cc14", 2, 4, 9999)
    for bad in [("cc", 0, 7, 1), ("cc", 1, 128, 1), ("pitchbend", 1, 0, 16384),
                ("note_on", 17, 1, 1), ("cc14", 1, 32, 0), ("bogus", 1, 1, 1)]:
        with pytest.raises(ValueError):
            encode(*bad)


# --- the fader law -------------------------------------------------------------------

def test_taper_7bit_round_trip_is_exact_for_every_value():
    bad = [v for v in range(128) if taper.db_to_value7(taper.value7_to_db(v)) != v]
    assert bad == []


def test_taper_14bit_round_trip_is_exact_for_every_value():
    bad = [v for v in range(16384) if taper.db_to_value14(taper.value14_to_db(v)) != v]
    assert bad == []


def test_taper_is_strictly_increasing():
    d7 = [taper.value7_to_db(v) for v in range(128)]
    d14 = [taper.value14_to_db(v) for v in range(16384)]
    assert all(a < b for a, b in zip(d7, d7[1:]))
    assert all(a < b for a, b in zip(d14, d14[1:]))
    ps = [i / 1000 for i in range(1001)]
    dp = [taper.position_to_db(p) for p in ps]
    assert all(a < b for a, b in zip(dp, dp[1:]))


def test_taper_checkpoints():
    assert taper.value7_to_db(0) == -math.inf
    assert taper.value7_to_db(1) == -86.25
    assert taper.value7_to_db(8) == -60.0
    assert taper.value7_to_db(32) == -30.0
    assert taper.value7_to_db(64) == -10.0
    assert taper.value7_to_db(96) == 0.0            # 0 dB exactly from a 7-bit fader
    assert taper.value7_to_db(127) == 10.0
    assert taper.db_to_value7(0.0) == 96 == taper.UNITY_VALUE7
    assert taper.value14_to_db(12384) == 0.0
    assert taper.db_to_value14(0.0) == 12384 == taper.UNITY_VALUE14
    assert taper.value14_to_db(16383) == 10.0 and taper.value14_to_db(0) == -math.inf
    assert taper.position_to_db(0.0) == -math.inf
    assert taper.position_to_db(1.0) == 10.0
    assert taper.position_to_db(96 / 127) == 0.0
    assert taper.db_to_position(0.0) == 96 / 127
    assert taper.db_to_position(-math.inf) == 0.0
    # close to the X32 law it is adapted from (0.75 -> 0, 0.5 -> -10, 0.25 -> -30 dB)
    assert abs(taper.position_to_db(0.75) - 0.0) < 0.25
    assert abs(taper.position_to_db(0.5) + 10.0) < 0.5
    assert abs(taper.position_to_db(0.25) + 30.0) < 0.5


def test_taper_7bit_values_are_exact_14bit_values():
    for v in range(128):
        assert taper.value7_to_db(v) == taper.value14_to_db(129 * v)
        assert taper.db_to_value14(taper.value7_to_db(v)) == 129 * v


def test_taper_clamps_and_rounds_to_nearest():
    assert taper.db_to_value7(24.0) == 127 and taper.db_to_value14(24.0) == 16383
    assert taper.db_to_value7(-120.0) == 0 and taper.db_to_value7(-math.inf) == 0
    assert taper.db_to_value7(-0.1) == 96          # 0.3125 dB per step below 0 dB
    assert taper.db_to_value7(-0.2) == 95
    assert taper.value7_to_db(500) == 10.0 and taper.value7_to_db(-3) == -math.inf
    assert taper.position_to_db(2.0) == 10.0 and taper.position_to_db(-1.0) == -math.inf
    for p in [i / 997 for i in range(998)]:
        assert abs(taper.db_to_position(taper.position_to_db(p)) - p) < 1e-12
    with pytest.raises(ValueError):
        taper.db_to_position(float("nan"))


# --- soft takeover -------------------------------------------------------------------

E = 0.5                      # engine value in most rows
T = THRESHOLD                # 3/128, exact in binary


@pytest.mark.parametrize("rule, history, new, engine, now, expected", [
    # first value after arming: only "near" can accept it
    ("armed, far", [], 0.9, E, 0.0, False),
    ("armed, far below", [], 0.1, E, 0.0, False),
    ("armed, near above (boundary)", [], E + T, E, 0.0, True),
    ("armed, near below (boundary)", [], E - T, E, 0.0, True),
    ("armed, just outside", [], E + 4 / 128, E, 0.0, False),
    ("armed, exact", [], E, E, 0.0, True),
    # crossing: previous and new on opposite sides of the engine value
    ("crossing upward", [(0.3, E, 0.0)], 0.7, E, 1.0, True),
    ("crossing downward", [(0.9, E, 0.0)], 0.1, E, 1.0, True),
    ("same side below", [(0.3, E, 0.0)], 0.4, E, 1.0, False),
    ("same side above", [(0.9, E, 0.0)], 0.6, E, 1.0, False),
    ("previous = the last value, not an older one", [(0.9, E, 0.0), (0.3, E, 1.0)],
     0.4, E, 2.0, False),
    # previous value near the engine value
    ("previous near", [(E + 2 / 128, E, 0.0)], 0.9, E, 1.0, True),
    ("previous just outside", [(E + 4 / 128, E, 0.0)], 0.9, E, 1.0, False),
    # fast sweep: within 50 ms of the last ACCEPTED value (isolated: the previous
    # value is far from the new engine value and on the same side, the new one far)
    ("sweep inside window", [(0.5, 0.5, 10.0)], 0.1, 0.9, 10.049, True),
    ("sweep outside window", [(0.5, 0.5, 10.0)], 0.1, 0.9, 10.051, False),
    ("ignored values start no sweep", [(0.1, 0.9, 10.0)], 0.2, 0.9, 10.01, False),
])
def test_soft_takeover_truth_table(rule, history, new, engine, now, expected):
    st = SoftTakeover()
    for v, e, t in history:
        st.accept(v, e, t)
    assert st.accept(new, engine, now) is expected, rule


@pytest.mark.parametrize("reason", ARM_REASONS)
def test_soft_takeover_rearm_forgets_sweep_and_previous(reason):
    st = SoftTakeover()
    assert st.accept(0.49, 0.5, 0.0)           # near: taken over
    assert not st.armed
    assert st.accept(0.48, 0.49, 0.010)        # following
    st.arm(reason)
    assert st.armed and st.armed_reason == reason
    # within 50 ms of the last acceptance, and the previous value 0.48 is near 0.5:
    # both forgotten by arm(), so the far value is ignored
    assert not st.accept(0.9, 0.5, 0.020)
    assert not st.accept(0.8, 0.5, 0.030)      # same side as 0.9: still ignored
    assert st.accept(0.5 + 1 / 128, 0.5, 0.040)  # picked up again


def test_soft_takeover_unknown_arm_reason():
    with pytest.raises(ValueError, match="arm reason"):
        SoftTakeover().arm("because")


def test_soft_takeover_slow_approach_picks_up_at_the_threshold():
    # engine at 0 dB (96/127); the fader comes up slowly from 20/127, one step per 100 ms
    engine = 96 / 127
    st = SoftTakeover()
    accepted = []
    for i, v in enumerate(range(20, 128)):
        x = v / 127
        if st.accept(x, engine, 0.1 * i):
            engine = x                         # the engine follows once taken over
            accepted.append(v)
    first = min(v for v in range(128) if abs(v / 127 - 96 / 127) <= T)
    assert accepted[0] == first == 94
    assert accepted == list(range(first, 128))  # then every value is followed


def test_soft_takeover_fast_jump_over_the_engine_value():
    st = SoftTakeover()
    got = [st.accept(v, 0.5, 0.01 * i) for i, v in enumerate([0.1, 0.2, 0.4, 0.9])]
    assert got == [False, False, False, True]   # the 0.4 -> 0.9 crossing


def test_soft_takeover_constants():
    assert WINDOW_S == 0.050 and THRESHOLD == 3 / 128


# --- built-in maps -------------------------------------------------------------------

def by(mapping, **kw):
    return [b for b in mapping.bindings if all(getattr(b, k) == v for k, v in kw.items())]


def test_builtin_names():
    assert set(BUILTIN_MAPS) == {"generic", "nanokontrol2", "midimix", "mackie"}
    for name in BUILTIN_MAPS:
        m = load_mapping(name, SIXTEEN)
        assert m.builtin and m.skipped == 0 and m.bindings
        assert all(isinstance(b, Binding) for b in m.bindings)
        with pytest.raises(dataclasses.FrozenInstanceError):
            m.bindings[0].number = 5


def test_nanokontrol2_numbers():
    m = load_mapping("nanokontrol2", EIGHT)
    assert m.name == "Korg nanoKONTROL2"
    for s in range(1, 9):
        (f,) = by(m, param="gain", target=s - 1)
        assert (f.control, f.channel, f.number, f.mode) == ("cc", 1, s - 1, "absolute")
        (k,) = by(m, param="pan", target=s - 1)
        assert (k.control, k.channel, k.number) == ("cc", 1, 15 + s)
        (so,) = by(m, param="solo", target=s - 1)
        assert (so.control, so.number, so.mode) == ("cc", 31 + s, "toggle")
        (mu,) = by(m, param="mute", target=s - 1)
        assert (mu.control, mu.number, mu.mode) == ("cc", 47 + s, "toggle")
    # fader 3 is CC 2 on channel 1
    (b,) = m.lookup(Event("cc", 1, 2, 100))
    assert (b.param, b.target) == ("gain", 2)
    # the R buttons (CC 64-71) are not mapped; transport REC (CC 45) records the take
    assert all(m.lookup(Event("cc", 1, n, 127)) == [] for n in range(64, 72))
    (r,) = m.lookup(Event("cc", 1, 45, 127))
    assert (r.param, r.target, r.mode) == ("record", "master", "toggle")
    # CC 32-39 are the S buttons: nothing is paired as 14-bit
    assert m.cc14_pairs == frozenset()
    assert m.lookup(Event("cc", 2, 2, 100)) == []          # other channel


def test_midimix_numbers():
    m = load_mapping("midimix", EIGHT)
    faders = [19, 23, 27, 31, 49, 53, 57, 61]
    row3 = [18, 22, 26, 30, 48, 52, 56, 60]
    mutes = [1, 4, 7, 10, 13, 16, 19, 22]
    solos = [2, 5, 8, 11, 14, 17, 20, 23]
    for s in range(8):
        (f,) = by(m, param="gain", target=s)
        assert (f.control, f.channel, f.number) == ("cc", 1, faders[s])
        (p,) = by(m, param="pan", target=s)
        assert (p.control, p.number) == ("cc", row3[s])
        (mu,) = by(m, param="mute", target=s)
        assert (mu.control, mu.number, mu.mode, mu.feedback) == ("note", mutes[s], "toggle", True)
        (so,) = by(m, param="solo", target=s)
        assert (so.control, so.number) == ("note", solos[s])
    (b,) = m.lookup(Event("cc", 1, 49, 64))                # strip 5 fader is CC 49
    assert (b.param, b.target) == ("gain", 4)
    (mst,) = m.lookup(Event("cc", 1, 62, 127))
    assert (mst.param, mst.target) == ("gain", "master")
    # a MUTE press and its release both reach the binding (the mode decides)
    assert m.lookup(Event("note_on", 1, 13, 127)) == m.lookup(Event("note_off", 1, 13, 0))
    assert m.lookup(Event("note_on", 1, 13, 127))[0].target == 4
    # REC ARM notes are not mapped
    assert all(m.lookup(Event("note_on", 1, n, 127)) == [] for n in range(3, 25, 3))


def test_mackie_numbers():
    m = load_mapping("mackie", EIGHT)
    for s in range(1, 9):
        (f,) = by(m, param="gain", target=s - 1)
        assert (f.control, f.channel, f.touch, f.touch_channel, f.feedback) == \
            ("pitchbend", s, 103 + s, 1, True)
        (mu,) = by(m, param="mute", target=s - 1)
        assert (mu.control, mu.channel, mu.number, mu.mode, mu.feedback) == \
            ("note", 1, 15 + s, "toggle", True)
        (so,) = by(m, param="solo", target=s - 1)
        assert (so.control, so.number, so.mode, so.feedback) == ("note", 7 + s, "toggle", True)
        (vp,) = by(m, param="pan", target=s - 1)
        assert (vp.control, vp.number, vp.mode, vp.feedback) == ("cc", 15 + s, "relative", False)
    # strip 1 fader: pitch bend on channel 1 (0xE0), touch note 104
    ev = MidiParser().feed([0xE0, 0x00, 0x40])[0]
    (b,) = m.lookup(ev)
    assert (b.param, b.target, b.touch) == ("gain", 0, 104)
    assert m.lookup_touch(Event("note_on", 1, 104, 127)) == [b]
    assert m.lookup_touch(Event("note_off", 1, 104, 0)) == [b]
    assert m.lookup(Event("note_on", 1, 104, 127)) == []     # a touch, not a button
    # master: 0xE8 = channel 9, touch 112
    (mst,) = m.lookup(MidiParser().feed([0xE8, 0, 0x60])[0])
    assert (mst.target, mst.touch, mst.feedback) == ("master", 112, True)
    assert m.lookup_touch(Event("note_on", 1, 112, 127)) == [mst]
    assert m.touch_notes == {(1, n) for n in range(104, 113)}   # all on channel 1
    # REC 0-7 not mapped; transport RECORD 95 records the take
    assert all(m.lookup(Event("note_on", 1, n, 127)) == [] for n in range(8))
    assert m.lookup(Event("note_on", 1, 95, 127))[0].param == "record"
    assert m.for_target("gain", 3) == [by(m, param="gain", target=3)[0]]


def test_relative_ticks_mackie_encoding():
    assert [relative_ticks(v) for v in (1, 5, 0x3F, 0x41, 0x45, 0x7F, 0, 0x40)] == \
        [1, 5, 63, -1, -5, -63, 0, 0]


def test_generic_numbers():
    m = load_mapping("generic", SIXTEEN)
    assert len(m.bindings) == 64
    for n in range(1, 17):
        for cc, param in ((7, "gain"), (10, "pan"), (14, "mute"), (15, "solo")):
            (b,) = m.lookup(Event("cc", n, cc, 1))
            assert (b.param, b.target) == (param, n - 1)
    assert m.lookup(Event("cc", 1, 7, 1))[0].mode == "absolute"
    assert m.lookup(Event("cc", 1, 14, 127))[0].mode == "toggle"


@pytest.mark.parametrize("name, total", [("generic", 64), ("nanokontrol2", 33),
                                         ("midimix", 33), ("mackie", 34)])
def test_builtins_skip_strips_the_session_lacks(name, total):
    m = load_mapping(name, ["voice", "music", "amb"])
    targets = {b.target for b in m.bindings}
    assert targets <= {0, 1, 2, "master"}
    assert {0, 1, 2} <= targets
    assert len(m.bindings) + m.skipped == total
    assert m.skipped > 0
    if name == "mackie":
        assert m.lookup(Event("pitchbend", 4, 0, 100)) == []    # strip 4: no track 4
        assert m.lookup_touch(Event("note_on", 1, 107, 127)) == []


# --- mapping files and their errors ----------------------------------------------------

def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    return repr(v)


def write_map(tmp_path, bindings, name="my-map", top=None, fname="map.toml"):
    lines = [f'name = "{name}"']
    for k, v in (top or {}).items():
        lines.append(f"{k} = {toml_value(v)}")
    for b in bindings:
        lines += ["", "[[bindings]]"] + [f"{k} = {toml_value(v)}" for k, v in b.items()]
    path = tmp_path / fname
    path.write_text("\n".join(lines) + "\n")
    return path


FADER = dict(control="cc", channel=1, number=0, target=1, param="gain", mode="absolute")
TRACKS = ["voice", "music", "ambience"]


def test_user_mapping_loads_with_names_and_defaults(tmp_path):
    path = write_map(tmp_path, [
        dict(FADER, name="vo fader"),
        dict(control="cc", number=1, target="music", param="pan"),                # defaults
        dict(control="note", channel=2, number=60, target="ambience", param="mute"),
        dict(control="cc14", channel=3, number=1, target="master", param="gain", feedback=True),
        dict(control="pitchbend", channel=4, target=2, param="gain", touch=104),
        dict(control="cc", number=20, target=1, param="duck_depth", mode="relative"),
        dict(control="note", number=95, target="master", param="record", mode="momentary"),
    ])
    m = load_mapping(path, TRACKS)
    assert m.name == "my-map" and not m.builtin and m.path == str(path)
    b = m.bindings
    assert (b[0].target, b[0].name, b[0].index) == (0, "vo fader", 1)
    assert (b[1].channel, b[1].mode, b[1].target, b[1].feedback) == (1, "absolute", 1, False)
    assert (b[2].mode, b[2].target) == ("toggle", 2)
    assert b[3].target == "master" and m.cc14_pairs == {(3, 1)}
    assert m.lookup(Event("cc14", 3, 1, 9000)) == [b[3]]
    assert m.lookup(Event("cc", 3, 1, 90)) == []          # raw halves go through Cc14
    assert (b[4].number, b[4].touch, b[4].touch_channel) == (0, 104, 4)
    assert m.lookup_touch(Event("note_on", 4, 104, 127)) == [b[4]]
    assert b[5].target == 0                               # ducking rule 1
    assert (b[6].target, b[6].mode) == ("master", "momentary")
    assert m.lookup(Event("sysex", 0, 0, ())) == []
    assert m.lookup(Event("program", 1, 0, 0)) == []


def test_same_control_for_two_params_is_allowed(tmp_path):
    path = write_map(tmp_path, [FADER, dict(FADER, param="duck_depth")])
    m = load_mapping(path, TRACKS)
    assert [b.param for b in m.lookup(Event("cc", 1, 0, 5))] == ["gain", "duck_depth"]


def check_error(path, tracks, index, key, *words, **kw):
    """The error is one line naming the file, the binding and the key."""
    with pytest.raises(MappingError) as exc:
        load_mapping(path, tracks, **kw)
    msg = str(exc.value)
    assert isinstance(exc.value, LivemixError)
    assert "\n" not in msg
    assert msg.startswith(str(path) + ":"), msg
    where = f"bindings[{index}].{key}" if index else key
    assert f": {where}: " in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.mark.parametrize("change, key, words", [
    (dict(target=4), "target", ["unknown track 4", "voice, music, ambience"]),
    (dict(target="ambiance"), "target", ["unknown track 'ambiance'", "did you mean 'ambience'"]),
    (dict(target=0), "target", ["numbered from 1"]),
    (dict(target=1.5), "target", ["not a track number"]),
    (dict(number=128), "number", ["128", "0-127"]),
    (dict(number=-1), "number", ["0-127"]),
    (dict(number="7"), "number", ["not an integer"]),
    (dict(channel=0), "channel", ["channel 0", "1-16"]),
    (dict(channel=17), "channel", ["1-16"]),
    (dict(control="cc14", number=32), "number", ["0-31"]),
    (dict(control="nrpn"), "control", ["unknown control 'nrpn'"]),
    (dict(param="gian"), "param", ["unknown param 'gian'", "did you mean 'gain'"]),
    (dict(mode="absolut"), "mode", ["unknown mode 'absolut'", "did you mean 'absolute'"]),
    (dict(control="pitchbend", mode="toggle", number=0), "mode",
     ["toggle is not possible for a pitchbend control"]),
    (dict(control="note", mode="relative"), "mode", ["relative is not possible for a note"]),
    (dict(control="note", mode="absolute"), "mode", ["absolute is not possible for a note"]),
    (dict(control="cc14", mode="relative"), "mode", ["not possible for a cc14"]),
    (dict(mode="toggle"), "mode", ["toggle is not possible for gain"]),
    (dict(param="mute", mode="relative"), "mode", ["relative is not possible for mute"]),
    (dict(control="pitchbend", number=3), "number", ["pitchbend has no number"]),
    (dict(mode="relative", feedback=True), "feedback", ["relative encoder"]),
    (dict(feedback=1), "feedback", ["not true or false"]),
    (dict(param="pan", target="master"), "target", ["master has no pan"]),
    (dict(param="record", mode="toggle", target=1), "target", ['target = "master"']),
    (dict(param="duck_depth", target="voice"), "target", ["ducking rule number"]),
    (dict(touch=200), "touch", ["0-127"]),
    (dict(param="mute", mode="toggle", touch=104), "touch", ["only an absolute"]),
    (dict(touch_channel=1), "touch_channel", ["without touch"]),
    (dict(name=5), "name", ["not a string"]),
    (dict(parm="gain"), "parm", ["unknown key", "did you mean 'param'"]),
])
def test_mapping_errors_name_file_binding_and_key(tmp_path, change, key, words):
    bad = dict(FADER, number=5)
    bad.update(change)
    path = write_map(tmp_path, [FADER, bad])
    msg = check_error(path, TRACKS, 2, key, *words)
    # the line number points into the second [[bindings]] table
    line = int(msg.split(":")[1])
    text = path.read_text().splitlines()
    second = [n for n, t in enumerate(text, 1) if t == "[[bindings]]"][1]
    assert second <= line <= len(text)
    if key in change:
        assert text[line - 1].startswith(f"{key} =")


@pytest.mark.parametrize("missing", ["control", "target", "param", "number"])
def test_mapping_missing_key(tmp_path, missing):
    b = dict(FADER)
    del b[missing]
    path = write_map(tmp_path, [b])
    check_error(path, TRACKS, 1, missing, "missing")


def test_mapping_duplicate_binding(tmp_path):
    path = write_map(tmp_path, [FADER, dict(FADER, number=1), dict(FADER, target=2)])
    check_error(path, TRACKS, 3, "number", "duplicate", "cc 0 on channel 1",
                "gain", "bindings[1]")
    pb = dict(control="pitchbend", channel=2, target=1, param="gain")
    path = write_map(tmp_path, [pb, dict(pb, target=2)], fname="pb.toml")
    check_error(path, TRACKS, 2, "channel", "duplicate", "pitch bend on channel 2")
    # the same number on another channel or for another control kind is fine
    path = write_map(tmp_path, [FADER, dict(FADER, channel=2),
                                dict(FADER, control="note", mode="momentary", param="mute")],
                     fname="ok.toml")
    assert len(load_mapping(path, TRACKS).bindings) == 3


def test_mapping_cc14_overlapping_plain_cc(tmp_path):
    c14 = dict(FADER, control="cc14", number=2)
    path = write_map(tmp_path, [dict(FADER, number=34, param="pan"), c14])
    check_error(path, TRACKS, 2, "number", "CC 34", "bindings[1]")
    path = write_map(tmp_path, [c14, dict(FADER, number=2, param="pan")], fname="b.toml")
    check_error(path, TRACKS, 2, "number", "14-bit CC 2", "bindings[1]")


def test_mapping_touch_note_conflicts(tmp_path):
    fader = dict(control="pitchbend", channel=1, target=1, param="gain", touch=104)
    button = dict(control="note", channel=1, number=104, target=1, param="mute")
    path = write_map(tmp_path, [fader, button])
    check_error(path, TRACKS, 2, "number", "touch note of bindings[1]")
    path = write_map(tmp_path, [button, fader], fname="b.toml")
    check_error(path, TRACKS, 2, "touch", "already bound by bindings[1]")
    path = write_map(tmp_path, [fader, dict(fader, channel=2, target=2, touch_channel=1)],
                     fname="c.toml")
    check_error(path, TRACKS, 2, "touch", "already belongs to bindings[1]")
    # touch_channel defaults to the binding's channel: no clash on channel 2
    path = write_map(tmp_path, [fader, dict(fader, channel=2, target=2)], fname="d.toml")
    assert load_mapping(path, TRACKS).bindings[1].touch_channel == 2


def test_mapping_duck_rule_count(tmp_path):
    path = write_map(tmp_path, [dict(FADER, param="duck_depth", target=3)])
    assert load_mapping(path, TRACKS).bindings[0].target == 2
    assert load_mapping(path, TRACKS, duck_rules=3).bindings[0].target == 2
    check_error(path, TRACKS, 1, "target", "unknown ducking rule 3", duck_rules=2)


def test_mapping_file_level_errors(tmp_path):
    path = write_map(tmp_path, [FADER], top={"nmae": "x"})
    msg = check_error(path, TRACKS, None, "nmae", "unknown key")
    assert msg.startswith(f"{path}:2:")
    path = write_map(tmp_path, [], fname="empty.toml")
    check_error(path, TRACKS, None, "bindings", "at least one binding")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n[[bindings]]\n")
    with pytest.raises(MappingError, match=r"bad\.toml: not valid TOML"):
        load_mapping(bad, TRACKS)
    with pytest.raises(MappingError, match=r"nope\.toml: mapping file not found .*mackie"):
        load_mapping(tmp_path / "nope.toml", TRACKS)
    with pytest.raises(MappingError, match=r"nanokontrol: mapping file not found"):
        load_mapping("nanokontrol", TRACKS)


def test_mapping_errors_in_inline_tables_point_at_the_row(tmp_path):
    path = tmp_path / "inline.toml"
    path.write_text('name = "x"\nbindings = [\n'
                    '  { control = "cc", number = 0, target = 1, param = "gain" },\n'
                    '  # a comment\n'
                    '  { control = "cc", number = 1, target = 9, param = "gain" },\n'
                    ']\n')
    msg = check_error(path, TRACKS, 2, "target", "unknown track 9")
    assert msg.startswith(f"{path}:5:")


def test_user_file_with_out_of_range_track_is_an_error_but_builtin_is_not(tmp_path):
    # the built-in nanoKONTROL2 map, copied to a user file, fails on a 3-track session
    from importlib import resources
    text = resources.files("controllers").joinpath("maps", "nanokontrol2.toml").read_text()
    path = tmp_path / "nano.toml"
    path.write_text(text)
    msg = check_error(path, TRACKS, 4, "target", "unknown track 4")
    assert msg.startswith(f"{path}:")
    assert len(load_mapping(path, EIGHT).bindings) == 33
    assert len(load_mapping("nanokontrol2", TRACKS).bindings) == 3 * 4 + 1
