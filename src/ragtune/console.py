"""How much a command prints: `quiet` (warnings, errors and the closing summary), `normal` (one progress
bar per stage and a line per event), `verbose` (also the libraries' own logs and the Trainer's raw lines)."""

from __future__ import annotations

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
