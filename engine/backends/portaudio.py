"""The PortAudio device: a stream whose callback is the ``@cfunc`` (audio child process).

``open_stream`` runs in the supervised audio child (``engine.backends.child``)
after it has warmed up: it picks the device, opens a stream with the numba
callback and starts it. sounddevice still does device discovery, host-API
selection, defaults and error texts; its private ``_StreamBase`` takes a C
function pointer as the callback (pinned, guarded by
tests/test_sounddevice_binding.py).
"""
from __future__ import annotations

from ..errors import LivemixError


class NoOutputDevice(LivemixError):
    """PortAudio lists no output device (the caller may fall back to virtual)."""


def _find_device(sd, name: str | None):
    devices = sd.query_devices()
    outs = [(i, d) for i, d in enumerate(devices) if d["max_output_channels"] > 0]
    if not outs:
        raise NoOutputDevice("no audio output device found")
    if name is None:
        i = sd.default.device[1]
        if i is None or i < 0:
            i = outs[0][0]
        return i, devices[i]
    for i, d in outs:
        if name.lower() in d["name"].lower():
            return i, d
    listing = "; ".join(f"{d['name']!r}" for _, d in outs)
    raise LivemixError(f"--device {name!r}: no output device matches (devices: {listing})")


_client_name_buffer = None


def _set_jack_client_name(name: str) -> None:
    """PaJack_SetClientName, which must run before PortAudio initialises (before
    sounddevice is imported). sounddevice does not bind it; the library is the same."""
    import ctypes
    import ctypes.util
    lib = ctypes.util.find_library("portaudio")
    if not name or not lib:
        return
    global _client_name_buffer
    _client_name_buffer = ctypes.create_string_buffer(name.encode())  # PortAudio keeps the pointer
    try:
        ctypes.CDLL(lib).PaJack_SetClientName(_client_name_buffer)
    except (OSError, AttributeError):
        pass   # a PortAudio built without JACK


class PortAudioStream:
    """The running stream; ``info`` describes it for the parent. Audio child's main thread."""

    def __init__(self, stream, info: dict):
        self.stream = stream
        self.info = info

    def stop(self) -> None:
        self.stream.stop()
        self.stream.close()


def open_stream(opts, table) -> PortAudioStream:
    """Open and start the stream with ``pa_callback`` on ``table``'s state. Raises
    NoOutputDevice / LivemixError (one line). Audio child, once warm."""
    from ..rt.callback import pa_callback
    _set_jack_client_name(opts.client_name)
    import sounddevice as sd
    index, dev = _find_device(sd, opts.device)
    if opts.input_channels > dev["max_input_channels"]:
        raise LivemixError(
            f"the session uses input channel {opts.input_channels} but {dev['name']!r} "
            f"has {dev['max_input_channels']} inputs")
    kind = "duplex" if opts.input_channels else "output"
    channels = (opts.input_channels, opts.channels) if opts.input_channels else opts.channels
    device = (index, index) if opts.input_channels else index
    stream = sd._StreamBase(kind=kind, samplerate=opts.samplerate, blocksize=opts.blocksize,
                            device=device, channels=channels, dtype="float32",
                            latency="low", callback=pa_callback.address,
                            userdata=sd._ffi.cast("void*", table.user),
                            wrap_callback=None)
    stream.start()
    hostapi = sd.query_hostapis(dev["hostapi"])["name"]
    latency = stream.latency[1] if isinstance(stream.latency, tuple) else stream.latency
    return PortAudioStream(stream, {"device": dev["name"], "hostapi": hostapi,
                                    "latency_s": float(latency),
                                    "samplerate": stream.samplerate,
                                    "blocksize": opts.blocksize})
