"""The ``edvr-vs`` command (also ``python -m edvr_vs``)."""

from __future__ import annotations

import argparse
import sys

from edvr_vs import __version__


def cmd_demo(args: argparse.Namespace) -> int:
    print("edvr-vs demo: the environment is set up, but the main job (a real clip upscaled x4 into an "
          "encoded file) needs the filter edvr_vs.edvr() and the embedded default model, which do not "
          "exist yet.", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edvr-vs", description="EDVR video restoration for VapourSynth.")
    parser.add_argument("--version", action="version", version=f"edvr-vs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="upscale a real clip x4 into an encoded file (the README's first command)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
