"""Reading what the audio thread publishes: the meter snapshot and the event log.

Both are single-writer structures in the engine state (see ``rt.block``):
the snapshot is guarded by a sequence counter (odd while being written), the
events by an SPSC ring. Control threads only; the audio thread never waits.
"""
from __future__ import annotations

from collections import namedtuple


from ..dsp.layout import EV_FRAME, EV_KIND, EV_VALUE, SN_FRAME, SN_SEQ

Snapshot = namedtuple("Snapshot", ["frame", "head", "tracks", "rules"])


def read_snapshot(st, tries: int = 1000) -> Snapshot:
    """A consistent copy of the latest snapshot (head, tracks, rules arrays).

    Retries while the audio thread is writing; after ``tries`` torn reads it
    returns the last copy (a meter frame, never anything the engine relies on)."""
    for _ in range(tries):
        seq = st.snap[SN_SEQ]
        head = st.snap.copy()
        tracks = st.snap_track.copy()
        rules = st.snap_rule.copy()
        if seq % 2 == 0 and st.snap[SN_SEQ] == seq:
            break
    return Snapshot(int(head[SN_FRAME]), head, tracks, rules)


def drain_events(st) -> list[tuple[int, int, float]]:
    """Take the logged events out of the ring: [(session frame, kind, value)]."""
    ring = st.ev_ring
    cap = ring.shape[0]
    r = int(st.ev_idx[1])
    w = int(st.ev_idx[0])
    out = []
    while r < w:
        row = ring[r & (cap - 1)]
        out.append((int(row[EV_FRAME]), int(row[EV_KIND]), float(row[EV_VALUE])))
        r += 1
    st.ev_idx[1] = r
    return out



