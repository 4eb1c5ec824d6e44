"""``edvr-vs`` commands about models and checkpoints: ``models``, ``download``, ``info``, ``convert``."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys


def cmd_models(args: argparse.Namespace) -> int:
    from edvr_vs import zoo

    rows = [("name", "task", "scale", "params", "published PSNR", "cached")]
    for name in zoo.names():
        e = zoo.entry(name)
        psnr = f"{e.psnr['value']} ({e.psnr['dataset']} {e.psnr['channel']})" if e.psnr else "-"
        rows.append((name, e.task, f"x{e.scale}", f"{e.num_params / 1e6:.2f}M", psnr,
                     "yes" if zoo.is_cached(name) else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from edvr_vs import zoo

    targets = zoo.names() if args.name == "all" else [args.name]
    for name in targets:
        e = zoo.entry(name)
        if e.source == "embedded":
            continue
        path = zoo.weights_path(name, progress=not args.quiet)
        sys.stderr.write(f"{name}: {path}\n")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from edvr_vs.checkpoint import read_checkpoint

    ckpt = read_checkpoint(args.checkpoint)
    cfg = ckpt.config
    print(f"checkpoint: {ckpt.source}")
    print(f"layout: {ckpt.layout}")
    print(f"parameters: {ckpt.num_params} ({ckpt.num_params / 1e6:.2f}M)")
    print(f"scale: x{cfg.scale}  (input multiple of {cfg.multiple})")
    for key, value in cfg.as_dict().items():
        print(f"{key}: {cfg.center if key == 'center_frame_idx' else value}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from edvr_vs.checkpoint import read_checkpoint, write_checkpoint
    from edvr_vs.os_support import same_path

    ckpt = read_checkpoint(args.checkpoint)
    if same_path(args.checkpoint, args.output):  # its tensors map the file, and Windows cannot replace a mapped file
        ckpt = dataclasses.replace(ckpt, state={k: v.clone() for k, v in ckpt.state.items()})
        gc.collect()  # unmaps it
    write_checkpoint(ckpt, args.output)
    sys.stderr.write(f"{args.checkpoint} ({ckpt.layout}) -> {args.output} (BasicSR layout)\n")
    return 0


def add_model_commands(sub: argparse._SubParsersAction) -> None:
    """Register the four commands on ``edvr-vs``'s subparsers."""
    sub.add_parser("models", help="list the model zoo").set_defaults(func=cmd_models)

    dl = sub.add_parser("download", help="download and verify a zoo model's weights")
    dl.add_argument("name", help="a zoo model name, or 'all'")
    dl.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(func=cmd_download)

    info = sub.add_parser("info", help="show a checkpoint's layout and inferred architecture")
    info.add_argument("checkpoint")
    info.set_defaults(func=cmd_info)

    conv = sub.add_parser("convert", help="convert any supported checkpoint layout to BasicSR's")
    conv.add_argument("checkpoint")
    conv.add_argument("-o", "--output", required=True)
    conv.set_defaults(func=cmd_convert)
