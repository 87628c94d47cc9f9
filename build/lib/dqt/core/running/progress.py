"""Progress displays for long runs: a tqdm bar on a terminal, plain lines in a log.

`Progress` is a training run's (env steps / total, eval success, env steps/s, updates/s,
ETA); `sweeps.launch.SweepProgress` a sweep's.  Both draw through `StatusBar`, which is a
tqdm bar when its stream is a terminal and nothing otherwise (the caller then prints its
plain line), so a log holds whole lines, never carriage returns or escape codes.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TextIO

from tqdm import tqdm


def duration(seconds: float) -> str:
    """``1h05m``, ``4m10s``, ``9s``; ``?`` for an unknown (NaN or infinite) duration."""
    if not math.isfinite(seconds):
        return "?"
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _has_size(stream: TextIO) -> bool:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return size.columns > 0 and size.lines > 0


class _Tqdm(tqdm):
    # No monitor thread: every redraw is asked for by the caller, and the trainer forks agents.
    monitor_interval = 0


class StatusBar:
    """A tqdm bar on `stream` when it is a terminal; `active` is False (and every call a no-op) otherwise.

    The caller owns the numbers: `show(n, postfix)` redraws the bar at ``n`` of ``total`` with
    `postfix` after it, `event(text)` prints a line above the bar, which is drawn again below it.
    """

    def __init__(self, stream: TextIO, total: int, desc: str, bar_format: str, initial: int = 0):
        self.stream = stream
        self.bar: tqdm | None = None
        if is_tty(stream):
            # Follow the terminal's width; one that reports no size (a bare pty) would hide the bar.
            shape = {"dynamic_ncols": True} if _has_size(stream) else {"ncols": 120, "nrows": 24}
            self.bar = _Tqdm(total=total, initial=initial, desc=desc, file=stream, bar_format=bar_format,
                             mininterval=0, leave=True, **shape)

    @property
    def active(self) -> bool:
        return self.bar is not None

    def show(self, n: int, postfix: str, desc: str | None = None) -> None:
        if self.bar is None:
            return
        self.bar.n = min(n, self.bar.total) if self.bar.total else n  # past the total, tqdm drops it
        if desc is not None:
            self.bar.set_description_str(desc, refresh=False)
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.refresh()

    def event(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Progress:
    """A training run's progress: a tqdm bar on a terminal (redrawn at most every 0.5 s);
    otherwise a plain line every `every_s` seconds (logs)::

        steps 12,000/300,000 (4%) | eval success 0.30 | 850 env steps/s | 420.5 updates/s | ETA 5m38s
    """

    BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| [{elapsed}{postfix}]"

    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None, every_s: float = 10.0):
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.bar = StatusBar(self.stream, total, f"steps 0/{total:,}", self.BAR_FORMAT) if enabled else None
        self.tty = self.bar is not None and self.bar.active
        self.every_s = 0.5 if self.tty else every_s
        self.last = -math.inf

    def update(self, steps: int, env_sps: float, ups: float, success: float | None, force: bool = False) -> None:
        if self.bar is None:
            return
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        eta = (self.total - steps) / env_sps if env_sps > 0 else math.inf
        succ = "-" if success is None else f"{success:.2f}"
        stats = f"eval success {succ} | {env_sps:,.0f} env steps/s | {ups:,.1f} updates/s"
        if self.tty:  # the ETA first: a narrow terminal cuts the line's end
            self.bar.show(steps, f"ETA {duration(eta)} | {stats}", desc=f"steps {steps:,}/{self.total:,}")
            return
        self.stream.write(f"steps {steps:,}/{self.total:,} ({100 * steps / max(self.total, 1):.0f}%) | {stats} | "
                          f"ETA {duration(eta)}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
