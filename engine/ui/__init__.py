"""Live displays of the engine: the rich meter bridge (`--ui tui`), the plain
status line (`--ui plain`) and the `--stats-json` writer.

All of them read one dict, ``LiveEngine.snapshot()`` (values may be None, or -inf
in dB, when unknown):

    {"time_s": float, "frame": int,
     "tracks": [{"name", "gain_db" (dB, -inf ok), "pan" (-1..1), "mute", "solo",
                 "peak_dbfs" (post-fader sample peak since the previous snapshot),
                 "tp_dbtp" (the file's true peak, max since start, measured by the
                            reader as it decodes: up to the read-ahead early; -inf
                            for live inputs),
                 "duck_gr_db" (ducking gain reduction now, <= 0),
                 "gate_open" (the strip's gate open now; None without a gate),
                 "gate_gr_db" (the gate's deepest attenuation since the previous
                               snapshot, dB <= 0; None without a gate),
                 "comp_gr_db" (the compressor's largest gain reduction since the
                               previous snapshot, dB <= 0; None without one)}, ...],
     "master": {"gain_db", "peak_dbfs", "peak_l_dbfs", "peak_r_dbfs" (since the previous
                snapshot), "true_peak_dbtp", "sample_peak_max_dbfs" (max since start),
                "momentary_lufs", "short_term_lufs", "integrated_lufs", "lra_lu",
                "momentary_max_lufs", "short_term_max_lufs", "ceiling_db",
                "ceiling_mode" ("sample-peak" | "true-peak"), "ceiling_hits" (int),
                "target": None | {"name", "lufs", "true_peak_dbtp"}},
     "engine": {"backend", "device", "load", "load_max" (fractions of the period),
                "xruns", "dropped_frames", "underruns", "latency_ms" (or None),
                "recording", "take" (or None), "take_s", "take_bytes", "device_lost"},
     "controller": None | {"port", "connected", "last"}}

`engine.ui.plain` needs only the standard library; `MeterBridge` and `render`
(in `engine.ui.bridge`) import rich, loaded on first use.
"""
from .plain import StatsJson, controller_info, plain_line, with_controller

__all__ = ["MeterBridge", "PeakHolds", "StatsJson", "controller_info", "plain_line",
           "render", "with_controller"]


def __getattr__(name):
    if name in ("MeterBridge", "PeakHolds", "render"):
        from . import bridge
        return getattr(bridge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
