"""The `incsweep` console script: one top-level parser, subcommands owned by their packages.

Each package exposes ``register(subparsers)`` adding its subcommands; a subcommand sets
``func(args) -> int`` as its handler. Modules are imported lazily by name so that
``incsweep run`` never imports Ray and ``incsweep --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from typing import Iterator

from incsweep import __version__
from incsweep.core.errors import ConfigError

__all__ = ["main", "UsageError"]

# One explicit registry of the packages that contribute subcommands (order = help order).
COMMAND_MODULES = (
    "incsweep.incremental.cli",  # run, budget
    "incsweep.study.commands",  # study run | resume | status
    "incsweep.analysis.cli",  # analyze, export
    "incsweep.incremental.cache_cli",  # cache ls | clear
)


class UsageError(ValueError):
    """Bad command-line input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """Every sub-command's parser is one of these (argparse makes sub-parsers of the parent's class):
    an argument a sub-command does not take is reported with that sub-command's usage, where argparse
    alone reports it with the top level's (``usage: incsweep [-h] ... COMMAND``)."""

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and " " in self.prog:  # a sub-command ("incsweep study run"), not the top level
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="incsweep",
        description="Hyperparameter studies over incremental-learning methods under a memory budget.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"incsweep {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # that package has no commands yet
                continue
            raise
        module.register(sub)
    return parser


def _complete(parser: argparse.ArgumentParser) -> None:
    """Shell completion (argcomplete, ``pip install incsweep[completion]``): when the shell asks for
    completions it answers and exits; otherwise, or without argcomplete, nothing happens."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        _complete(parser)
        args = parser.parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while the commands' modules import: nothing has started
        print(_interrupted(argv))
        return 130
    with _logging_for_the_command():
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
        return _run_command(args, argv)


# The loggers a command configures (the root by basicConfig; the progress loggers by the study commands)
_COMMAND_LOGGERS = ("", "incsweep.study", "incsweep.trainables")


@contextlib.contextmanager
def _logging_for_the_command() -> Iterator[None]:
    """Logging as the command sets it up, and as it was again after: ``main`` runs in-process too (a
    script, a notebook, the tests), where a handler left behind would write to a stream that is gone."""
    loggers = [logging.getLogger(name) for name in _COMMAND_LOGGERS]
    saved = [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    try:
        yield
    finally:
        for lg, level, propagate, handlers in saved:
            lg.setLevel(level)
            lg.propagate = propagate
            for extra in [h for h in lg.handlers if h not in handlers]:
                lg.removeHandler(extra)


def _run_command(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        return int(args.func(args) or 0)
    except (UsageError, ConfigError, FileNotFoundError) as err:
        # Input errors already carry a one-line message naming the field/file and what is allowed.
        print(f"incsweep {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C before a command's own handling (study run and resume name their next step themselves)
        print(_interrupted(argv))
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`, which closed early: not an error; silence the final flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _interrupted(argv: list[str]) -> str:
    """The one line a Ctrl-C ends in when nothing was changed yet: the same command runs it again."""
    import shlex

    return f"interrupted; nothing was changed; run it again with: incsweep {shlex.join(argv)}"


if __name__ == "__main__":
    sys.exit(main())
