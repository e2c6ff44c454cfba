"""The course's command line, `python -m course_utils COMMAND`:

    download NAME [--dest DIR] [--mirror M]   download, verify and extract a dataset (or weights), once
    datasets [--dest DIR] [--mirror M]        the datasets' local status, and where each file would come from
    mirror DEST                  copy every dataset file already downloaded into a mirror folder (COURSE_MIRROR)
    train --images DIR ...       train on your own images with the lesson's recipe, export the model
    predict MODEL IMAGE...       labels and probabilities from an exported model
    serve EXPORT [--port 8000]   a web page over an exported model that collects corrections
    finetune EXPORT --feedback DIR --out NEW   fine-tune an exported model on those corrections

Each command is a subparser registered by its own `_add_<command>` function.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import course_mirror
from .distributed import rank_prefix
from .download import (
    DATASETS,
    DatasetError,
    dataset_root,
    dataset_status,
    download_dataset,
    downloaded_files,
    file_origin,
)
from .finetune import add_finetune_command
from .kaggle import KaggleError
from .mirror import copy_to_mirror
from .serve.cli import add_serve_command
from .train import add_predict_command, add_train_command

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name

RESUMES = {"download", "mirror"}  # the commands that, run again, go on where they stopped


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors a student can act on are printed as one message, without a traceback."""
    args = build_parser().parse_args(argv)
    if hasattr(args, "refuse"):
        args.refuse(args)  # contradictions argparse cannot express: usage and exit 2, before any work
    try:
        return args.run(args)
    except (DatasetError, KaggleError, ValueError, OSError, KeyError) as e:  # OSError: e.g. a full disk, named
        print(f"{rank_prefix()}error: {e}", file=sys.stderr)  # under torchrun: which process, which machine
        return 1
    except KeyboardInterrupt:  # train and finetune say themselves what they kept
        again = " Run the same command again to resume." if args.command in RESUMES else ""
        print(f"\nInterrupted.{again}", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subcommand per `_add_<command>`."""
    parser = argparse.ArgumentParser(prog="python -m course_utils", description="Lesson 3 course helpers.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_download(commands)
    _add_datasets(commands)
    _add_mirror(commands)
    _add_train_and_predict(commands)
    add_serve_command(commands)
    add_finetune_command(commands)
    return parser


def _add_train_and_predict(commands) -> None:
    add_train_command(commands)
    add_predict_command(commands)
    train = commands.choices["train"]
    train.set_defaults(refuse=lambda args: _codes_need_masks(train, args))


def _codes_need_masks(train: argparse.ArgumentParser, args) -> None:
    """`--codes` names the classes of `--masks`; with `--csv` or `--folders` it would be ignored silently."""
    if args.codes is not None and args.masks is None:
        layout = ("--csv (the labels are in the CSV)" if args.csv is not None
                  else "--folders (the classes are the sub-folders)")
        train.error(f"--codes {args.codes} names the classes of --masks, but this run uses {layout}: "
                    "drop --codes, or label with --masks DIR.")


def _add_download(commands) -> None:
    cmd = commands.add_parser("download", help="download, verify and extract a dataset (once)",
                              description="Download, verify and extract a dataset or pretrained weights. "
                              "Run it again after an interruption: it resumes.")
    cmd.add_argument("name", choices=sorted(DATASETS), metavar="NAME", help=", ".join(sorted(DATASETS)))
    cmd.add_argument("--dest", metavar="DIR",
                     help="folder to install into (default: $COURSE_DATA, or $COURSE_MODELS for weights)")
    _add_mirror_option(cmd)
    cmd.set_defaults(run=_download)


def _add_mirror_option(cmd) -> None:
    cmd.add_argument("--mirror", metavar="M", default=None,
                     help="a folder or http(s) address holding the dataset files, tried first "
                          "(default: $COURSE_MIRROR)")


def _download(args) -> int:
    path = download_dataset(args.name, args.dest, mirror=args.mirror)
    print(f"{args.name} is ready in {path}")
    return 0


def _add_datasets(commands) -> None:
    cmd = commands.add_parser("datasets", help="list the datasets and whether they are downloaded")
    cmd.add_argument("--dest", metavar="DIR", help="folder to look in (default: as for download)")
    _add_mirror_option(cmd)
    cmd.set_defaults(run=_datasets)


def _datasets(args) -> int:
    mirror = args.mirror or course_mirror()
    print(f"{'name':<16} {'status':<9} folder" + (f"   (mirror: {mirror})" if mirror else ""))
    for name, dataset in DATASETS.items():
        root = Path(args.dest) if args.dest else dataset_root(name)
        print(f"{name:<16} {dataset_status(name, root):<9} {root / dataset.folder}")
        for line in [file_origin(s, root, mirror) for s in dataset.sources] + ([dataset.note] if dataset.note else []):
            print(f"{'':<26} {line}")
    return 0


def _add_mirror(commands) -> None:
    cmd = commands.add_parser("mirror", help="copy the dataset files downloaded so far into a mirror folder",
                              description="Copy every dataset and weights file already downloaded into DEST, under "
                              "its own name, for others to use with COURSE_MIRROR=DEST (or serve DEST over http).")
    cmd.add_argument("dest", metavar="DEST", help="the mirror folder (created if needed)")
    cmd.add_argument("--from", dest="source", metavar="DIR",
                     help="the data folder to copy from (default: as for download)")
    cmd.set_defaults(run=_mirror)


def _mirror(args) -> int:
    files = [f for name in DATASETS for f in downloaded_files(name, args.source)]
    if not files:
        print("Nothing downloaded yet: run full mode (or `python -m course_utils download NAME`) first.")
        return 1
    written = copy_to_mirror(files, args.dest)
    for f in files:
        print(f"{'copied ' if Path(args.dest).expanduser() / f.name in written else 'present'} {f.name}")
    print(f"Mirror ready in {args.dest}: set COURSE_MIRROR={Path(args.dest).expanduser().resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
