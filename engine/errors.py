"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class LivemixError(Exception):
    """A user-facing error: the message names the file, key, track or port at fault."""

    exit_code = 2


class SessionError(LivemixError):
    """A session file that cannot be used."""


class SourceError(LivemixError):
    """An audio source that cannot be read."""
