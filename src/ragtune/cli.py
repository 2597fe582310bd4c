"""The `ragtune` command: a thin layer that builds the config and calls one stage."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import typing
import warnings
from pathlib import Path

from ragtune import api
from ragtune import config as cfg
from ragtune.errors import UserError

# Config fields each command exposes as flags ("section.*" for a whole section).
COMMAND_FIELDS = {
    "prepare": ["data.*", "model.*", "mining.*"],
    "evaluate": [
        "data.path",
        "data.max_text_chars",
        "model.device",
        "model.encode_batch_size",
        "model.cache_dir",
        "eval.*",
    ],
    "train": [
        "train.*",
        "model.name",
        "model.device",
        "model.encode_batch_size",
        "model.cache_dir",
        "mining.*",
    ],
    "demo": ["model.device", "model.cache_dir"],
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"ragtune: error: {message} (see: {self.prog} --help)\n")


def _add_config_flags(parser: argparse.ArgumentParser, patterns: list[str]) -> None:
    for pattern in patterns:
        section, name = pattern.split(".")
        for f in dataclasses.fields(cfg.SECTIONS[section]):
            if name not in ("*", f.name):
                continue
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            kind = cfg.field_type(section, f.name)
            kwargs: dict = {
                "dest": f"{section}.{f.name}",
                "default": argparse.SUPPRESS,
                "help": f.metadata["help"],
            }
            if typing.get_origin(kind) is list:
                kwargs.update(action="append", metavar=f.name.upper().rstrip("S"))
            elif kind is bool:
                kwargs.update(action=argparse.BooleanOptionalAction)
            else:
                kwargs.update(type=kind, metavar=kind.__name__.upper())
            parser.add_argument(flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ragtune", description="Make a RAG retriever measurably better on your own documents.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    helps = {
        "prepare": "training pairs with guarded hard negatives, and a held-out evaluation split",
        "evaluate": "nDCG@10, MRR@10, Recall@10/100, MAP@100 of models (and BM25) on a qrels split",
        "train": "fine-tune with sentence-transformers, re-mining hard negatives as the model learns",
        "demo": "the whole pipeline on the bundled SciFact data and model, under runs/demo",
    }
    for command, help_text in helps.items():
        p = sub.add_parser(command, help=help_text, description=help_text)
        p.add_argument("--config", type=Path, help="YAML config; flags override it")
        _add_config_flags(p, COMMAND_FIELDS[command])
        p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
        if command == "train":
            p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
            p.add_argument("--nproc", type=int, default=1, help="local processes: launches torchrun (DDP) for you")
            p.add_argument("--max-restarts", type=int, default=3, help="with --nproc: torchrun elastic restarts")
    board = sub.add_parser("tensorboard", help="serve a run's TensorBoard logs (127.0.0.1 unless --host)")
    board.add_argument("run", type=Path, help="run directory (holding tensorboard/) or a folder of runs")
    board.add_argument("--host", default="127.0.0.1", help="interface to bind; 0.0.0.0 exposes it to the network")
    board.add_argument("--port", type=int, default=6006)
    return parser


def _overrides(args: argparse.Namespace) -> dict:
    return {key: value for key, value in vars(args).items() if "." in key}


RUNNERS = {
    "prepare": lambda config, args: api.prepare(config, args.overwrite),
    "evaluate": lambda config, args: api.evaluate(config, args.overwrite),
    "train": lambda config, args: api.train(config, args.overwrite, args.resume),
    "demo": lambda config, args: api.demo(config),
}


def serve_tensorboard(run: Path, host: str, port: int) -> int:
    logdir = run / "tensorboard" if (run / "tensorboard").is_dir() else run
    if not logdir.is_dir():
        raise UserError(f"{run}: not found; pass a run directory written by `ragtune train`")
    print(f"TensorBoard for {logdir} on http://{host}:{port}/ (Ctrl-C to stop)")
    return subprocess.call([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host,
                            "--port", str(port)])  # fmt: skip


def _without_launcher_flags(argv: list[str]) -> list[str]:
    """The worker command: the same arguments minus --nproc and --max-restarts."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--nproc", "--max-restarts"):
            skip = True
        elif not arg.startswith(("--nproc=", "--max-restarts=")):
            kept.append(arg)
    return kept


def launch_workers(config: cfg.Config, args: argparse.Namespace, argv: list[str]) -> int:
    """Check what a user can get wrong here, once, before torchrun starts N workers that would each fail."""
    from ragtune.distributed import launch
    from ragtune.models import resolve_model
    from ragtune.train import Prepared

    Prepared.load(Path(config.train.prepared))
    resolve_model(config.model.name)
    code = launch(args.nproc, _without_launcher_flags(argv), args.max_restarts)
    if code != 0:
        print(f"ragtune: error: a training process failed (exit {code}) after {args.max_restarts} restart(s); "
              "its rank and traceback are in the torchrun log above", file=sys.stderr)  # fmt: skip
    return code


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    warnings.showwarning = _one_line_warning
    try:
        if args.command == "tensorboard":
            return serve_tensorboard(args.run, args.host, args.port)
        config = cfg.load(args.config, _overrides(args))
        if args.command == "train" and args.nproc > 1 and "RANK" not in os.environ:
            return launch_workers(config, args, argv)
        RUNNERS[args.command](config, args)
    except UserError as exc:
        print(f"ragtune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ragtune: interrupted; outputs were left as they were", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
