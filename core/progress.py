"""A one-line progress display for long runs: steps / total, success, speeds, ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_eta(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """Redraws in place on a terminal; prints a line every `every_s` seconds otherwise (logs)."""

    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None, every_s: float = 10.0):
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = 0.5 if self.tty else every_s
        self.last = 0.0

    def update(self, steps: int, env_sps: float, ups: float, success: float | None, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < self.every_s):
            return
        self.last = now
        eta = (self.total - steps) / env_sps if env_sps > 0 else float("inf")
        succ = "-" if success is None else f"{success:.2f}"
        line = (f"steps {steps:,}/{self.total:,} ({100 * steps / max(self.total, 1):.0f}%) | eval success {succ} | "
                f"{env_sps:,.0f} env steps/s | {ups:,.1f} updates/s | ETA {format_eta(eta)}")
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
