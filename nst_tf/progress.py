"""A dependency-free progress bar for long loops (optimisation, training, batches).

On a terminal it redraws one line in place; on a pipe or log file it prints a
line at every tenth of the work so CI logs stay short.
"""

import sys
import time


class ProgressBar:
    """Progress over ``total`` units of work, with optional named values.

    >>> bar = ProgressBar(300, "stylize")
    >>> for step in range(300):
    ...     bar.update(step + 1, loss=1.0)
    >>> bar.close()
    """

    def __init__(self, total, desc="", stream=None, enabled=True, width=28):
        self.total = max(int(total), 1)
        self.desc = desc
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.width = width
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1
        self._done = 0
        self._closed = False

    def update(self, done, **values):
        """Record that ``done`` units are complete and show ``values``."""
        self._done = min(int(done), self.total)
        if not self.enabled:
            return
        now = time.monotonic()
        if self._tty:
            if now - self._last_draw < 0.1 and self._done < self.total:
                return
            self._last_draw = now
            self.stream.write("\r" + self._line(now, values) + "\x1b[K")
        else:
            decile = self._done * 10 // self.total
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(self._line(now, values) + "\n")
        self.stream.flush()

    def close(self):
        if self.enabled and self._tty and not self._closed:
            self.stream.write("\n")
            self.stream.flush()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _line(self, now, values):
        frac = self._done / self.total
        filled = int(round(frac * self.width))
        elapsed = now - self._start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        parts = [
            f"{self.desc} " if self.desc else "",
            f"[{'#' * filled}{'.' * (self.width - filled)}] ",
            f"{self._done}/{self.total} ",
            f"{_clock(elapsed)}<{_clock(eta)}",
        ]
        parts += [f" {k}={_fmt(v)}" for k, v in values.items()]
        return "".join(parts)


def _clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def _fmt(value):
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)
