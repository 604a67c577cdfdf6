"""Raw MIDI bytes -> events, robustly; events -> bytes for feedback.

``MidiParser.feed`` takes the bytes of a MIDI port as they arrive (python-rtmidi
hands over one message at a time, but the parser treats its input as a byte
stream: running status and a message split across calls both work) and
returns ``Event`` tuples. Garbage never raises and never produces an event
that could move a control; it is counted in ``MidiParser.invalid``:

- a truncated message (a status byte arriving before the data bytes of the
  previous message are complete): the partial message is dropped, +1;
- a data byte with no status to belong to (no running status active): +1 per byte;
- the undefined statuses 0xF4 and 0xF5 (+1; like any system common status they
  cancel running status) and 0xFD (+1; it is in the real-time range, so like the
  other real-time bytes it disturbs nothing);
- a stray 0xF7 (end of SysEx) with no SysEx open: +1, cancels running status;
- a SysEx longer than ``SYSEX_MAX`` bytes of payload: +1 when it ends, no event;
  the bytes past the cap are discarded as they arrive (memory never grows);
- an unterminated SysEx: it ends at the next status byte (+1, no event), and that
  status byte starts the next message as usual, so nothing after it is swallowed;
- anything that is not an int in 0..255: +1 per item.

Running status applies to channel messages (0x80-0xEF); system common messages
(0xF0-0xF7) cancel it. Real-time bytes (0xF8-0xFF) may come anywhere, even
inside another message or a SysEx, and are ignored without disturbing it.
System common messages (MTC quarter frame, song position, song select, tune
request) are consumed without producing events.

Each ``MidiParser`` belongs to one port and is used from one thread (the
control thread that reads that port).
"""
from __future__ import annotations

from typing import NamedTuple, Union

#: Largest SysEx payload kept (bytes between 0xF0 and 0xF7); longer ones are dropped.
SYSEX_MAX = 4096

# data bytes per channel-message type (status & 0xF0)
_CHANNEL_LEN = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
# data bytes per system common status (0xF0 SysEx, 0xF7 EOX and the undefined 0xF4/0xF5 apart)
_COMMON_LEN = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0}


class Event(NamedTuple):
    """One MIDI message.

    kind      "note_on", "note_off", "cc", "pitchbend", "sysex", "aftertouch"
              (polyphonic), "program", "pressure" (channel pressure); "cc14" is
              made from "cc" pairs by ``Cc14``
    channel   1..16 (0 for SysEx)
    number    note or controller number 0..127; 0 for pitchbend, program,
              pressure and SysEx
    value     velocity / controller value 0..127, pitch bend 0..16383 (8192 is
              the centre), 14-bit CC 0..16383, program or pressure 0..127,
              SysEx: the payload bytes between 0xF0 and 0xF7 as a tuple
    A note-on with velocity 0 is a "note_off" with value 0.
    """
    kind: str
    channel: int
    number: int
    value: Union[int, tuple]


class MidiParser:
    """Byte-stream MIDI parser with running status, SysEx and garbage counting.

    ``invalid`` counts the garbage seen so far (see the module docstring).
    Memory is fixed at construction (one ``SYSEX_MAX`` buffer).
    """

    def __init__(self):
        self.invalid = 0
        self._sysex = bytearray(SYSEX_MAX)
        self.reset()

    def reset(self) -> None:
        """Forget any partial message and the running status (e.g. after a reconnect);
        not counted as invalid."""
        self._status = 0        # running status, or the system common being read; 0 = none
        self._need = 0          # data bytes the current status takes
        self._have = 0          # data bytes collected so far (0 or 1)
        self._d0 = 0            # first data byte
        self._pending = False   # a message has begun (status or first data byte) and is incomplete
        self._sx_len = -1       # payload bytes stored; -1 = no SysEx open
        self._sx_over = False   # the open SysEx passed SYSEX_MAX

    @property
    def in_sysex(self) -> bool:
        """True while a SysEx is open (0xF0 seen, no end yet)."""
        return self._sx_len >= 0

    def feed(self, data) -> list[Event]:
        """Parse raw bytes (bytes, bytearray or a list of ints); returns the complete
        messages in order. Never raises on bad input."""
        out: list[Event] = []
        for b in data:
            if type(b) is not int or b < 0 or b > 0xFF:
                self.invalid += 1
                continue
            if b >= 0xF8:                       # real-time: anywhere, disturbs nothing
                if b == 0xFD:
                    self.invalid += 1
                continue
            if self._sx_len >= 0:               # inside a SysEx
                if b < 0x80:
                    if self._sx_len < SYSEX_MAX:
                        self._sysex[self._sx_len] = b
                        self._sx_len += 1
                    else:
                        self._sx_over = True
                    continue
                n = self._sx_len
                self._sx_len = -1
                if b == 0xF7:
                    if self._sx_over:
                        self.invalid += 1
                    else:
                        out.append(Event("sysex", 0, 0, tuple(self._sysex[:n])))
                    continue
                self.invalid += 1               # unterminated: ends here, b starts anew
            if b < 0x80:
                self._data(b, out)
                continue
            # a status byte 0x80..0xF7
            if self._pending:                   # truncated message
                self.invalid += 1
            self._have = 0
            self._pending = False
            if b < 0xF0:
                self._status = b
                self._need = _CHANNEL_LEN[b & 0xF0]
                self._pending = True
                continue
            self._status = 0                    # system common cancels running status
            self._need = 0
            if b == 0xF0:
                self._sx_len = 0
                self._sx_over = False
            elif b in _COMMON_LEN:
                if _COMMON_LEN[b]:
                    self._status = b
                    self._need = _COMMON_LEN[b]
                    self._pending = True
            else:                               # 0xF4, 0xF5, stray 0xF7
                self.invalid += 1
        return out

    def _data(self, b: int, out: list) -> None:
        if self._need == 0:                     # no status to belong to
            self.invalid += 1
            return
        if self._have == 0 and self._need == 2:
            self._d0 = b
            self._have = 1
            self._pending = True
            return
        status = self._status
        d0, d1 = (b, 0) if self._need == 1 else (self._d0, b)
        self._have = 0
        self._pending = False
        if status >= 0xF0:                      # system common: consumed, no running status
            self._status = 0
            self._need = 0
            return
        kind = status & 0xF0
        ch = (status & 0x0F) + 1
        if kind == 0xB0:
            out.append(Event("cc", ch, d0, d1))
        elif kind == 0x90:
            out.append(Event("note_on" if d1 else "note_off", ch, d0, d1))
        elif kind == 0x80:
            out.append(Event("note_off", ch, d0, d1))
        elif kind == 0xE0:
            out.append(Event("pitchbend", ch, 0, d0 | (d1 << 7)))
        elif kind == 0xA0:
            out.append(Event("aftertouch", ch, d0, d1))
        elif kind == 0xC0:
            out.append(Event("program", ch, 0, d0))
        else:
            out.append(Event("pressure", ch, 0, d0))


