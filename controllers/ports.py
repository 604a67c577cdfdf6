"""MIDI ports: open by name, virtual ports, polling, and hot-plug.

python-rtmidi reads the ports; livemix never sets a Python callback on an
input: with the JACK API that callback would run inside JACK's process cycle,
where slow work was measured to lose most of a flood and to xrun the whole
graph, audio included. ``InputPort.poll()`` drains rtmidi's queue from a
control thread instead.

Hot-plug: RtMidi sends no plug events, so ``InputPort.check()`` (call it
about twice a second) looks for the port by name: when it has gone the port
reports ``connected = False`` and mixing goes on; when a port of that name is
back it is reopened. Control thread only.
"""
from __future__ import annotations

import time

import rtmidi

from engine.devices import quiet_stderr
from engine.errors import LivemixError

QUEUE_LIMIT = 4096          # messages rtmidi may hold between two polls


class PortError(LivemixError):
    """A MIDI port that cannot be opened (the message lists the ports there are)."""


def _api_for(api: str):
    apis = {rtmidi.get_api_name(a): a for a in rtmidi.get_compiled_api()}
    if api == "auto":
        return None
    if api not in apis:
        raise PortError(f"--midi-api {api}: not available (compiled: {', '.join(apis)})")
    return apis[api]


def _usable_apis(api: str):
    """The rtmidi APIs to try, in order: the asked one, or every compiled one."""
    chosen = _api_for(api)
    if chosen is not None:
        return [chosen]
    order = [rtmidi.API_UNIX_JACK, rtmidi.API_LINUX_ALSA, rtmidi.API_MACOSX_CORE,
             rtmidi.API_WINDOWS_MM]
    compiled = rtmidi.get_compiled_api()
    return [a for a in order if a in compiled]


def _client(cls, api, name):
    try:
        with quiet_stderr():
            return cls(api, name=name, queue_size_limit=QUEUE_LIMIT) \
                if cls is rtmidi.MidiIn else cls(api, name=name)
    except (rtmidi.SystemError, SystemError, rtmidi.RtMidiError):
        return None


def list_ports(api: str = "auto", output: bool = False) -> list[str]:
    """Port names of every usable API (inputs, or outputs)."""
    names = []
    for a in _usable_apis(api):
        c = _client(rtmidi.MidiOut if output else rtmidi.MidiIn, a, "livemix-probe")
        if c is not None:
            names += c.get_ports()
            c.delete()
    return names


class InputPort:
    """One MIDI input, opened by a substring of its name or as a virtual port."""

    def __init__(self, name: str, virtual: bool = False, api: str = "auto",
                 client_name: str = "livemix"):
        self.name = name
        self.virtual = virtual
        self.api = api
        self.client_name = client_name
        self.connected = False
        self.port_name: str | None = None
        self.reconnects = 0
        self._in = None
        self._api_used = None
        self._probe = None
        self.open()

    def open(self) -> None:
        """Open the port; PortError naming the ports there are when none matches."""
        if self.virtual:
            for a in _usable_apis(self.api):
                c = _client(rtmidi.MidiIn, a, self.client_name)
                if c is None:
                    continue
                c.open_virtual_port(self.name)
                self._setup(c, a, f"{self.client_name}:{self.name}")
                return
            raise PortError(f"--midi-virtual {self.name}: no MIDI system to create a virtual "
                            "port on (is a JACK server or ALSA sequencer running?)")
        if not self._try_open():
            ports = list_ports(self.api)
            raise PortError(f"--midi {self.name!r}: no MIDI input matches (inputs: "
                            f"{', '.join(repr(p) for p in ports) or 'none'})")

    def _try_open(self) -> bool:
        for a in _usable_apis(self.api):
            c = _client(rtmidi.MidiIn, a, self.client_name)
            if c is None:
                continue
            for i, p in enumerate(c.get_ports()):
                if self.name.lower() in p.lower():
                    c.open_port(i, name="in")
                    self._setup(c, a, p)
                    return True
            c.delete()
        return False

    def _setup(self, c, api, port_name):
        c.ignore_types(sysex=False, timing=True, active_sense=True)
        self._in = c
        self._api_used = api
        self.port_name = port_name
        self.connected = True

    def poll(self, limit: int = 100000) -> list:
        """Every message waiting, as lists of ints (control thread). Never blocks."""
        out = []
        if self._in is None:
            return out
        get = self._in.get_message
        for _ in range(limit):
            m = get()
            if m is None:
                break
            out.append(m[0])
        return out

    def _ports_now(self) -> list[str]:
        """Port names seen by one long-lived probe client (creating a JACK client for
        every check would make JACK reorder its graph twice a second)."""
        if self._probe is None:
            self._probe = _client(rtmidi.MidiIn, self._api_used, f"{self.client_name}-watch")
        try:
            return self._probe.get_ports() if self._probe is not None else []
        except Exception:
            return []

    def check(self) -> str | None:
        """Hot-plug: returns "gone" or "back" when the state changed, else None."""
        if self.virtual:
            return None
        present = self.port_name in self._ports_now() if self.port_name else False
        if self.connected and not present:
            self.connected = False
            self._close()
            return "gone"
        if not self.connected and self.port_name in self._ports_now() and self._try_open():
            self.reconnects += 1
            return "back"
        return None

    def _close(self) -> None:
        if self._in is not None:
            try:
                self._in.close_port()
                self._in.delete()
            except Exception:
                pass
            self._in = None

    def close(self) -> None:
        self._close()
        self.connected = False
        if self._probe is not None:
            self._probe.delete()
            self._probe = None


class OutputPort:
    """Feedback to a controller: the output port whose name matches, if any."""

    def __init__(self, name: str, api: str = "auto", client_name: str = "livemix"):
        self._out = None
        for a in _usable_apis(api):
            c = _client(rtmidi.MidiOut, a, client_name)
            if c is None:
                continue
            for i, p in enumerate(c.get_ports()):
                if name.lower() in p.lower():
                    c.open_port(i, name="feedback")
                    self._out = c
                    return
            c.delete()

    @property
    def available(self) -> bool:
        return self._out is not None

    def send(self, msg) -> bool:
        if self._out is None:
            return False
        try:
            self._out.send_message(msg)
            return True
        except Exception:
            return False

    def close(self) -> None:
        if self._out is not None:
            self._out.delete()
            self._out = None


def wait_for_port(name: str, timeout: float = 5.0, api: str = "auto", output: bool = True):
    """Poll until a port containing ``name`` exists (tests and the virtual controller)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in list_ports(api, output=output):
            if name in p:
                return p
        time.sleep(0.05)
    return None
