"""How much a command prints: `quiet` (warnings, errors and the closing summary), `normal` (one progress
bar per stage and a line per event), `verbose` (also the libraries' own logs and the Trainer's raw lines)."""

from __future__ import annotations

import contextlib
import sys
import threading
import time

LEVELS = ("quiet", "normal", "verbose")
level = "normal"


def set_level(name: str) -> None:
    global level
    import transformers

    level = name
    verbosity = transformers.utils.logging.INFO if name == "verbose" else transformers.utils.logging.ERROR
    transformers.utils.logging.set_verbosity(verbosity)


def bars() -> bool:
    return level != "quiet"


class StageLine:
    """Progress where there is no terminal (CI, `| tee`, pod logs): one line when the stage ends, instead of
    a bar's `\\r` frames. Takes the calls ragtune makes on a tqdm bar."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.postfix: dict[str, str] = {}
        self.started = time.monotonic()
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfix = {k: str(v) for k, v in values.items()}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        after = ", ".join(f"{k} {v}" for k, v in self.postfix.items())
        line = f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}s in {time.monotonic() - self.started:.0f} s"
        print(line + (f" ({after})" if after else ""), file=sys.stderr, flush=True)

    def __enter__(self) -> StageLine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int, desc: str, unit: str, initial: int = 0, hidden: bool = False):
    """One bar per stage on a terminal; one line per stage elsewhere; nothing when `hidden` or quiet."""
    from tqdm.auto import tqdm

    if hidden or not bars():
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit)
    return StageLine(total, desc, unit, initial)


@contextlib.contextmanager
def waiting(what: str, after: float = 1.5):
    """On a terminal, say what a command waits for when it waits longer than `after` seconds (importing torch,
    starting Milvus Lite: ~10 s). Logs get no such lines: the stage lines say what took how long."""
    timer = threading.Timer(after, lambda: print(f"{what} ...", file=sys.stderr, flush=True))
    timer.daemon = True
    if level != "quiet" and sys.stderr.isatty():
        timer.start()
    try:
        yield
    finally:
        timer.cancel()
