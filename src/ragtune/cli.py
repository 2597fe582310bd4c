"""The `ragtune` command: a thin layer that builds the config and calls one stage."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import typing
import warnings
from pathlib import Path

from ragtune import __version__, api
from ragtune import config as cfg
from ragtune.errors import UserError

# Each command's flags are the config fields its stage reads (config.STAGE_FIELDS).
COMMAND_FIELDS = dict(cfg.STAGE_FIELDS)
CLUSTER_FIELDS = ["kubeflow.backend", "kubeflow.kubeconfig", "kubeflow.namespace"]
# Kubeflow verbs: the TrainJob they act on (submit instead takes what `train` takes plus the job's shape).
JOB_COMMANDS = {
    "submit": "run `ragtune train` as a Kubeflow TrainJob (or --backend local: under torchrun here)",
    "jobs": "list TrainJobs",
    "status": "a TrainJob's status and nodes",
    "logs": "a TrainJob's log (rank 0 carries the evaluation lines)",
    "wait": "block until a TrainJob completes; exit 2 if it fails or times out",
    "delete": "delete a TrainJob",
}
COMMAND_FIELDS["submit"] = [*COMMAND_FIELDS["train"], "kubeflow.*"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"ragtune: error: {message} (see: {self.prog} --help)\n")


def _add_config_flags(parser: argparse.ArgumentParser, patterns: list[str]) -> None:
    for pattern in patterns:
        section, name = pattern.split(".")
        for f in dataclasses.fields(cfg.SECTIONS[section]):
            if name not in ("*", f.name):
                continue
            flag = cfg.flag(section, f.name)
            kind = cfg.field_type(section, f.name)
            kwargs: dict = {"dest": f"{section}.{f.name}", "default": argparse.SUPPRESS, "help": f.metadata["help"]}
            if typing.get_origin(kind) is list:
                (item,) = typing.get_args(kind)
                kwargs.update(action="append", type=item, metavar=f.name.upper().rstrip("S"))
            elif kind is bool:
                kwargs.update(action=argparse.BooleanOptionalAction)
            else:
                kwargs.update(type=kind, metavar=kind.__name__.upper())
            parser.add_argument(flag, **kwargs)


def _add_verbosity_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--quiet",
        "-q",
        dest="console",
        action="store_const",
        const="quiet",
        help="print only warnings, errors and the closing summary",
    )
    group.add_argument(
        "--verbose",
        "-v",
        dest="console",
        action="store_const",
        const="verbose",
        help="also the libraries' logs and the Trainer's raw log lines",
    )


def _add_stage_parser(sub, command: str, help_text: str) -> None:
    """One stage's command: --config, the flags of the config fields it reads, and its own options."""
    p = sub.add_parser(command, help=help_text, description=help_text)
    p.add_argument("--config", type=Path, help="YAML config; flags override it")
    _add_config_flags(p, COMMAND_FIELDS[command])
    if command not in ("index", "search", "serve"):  # these write no output directory
        p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    if command == "train":
        p.add_argument(
            "--resume",
            action="store_true",
            help="continue from the run's last intact checkpoint (a finished run is left as it is)",
        )
        p.add_argument("--nproc", type=int, default=1, help="local processes: launches torchrun (DDP) for you")
        p.add_argument("--max-restarts", type=int, default=3, help="with --nproc: torchrun elastic restarts")
    if command == "index":
        p.add_argument(
            "--force",
            action="store_true",
            help="index even a model measured worse than the served one on the same held-out queries",
        )
    if command == "search":
        p.add_argument("question", help="the question to search for")
    if command in ("search", "serve"):
        p.add_argument("--model", help="query model (default: the one the repo was indexed with)")
    if command == "serve":
        p.add_argument("--host", default="127.0.0.1", help="interface to bind; 0.0.0.0 exposes it to the network")
        p.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free one)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ragtune", description="Make a RAG retriever measurably better on your own documents.")
    parser.add_argument("--version", action="version", version=f"ragtune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    helps = {
        "prepare": "training pairs with guarded hard negatives, and a held-out evaluation split",
        "evaluate": "nDCG@10, MRR@10, Recall@10/100, MAP@100 of models (and BM25) on a qrels split",
        "train": "fine-tune with sentence-transformers, re-mining hard negatives as the model learns",
        "demo": "the whole pipeline on the bundled SciFact data and model, under runs/demo",
        "index": "encode the corpus with a (tuned) model into a new passages view of a Feast repo",
        "search": "top-k passages for a question, through the Feast repo's online store",
        "serve": "search over HTTP: model and index loaded once, JSON POST /search (127.0.0.1 unless --host)",
    }
    for command, help_text in helps.items():
        _add_stage_parser(sub, command, help_text)
    feast = sub.add_parser("feast", help="Feast feature repo for serving: `feast init DIR`")
    init = feast.add_subparsers(dest="feast_command", required=True, parser_class=_Parser).add_parser(
        "init", help="write a feature repo: Milvus Lite online store, duckdb over parquet offline"
    )
    init.add_argument("feast.repo", metavar="DIR", help="directory of the new repo")
    _add_config_flags(init, ["feast.embedding_dim", "feast.online_path"])
    init.add_argument("--config", type=Path, help="YAML config; flags override it")
    init.add_argument("--overwrite", action="store_true", help="replace an existing feature_store.yaml")
    for command, help_text in JOB_COMMANDS.items():
        p = sub.add_parser(command, help=help_text, description=help_text)
        p.add_argument("--config", type=Path, help="YAML config; flags override it")
        _add_config_flags(p, COMMAND_FIELDS.get(command, CLUSTER_FIELDS))
        if command not in ("submit", "jobs"):
            p.add_argument("job", help="TrainJob name (see: ragtune jobs)")
        if command == "logs":
            p.add_argument("--follow", "-f", action="store_true", help="keep streaming until the job ends")
            p.add_argument("--rank", type=int, default=0, help="node whose log to show (Kubernetes backend)")
        if command == "wait":
            p.add_argument("--timeout", type=int, default=3600, help="seconds to wait")
    for p in sub.choices.values():
        _add_verbosity_flags(p)
    board = sub.add_parser("tensorboard", help="serve a run's TensorBoard logs (127.0.0.1 unless --host)")
    board.add_argument("run", type=Path, help="run directory (holding tensorboard/) or a folder of runs")
    board.add_argument("--host", default="127.0.0.1", help="interface to bind; 0.0.0.0 exposes it to the network")
    board.add_argument("--port", type=int, default=6006)
    page = sub.add_parser("report", help="one self-contained HTML page of a run: metrics, curves, audit, config")
    page.add_argument("run", type=Path, help="run directory written by `ragtune train`")
    page.add_argument("--eval", type=Path, help="`ragtune evaluate` output to include (default: a sibling eval/)")
    page.add_argument("--output", type=Path, help="HTML file to write (default: RUN/report.html)")
    page.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    return parser


