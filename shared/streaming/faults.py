"""Crash points for the fault-injection tests.

``STANCESTREAM_FAULT_KILL=<point>[:<n>]`` makes the process ``kill -9`` itself the n-th time (default 1st) it
passes ``fault_point(<point>)``. Signals can land anywhere; these points let a test crash the worker exactly
between the steps whose order the delivery guarantee depends on (classified / inserted / published / acked).
Unset, a point costs one string comparison.
"""

from __future__ import annotations

import os
import signal

_point, _, _nth = os.environ.get("STANCESTREAM_FAULT_KILL", "").partition(":")
_remaining = int(_nth or 1)

#: The points the worker passes, in order, for every batch.
POINTS = ("before_insert", "after_insert", "during_publish", "before_ack")


def fault_point(name: str) -> None:
    global _remaining
    if name != _point:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
