"""Single-producer single-consumer rings on preallocated arrays.

Counters are monotonic int64 frame counts; a slot is ``count & (size - 1)``
(sizes are powers of two). The producer writes the data first and publishes
the new write counter after; the consumer reads the counter, then the data.

Source rings carry a track's signal in session time. The audio thread's read
counter always advances by the frames it played, even when the ring ran dry
(an underrun plays silence), so the track stays time-aligned: frames that
arrive late are skipped, never played late.
"""
from ..dsp.jit import rt_kernel

from ..dsp.layout import S_EOF, S_READ, S_UNDERRUNS, S_WRITE
from ..dsp.vec import copy, fill


@rt_kernel
def ring_pull(ring, pos, dst, n):
    """Consume n frames of a (2, size) source ring into dst[:, :n]. Audio thread.

    Frames at or after the track's end (``pos[S_EOF]`` >= 0) are silence;
    frames not yet written are silence and count one underrun per call.
    """
    size = ring.shape[1]
    mask = size - 1
    r = pos[S_READ]
    avail = pos[S_WRITE] - r
    if avail < 0:
        avail = 0
    need = n
    eof = pos[S_EOF]
    if eof >= 0:
        left = eof - r
        if left < need:
            need = left if left > 0 else 0
    valid = avail if avail < need else need
    if valid < need:
        pos[S_UNDERRUNS] += 1
    start = r & mask
    first = valid if valid < size - start else size - start
    for c in range(2):
        copy(dst[c], 0, ring[c], start, first)
        copy(dst[c], first, ring[c], 0, valid - first)
        fill(dst[c], valid, n, 0.0)
    pos[S_READ] = r + n


def ring_push(ring, pos, frames):
    """Append frames (k, 2) float32 to a source ring; returns how many fit. Producer thread.

    Never blocks; writes at most ``size - (write - read)`` frames.
    """
    size = ring.shape[1]
    used = int(pos[S_WRITE]) - int(pos[S_READ])
    free = size - max(used, 0)
    k = min(len(frames), free)
    if k <= 0:
        return 0
    w = int(pos[S_WRITE])
    start = w & (size - 1)
    first = min(k, size - start)
    ring[:, start:start + first] = frames[:first].T
    if k > first:
        ring[:, :k - first] = frames[first:k].T
    pos[S_WRITE] = w + k   # publish after the data
    return k


def ring_space(pos, size):
    """Frames a producer may write now."""
    return size - max(int(pos[S_WRITE]) - int(pos[S_READ]), 0)


def command_push(cmd_ring, cmd_idx, frame, param, target, value):
    """Queue one command for the audio thread; False when the queue is full. Control thread.

    frame: absolute session frame (-1 = as soon as possible); commands with a
    frame must be pushed in non-decreasing frame order.
    """
    cap = cmd_ring.shape[0]
    w = int(cmd_idx[0])
    if w - int(cmd_idx[1]) >= cap:
        return False
    row = cmd_ring[w & (cap - 1)]
    row[0] = frame
    row[1] = param
    row[2] = target
    row[3] = value
    cmd_idx[0] = w + 1   # publish after the data
    return True
