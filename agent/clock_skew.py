"""This computer's clock against a storage server's (pure helpers, no I/O).

An S3 server stamps every answer with a `Date` header. A server clock that disagrees
with ours is a real risk: AWS S3 refuses every request signed more than 15 minutes
off (RequestTimeTooSkewed), and a lenient server accepts them while retention counts
its periods back from our wrong "now", which could forget a snapshot early. So the S3
backend measures the gap on every answer, `prune` refuses beyond CLOCK_SKEW_LIMIT, and
other commands warn.
"""

from __future__ import annotations

import datetime as _dt

# NTP keeps a server within milliseconds; a `Date` header has a resolution of a second
# and an answer can take seconds to arrive. Two minutes is far beyond both, and far
# below anything that moves a retention boundary in a way that matters.
CLOCK_SKEW_LIMIT = _dt.timedelta(minutes=2)
CLOCK_SKEW_HINT = ("set the time right and keep it synchronised: `timedatectl status` must say \"System "
                   "clock synchronized: yes\" (enable NTP with `timedatectl set-ntp true`, or chrony)")


def skew_from_date(server_date: _dt.datetime, sent: _dt.datetime, received: _dt.datetime) -> _dt.timedelta:
    """The server's clock minus ours, from one answer's `Date` (whole seconds) and our
    times before sending and after receiving: zero while the server's time falls in
    that window (give or take the header's one-second resolution)."""
    if server_date < sent - _dt.timedelta(seconds=1):
        return server_date - sent + _dt.timedelta(seconds=1)
    if server_date > received:
        return server_date - received
    return _dt.timedelta(0)


def describe_skew(skew: _dt.timedelta) -> str:
    """"this computer's clock is 20 minutes behind the S3 server's" (skew = server - here)."""
    seconds = abs(skew.total_seconds())
    amount = f"{round(seconds / 60)} minutes" if seconds >= 90 else f"{round(seconds)} seconds"
    side = "behind" if skew > _dt.timedelta(0) else "ahead of"
    return f"this computer's clock is {amount} {side} the storage server's"
