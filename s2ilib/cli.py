"""Command line: ``s2i study | config | train | generate | read-attributes | verify``.

Errors: every command reports the project's own exceptions (and OSError) as one line on stderr,
``s2i <command>: <file or key>: <problem>``, with exit status 2 for usage errors (bad arguments,
:class:`s2ilib.core.config.ConfigError`) and 1 for failures (see :mod:`s2ilib.core.errors`).
``s2i --debug ...`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Any

from s2ilib.core.errors import EXIT_USAGE, UsageError, exit_status, one_line


def _parse_value(text: str) -> Any:
    """``-p key=value``: JSON where it parses (numbers, true/false, lists), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_pairs(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UsageError(f"{flag} expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        if not key.strip():
            raise UsageError(f"{flag} expects key=value, got an empty key in {pair!r}")
        out[key.strip()] = _parse_value(value)
    return out


def cmd_study(args: argparse.Namespace) -> int:
    from s2ilib.study.runner import check_overrides, run_study

    overrides = check_overrides(args.preset, args.seed, _parse_pairs(args.set, "--set"))  # ConfigError: exit 2
    out = run_study(preset=args.preset, seed=args.seed, run_root=args.run_root,
                    report_root=args.report_root, parameters=_parse_pairs(args.param, "-p"),
                    only=args.only.split(",") if args.only else None, timeout=args.timeout,
                    overrides=overrides)
    print(f"[s2i study] report: {out}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from s2ilib.core.config import get_config

    cfg = get_config(args.preset, _parse_pairs(args.set, "--set"))
    print(json.dumps(cfg.to_dict(), indent=2))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``s2i generate: error: ...``), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_debug(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show the traceback of an error instead of a one-line message")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="s2i", description="Direct speech-to-image translation study")
    _add_debug(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("study", help="run the notebooks in order with papermill into reports/<preset>/")
    p.add_argument("--preset", default="small", help="smoke | small | paper (default: small)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--run-root", default=None, help="folder for data, checkpoints, caches (default: runs/)")
    p.add_argument("--report-root", default=None, help="folder for reports (default: reports/)")
    p.add_argument("--only", default=None, help="comma-separated notebook numbers or names, e.g. 01,02")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                   help="extra notebook parameter (refused if no notebook declares it)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="config override for every notebook, e.g. gan.steps=3000 (repeatable); the "
                        "stages write into variant folders beside the preset's")
    p.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("config", help="print the resolved configuration of a preset")
    p.add_argument("--preset", default="small")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. gan.steps=100")
    p.set_defaults(func=cmd_config)
    from s2ilib.evaluation import cli as evaluation_cli
    from s2ilib import inference  # import torch: kept out of module import time

    from s2ilib.study import train_cli, verify

    inference.add_cli(sub)
    verify.add_cli(sub)
    evaluation_cli.add_cli(sub)
    train_cli.add_cli(sub, _parse_pairs)
    for subparser in sub.choices.values():  # `s2i CMD --debug` works as well as `s2i --debug CMD`
        _add_debug(subparser, argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:
        status = exit_status(exc)
        if status is None:  # not one of ours: a bug, keep the traceback
            raise
        if args.debug:
            traceback.print_exc(file=sys.stderr)
        else:
            print(f"s2i {args.command}: {one_line(exc)}", file=sys.stderr)
        return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