class Cc14:
    """Pairs 14-bit controllers (MSB CC 0-31, LSB CC 32-63 = MSB + 32) into "cc14" events.

    Only the (channel, MSB number) pairs given are combined, because plenty of
    controllers use CC 32-63 for unrelated buttons (the nanoKONTROL2's S buttons
    are CC 32-39): build it from ``Mapping.cc14_pairs``. ``feed(event)`` returns:

    - for an MSB: ``Event("cc14", channel, msb, msb_value << 7)`` at once. Following
      the MIDI 1.0 specification, a new MSB resets the LSB to 0, so a device that
      only sends MSBs still moves the control, in steps of 128;
    - for an LSB: ``Event("cc14", channel, msb, (last_msb << 7) | lsb)``, so MSB then
      LSB ends at the full 14-bit value, and an LSB alone refines the last MSB;
    - ``None`` for an LSB before any MSB on that controller (the high bits are
      unknown: jumping to 0..127 of 16383 would slam the control to the bottom);
      counted in ``orphans``;
    - any other event unchanged.

    Control thread, one instance per port.
    """

    def __init__(self, pairs=()):
        self._pairs = frozenset((int(c), int(n)) for c, n in pairs)
        for c, n in self._pairs:
            if not (1 <= c <= 16 and 0 <= n <= 31):
                raise ValueError(f"14-bit CC pair (channel {c}, CC {n}): "
                                 "channel 1-16 and MSB CC 0-31")
        self._msb: dict[tuple[int, int], int] = {}
        self.orphans = 0

    def reset(self) -> None:
        """Forget the last MSBs (after a reconnect)."""
        self._msb.clear()

    def feed(self, event: Event):
        if event.kind != "cc" or event.number > 63:
            return event
        ch, n = event.channel, event.number
        if n < 32:
            if (ch, n) not in self._pairs:
                return event
            self._msb[(ch, n)] = event.value
            return Event("cc14", ch, n, event.value << 7)
        if (ch, n - 32) not in self._pairs:
            return event
        msb = self._msb.get((ch, n - 32))
        if msb is None:
            self.orphans += 1
            return None
        return Event("cc14", ch, n - 32, (msb << 7) | event.value)


def encode(kind: str, channel: int, number: int, value) -> list[int]:
    """An event -> the bytes to send (for feedback: LEDs, motor faders).

    kind "cc", "note_on", "note_off", "pitchbend" (value 0..16383, LSB first),
    "cc14" (two messages: MSB then LSB), "pressure", "program", "sysex" (value
    the payload). Raises ValueError for out-of-range numbers: a programming
    error, not bad input from a device.
    """
    def check(name, v, hi):
        if type(v) is not int or not 0 <= v <= hi:
            raise ValueError(f"{kind}: {name} {v!r} is outside 0..{hi}")
    if kind == "sysex":
        payload = list(value)
        for b in payload:
            check("SysEx byte", b, 127)
        return [0xF0, *payload, 0xF7]
    if type(channel) is not int or not 1 <= channel <= 16:
        raise ValueError(f"{kind}: channel {channel!r} is outside 1..16")
    c = channel - 1
    if kind == "cc":
        check("number", number, 127)
        check("value", value, 127)
        return [0xB0 | c, number, value]
    if kind in ("note_on", "note_off"):
        check("number", number, 127)
        check("velocity", value, 127)
        return [(0x90 if kind == "note_on" else 0x80) | c, number, value]
    if kind == "pitchbend":
        check("value", value, 16383)
        return [0xE0 | c, value & 0x7F, value >> 7]
    if kind == "cc14":
        check("number", number, 31)
        check("value", value, 16383)
        return [0xB0 | c, number, value >> 7, 0xB0 | c, number + 32, value & 0x7F]
    if kind == "pressure":
        check("value", value, 127)
        return [0xD0 | c, value]
    if kind == "program":
        check("value", value, 127)
        return [0xC0 | c, value]
    raise ValueError(f"cannot encode MIDI event kind {kind!r}")