def _overrides(args: argparse.Namespace) -> dict:
    return {key: value for key, value in vars(args).items() if "." in key}


RUNNERS = {
    "prepare": lambda config, args: api.prepare(config, args.overwrite, config_file=args.config),
    "evaluate": lambda config, args: api.evaluate(config, args.overwrite, config_file=args.config),
    "train": lambda config, args: api.train(config, args.overwrite, args.resume, config_file=args.config),
    "demo": lambda config, args: api.demo(config),
    "feast": lambda config, args: api.feast_init(config, args.overwrite),
    "index": lambda config, args: api.index(config, args.force),
    "search": lambda config, args: api.search(config, args.question, args.model),
    "serve": lambda config, args: api.serve(config, args.model, args.host, args.port),
    "submit": lambda config, args: api.submit(config),
    "jobs": lambda config, args: api.jobs(config),
    "status": lambda config, args: api.status(config, args.job),
    "logs": lambda config, args: api.logs(config, args.job, args.follow, args.rank),
    "wait": lambda config, args: api.wait(config, args.job, args.timeout),
    "delete": lambda config, args: api.delete(config, args.job),
}


def serve_tensorboard(run: Path, host: str, port: int) -> int:
    """TensorBoard as a child that lives and dies with this process: SIGTERM and Ctrl-C reach it too."""
    logdir = run / "tensorboard" if (run / "tensorboard").is_dir() else run
    if not logdir.is_dir():
        raise UserError(f"{run}: not found; pass a run directory written by `ragtune train`")
    from ragtune.serving.server import free_port

    port = free_port(host, port)
    child = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host, "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    print(f"TensorBoard for {logdir} on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        code = child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait()
        return 130
    if code > 0:
        raise UserError(
            f"tensorboard stopped with exit code {code}; run `python -m tensorboard.main --logdir {logdir}` to see why"
        )
    return 0


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
    from ragtune.io.prepared import Prepared
    from ragtune.retrieval.models import resolve_model
    from ragtune.train.distributed import launch

    api.check_outputs(config, "train", args.overwrite, args.config, args.resume)
    Prepared.load(Path(config.train.prepared))
    resolve_model(config.model.name)
    code = launch(args.nproc, _without_launcher_flags(argv), args.max_restarts)
    if code != 0:
        print(
            f"ragtune: error: a training process failed (exit {code}) after {args.max_restarts} restart(s); "
            "its rank and traceback are in the torchrun log above",
            file=sys.stderr,
        )
    return code


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # a log (`| tee`, CI, pod logs) gets each line when it is said
    warnings.showwarning = _one_line_warning
    if getattr(args, "console", None):
        from ragtune import console

        console.set_level(args.console)
    try:
        if args.command == "tensorboard":
            return serve_tensorboard(args.run, args.host, args.port)
        if args.command == "report":
            api.report(args.run, args.eval, args.output, args.overwrite)
            return 0
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
