"""Write docs/config.md from the typed config: every section, key, default, flag and help line.

`make docs` runs it; tests/test_docs.py fails when docs/config.md differs from what this prints.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ragtune import config as cfg
from ragtune.cli import build_parser

PAGE = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def flags_by_field() -> dict[str, tuple[str, list[str]]]:
    """'section.key' -> (its flag, the commands that take it), read off the CLI's own parser."""
    found: dict[str, tuple[str, list[str]]] = {}
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    for command, parser in subparsers.choices.items():
        nested = [a for a in parser._actions if a.dest == "feast_command"]
        parsers = [(command, parser)] + [(f"{command} {n}", p) for a in nested for n, p in a.choices.items()]
        for name, each in parsers:
            for action in each._actions:
                if "." in action.dest and action.option_strings:
                    flag, commands = found.setdefault(action.dest, (action.option_strings[0], []))
                    commands.append(name)
    return found


def reference() -> str:
    lines = [
        "# Config reference",
        "",
        "Generated from `src/ragtune/config.py` by `make docs`; do not edit by hand. A YAML file given to",
        "`--config` holds any of these sections; flags override it; every run writes the whole config",
        "beside its outputs as `config.yaml`.",
    ]
    defaults, flags = cfg.Config(), flags_by_field()
    for section, kind in cfg.SECTIONS.items():
        lines += ["", f"## `{section}`", "", "| key | default | flag (commands) | meaning |", "|---|---|---|---|"]
        for f in dataclasses.fields(kind):
            default = getattr(getattr(defaults, section), f.name)
            shown = "(a prompt: see `--help`)" if isinstance(default, str) and len(default) > 40 else f"`{default!r}`"
            flag, commands = flags.get(f"{section}.{f.name}", ("", []))
            flag = f"`{flag}` ({', '.join(commands)})" if commands else "YAML only"
            meaning = f.metadata["help"].replace("|", "\\|")
            lines.append(f"| `{f.name}` | {shown} | {flag} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(0 if PAGE.read_text(encoding="utf-8") == reference() else 1)
    PAGE.write_text(reference(), encoding="utf-8")
    print(f"wrote {PAGE}")
