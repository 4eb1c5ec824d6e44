"""The training loop, its checkpoints (BasicSR's layout, resumable), weight export and the command."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from edvr_vs.checkpoint import read_checkpoint, write_checkpoint
from edvr_vs.files import atomic_output
from edvr_vs.nn.edvr import EDVR
from edvr_vs.os_support import stop_signals
from edvr_vs.train.data import TrainError, WindowSampler, load_source
from edvr_vs.train.degradations import Degradation
from edvr_vs.train.metrics import charbonnier, validate


def cosine_lr(step: int, base: float, periods: list[int], eta_min: float, restart_weights: list[float]) -> float:
    """Cosine annealing with restarts (BasicSR's ``CosineAnnealingRestartLR``)."""
    start = 0
    for period, weight in zip(periods, restart_weights):
        if step < start + period:
            t = (step - start) / period
            return eta_min + weight * (base - eta_min) * 0.5 * (1 + math.cos(math.pi * t))
        start += period
    return eta_min


def init_from(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every tensor whose name and shape match (a shallower model's weights into a deeper one)."""
    own = model.state_dict()
    copied = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    model.load_state_dict({**own, **{k: state[k] for k in copied}})
    return copied


def save_checkpoint(path: Path, model: EDVR, ema: EDVR | None, optimizer: torch.optim.Optimizer, step: int,
                    sampler: WindowSampler) -> None:
    """BasicSR layout (``params``/``params_ema``) plus ``<path>.state`` (optimizer, iteration, random
    streams) from which training resumes exactly where it was; both written atomically."""
    def tensors(m: EDVR) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in m.state_dict().items()}

    ckpt = {"params": tensors(model)}
    if ema is not None:
        ckpt["params_ema"] = tensors(ema)
    state = {"optimizer": optimizer.state_dict(), "step": step, "params": model.state_dict(),
             **({"params_ema": ema.state_dict()} if ema else {}), "rng": torch.get_rng_state(),
             "sampler": sampler.state()}
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, obj in ((path, ckpt), (path.with_suffix(".state"), state)):
        with atomic_output(target) as tmp:
            torch.save(obj, tmp)


def train(config: dict, *, log=print, stop: Callable[[], bool] = lambda: False) -> dict[str, float]:
    """Run the training a config describes; returns the last validation metrics (or {}).

    ``stop`` is asked after every iteration: when it says yes, a checkpoint is written and
    training returns; run it again with the same config to go on from there (the same
    windows, learning rates and weights as one uninterrupted run).
    """
    torch.manual_seed(config.get("manual_seed", 0))
    if config.get("num_threads"):
        torch.set_num_threads(int(config["num_threads"]))
    net_cfg = {k: v for k, v in config["network_g"].items() if k != "type"}
    model = EDVR(**net_cfg)
    tcfg = config["train"]
    out_dir = Path(config["path"]["experiments_root"])
    ckpt_path = out_dir / "models" / "net_g_latest.pth"
    ema_decay = float(tcfg.get("ema_decay", 0))
    ema = EDVR(**net_cfg) if ema_decay > 0 else None

    pretrain = config["path"].get("pretrain_network_g")
    if pretrain:
        copied = init_from(model, read_checkpoint(pretrain).state)
        log(f"initialised {len(copied)} tensors from {pretrain}")
    if ema is not None:
        ema.load_state_dict(model.state_dict())

    opt_cfg = tcfg["optim_g"]
    optimizer = torch.optim.Adam(model.parameters(), lr=float(opt_cfg["lr"]),
                                 betas=tuple(opt_cfg.get("betas", (0.9, 0.999))),
                                 weight_decay=float(opt_cfg.get("weight_decay", 0)))
    dcfg = config["datasets"]["train"]
    degradation = Degradation(**dcfg.get("degradation", {"scale": model.config.scale}))
    sequences = [s for spec in dcfg["sources"] for s in load_source(spec)]
    sampler = WindowSampler(sequences, model.config.num_frame, int(dcfg["gt_size"]), degradation,
                            seed=config.get("manual_seed", 0))
    step = 0
    state_path = ckpt_path.with_suffix(".state")
    if config["path"].get("resume", True) and state_path.exists():
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["params"])
        if ema is not None and "params_ema" in state:
            ema.load_state_dict(state["params_ema"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        torch.set_rng_state(state["rng"])
        sampler.load_state(state["sampler"])
        log(f"resumed from {state_path} at iteration {step}")
    val_cfg = config["datasets"].get("val")
    val_seqs = [s for spec in val_cfg["sources"] for s in load_source(spec)] if val_cfg else []

    sched = tcfg.get("scheduler", {})
    periods = [int(p) for p in sched.get("periods", [tcfg["total_iter"]])]
    restart_weights = [float(w) for w in sched.get("restart_weights", [1] * len(periods))]
    eta_min = float(sched.get("eta_min", 1e-7))
    base_lr = float(opt_cfg["lr"])
    eps = float(tcfg.get("pixel_opt", {}).get("eps", 1e-3))
    total = int(tcfg["total_iter"])
    batch = int(dcfg.get("batch_size_per_gpu", dcfg.get("batch_size", 4)))
    save_every = int(config.get("logger", {}).get("save_checkpoint_freq", 500))
    val_every = int(val_cfg.get("val_freq", 1000)) if val_cfg else 0
    metrics: dict[str, float] = {}
    t0, first_step = time.monotonic(), step
    model.train()
    while step < total:
        lr = cosine_lr(step, base_lr, periods, eta_min, restart_weights)
        for group in optimizer.param_groups:
            group["lr"] = lr
        lq, gt = sampler.batch(batch, model.config.center)
        loss = charbonnier(model(lq), gt, eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if ema is not None:
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - ema_decay)
        if step % 10 == 0 or step == total:
            rate = (step - first_step) / max(time.monotonic() - t0, 1e-6)
            log(f"iter {step}/{total} loss {loss.item():.5f} lr {lr:.2e} ({rate:.2f} it/s)")
        stopping = step < total and stop()
        if step % save_every == 0 or step == total or stopping:
            save_checkpoint(ckpt_path, model, ema, optimizer, step, sampler)
        if val_every and (step % val_every == 0 or step == total):
            metrics = validate(ema or model, val_seqs, degradation, int(val_cfg.get("max_frames", 0)))
            log("val " + " ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
            model.train()
        if stopping:
            log(f"stopped at iteration {step}/{total}; {ckpt_path.with_suffix('.state')} resumes it")
            break
    return metrics


def export_weights(checkpoint: str | Path, output: str | Path) -> str:
    """Write a checkpoint's weights (EMA if present) as fp16 ``{"params": ...}``; returns the file's sha256."""
    return write_checkpoint(read_checkpoint(checkpoint), output, half=True)


def log_line(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(config_path: str | Path, *, total_iter: int | None = None, export: str | Path | None = None,
        max_minutes: float | None = None) -> int:
    """Train from a YAML config (``total_iter`` overrides ``train.total_iter``); with ``export``, then write
    the fp16 (EMA) weights there and print their sha256. ``max_minutes``, SIGINT and SIGTERM end the run
    early with a checkpoint that the same command resumes (no export then; on Windows Ctrl-Break stands in
    for SIGTERM). The command's body."""
    try:
        config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise TrainError(f"cannot read the training config {config_path}: {e}") from None
    if total_iter:
        config["train"]["total_iter"] = total_iter
    deadline = time.monotonic() + 60 * max_minutes if max_minutes is not None else math.inf
    signalled: list[int] = []
    stopped: list[bool] = []

    def on_signal(signum: int, _frame: object) -> None:
        signalled.append(signum)

    def stop() -> bool:
        if signalled or time.monotonic() > deadline:
            stopped.append(True)
        return bool(stopped)

    previous = {sig: signal.signal(sig, on_signal) for sig in stop_signals()}
    try:
        train(config, log=log_line, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopped:
        log_line("not finished: run the same command again to resume")
        return 128 + signalled[0] if signalled else 0
    if export:
        latest = Path(config["path"]["experiments_root"]) / "models" / "net_g_latest.pth"
        print(f"{export} sha256 {export_weights(latest, export)}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments (``edvr-vs train`` and ``python -m edvr_vs.train``)."""
    parser.add_argument("config", help="YAML file with BasicSR-style keys (network_g, datasets, train, path)")
    parser.add_argument("--total-iter", type=int, help="override train.total_iter")
    parser.add_argument("--max-minutes", type=float, metavar="M",
                        help="stop after M minutes with a checkpoint; the same command resumes from it")
    parser.add_argument("--export", metavar="FILE",
                        help="after training, write the fp16 (EMA) weights to FILE and print its sha256")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edvr_vs.train", description="Train EDVR from a YAML config.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args.config, total_iter=args.total_iter, export=args.export, max_minutes=args.max_minutes)
