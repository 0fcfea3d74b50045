"""Command line: ``s2i study | config | generate | read-attributes``."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


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
            raise SystemExit(f"s2i: {flag} expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def cmd_study(args: argparse.Namespace) -> int:
    from s2ilib.runner import StudyError, run_study

    try:
        out = run_study(preset=args.preset, seed=args.seed, run_root=args.run_root,
                        report_root=args.report_root, parameters=_parse_pairs(args.param, "-p"),
                        only=args.only.split(",") if args.only else None, timeout=args.timeout)
    except StudyError as exc:
        print(f"s2i study: {exc}", file=sys.stderr)
        return 1
    print(f"[s2i study] report: {out}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from s2ilib.config import get_config

    cfg = get_config(args.preset, _parse_pairs(args.set, "--set"))
    print(json.dumps(cfg.to_dict(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2i", description="Direct speech-to-image translation study")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("study", help="run the notebooks in order with papermill into reports/<preset>/")
    p.add_argument("--preset", default="small", help="smoke | small | paper (default: small)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--run-root", default=None, help="folder for data, checkpoints, caches (default: runs/)")
    p.add_argument("--report-root", default=None, help="folder for reports (default: reports/)")
    p.add_argument("--only", default=None, help="comma-separated notebook numbers or names, e.g. 01,02")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                   help="extra notebook parameter (refused if no notebook declares it)")
    p.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("config", help="print the resolved configuration of a preset")
    p.add_argument("--preset", default="small")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. gan.steps=100")
    p.set_defaults(func=cmd_config)
    from s2ilib import evaluate, inference  # import torch: kept out of module import time

    inference.add_cli(sub)
    evaluate.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
