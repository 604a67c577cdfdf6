"""Soft takeover ("pickup") for absolute controls whose position may not match the engine.

A fader or knob that is not where the engine's value is (after a session load,
a change from the API or another controller, a reconnect, a bank switch) must
not make the value jump when it is first touched. ``SoftTakeover`` decides,
value by value, whether the controller has "picked up" the engine value. The
rules are Mixxx's (see /work/shared/reference/controllers.md); values are
normalised to 0..1 (fader position: ``controllers.taper.db_to_position`` for
gains, (pan + 1) / 2 for pan), times are seconds on a monotonic clock:

accept the new controller value when

1. **sweep**: it arrives within ``WINDOW_S`` (50 ms) of the last accepted value
   (a fast move that has already taken over keeps control), or
2. **near**: it is within ``THRESHOLD`` (3/128) of the engine value, or
3. **crossing**: the previous and the new controller values lie on opposite
   sides of the engine value (the fader passed through it between two messages), or
4. **came from near**: the previous controller value was within ``THRESHOLD`` of the
   engine value (after a pickup the engine follows the fader, so the
   previous value is where the engine is and later moves are accepted);

otherwise ignore it. "Within" includes the boundary (``<=``).

``arm()`` forgets the previous value and the last acceptance, so the next
value has no "previous": it is accepted only by rule 2. A new ``SoftTakeover``
starts armed. The previous controller value is updated by every call, accepted
or not (so a crossing is seen even if the values before it were ignored).

One instance per absolute binding; control thread only.
"""
from __future__ import annotations

#: Values arriving this soon after the last accepted one are accepted (s).
WINDOW_S = 0.050
#: Distance from the engine value that counts as "there" (normalised units).
THRESHOLD = 3.0 / 128.0
#: Why a takeover is re-armed (the caller says which; kept for diagnostics).
ARM_REASONS = ("session_load", "external_change", "reconnect", "bank_switch")


class SoftTakeover:
    """Pickup state of one absolute control. See the module docstring for the rules."""

    __slots__ = ("_prev", "_last_accept", "armed_reason")

    def __init__(self):
        self._prev = None           # previous controller value (0..1), None when armed
        self._last_accept = None    # time of the last accepted value (s), None when armed
        self.armed_reason = "session_load"

    def arm(self, reason: str = "external_change") -> None:
        """Stop trusting the controller until it picks the engine value up again.

        Call after a session load, when the value is changed from elsewhere (API,
        another controller, automation), after a reconnect and after a bank switch.
        """
        if reason not in ARM_REASONS:
            raise ValueError(f"unknown soft takeover arm reason {reason!r} "
                             f"(use {', '.join(ARM_REASONS)})")
        self._prev = None
        self._last_accept = None
        self.armed_reason = reason

    @property
    def armed(self) -> bool:
        """True when no value has arrived since (re)arming."""
        return self._prev is None

    def accept(self, new_value: float, engine_value: float, now: float) -> bool:
        """Should ``new_value`` (controller, 0..1) replace ``engine_value`` (0..1) at
        time ``now`` (s)? Updates the state; True means apply it."""
        prev = self._prev
        self._prev = new_value
        last = self._last_accept
        ok = ((last is not None and 0.0 <= now - last <= WINDOW_S)
              or abs(new_value - engine_value) <= THRESHOLD
              or (prev is not None
                  and (abs(prev - engine_value) <= THRESHOLD
                       or (prev - engine_value) * (new_value - engine_value) < 0.0)))
        if ok:
            self._last_accept = now
        return ok
