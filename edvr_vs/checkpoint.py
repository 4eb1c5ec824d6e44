"""Reading EDVR checkpoints of every published layout into BasicSR's layout.

Layouts:

``basicsr``   BasicSR: ``{"params_ema" | "params": state_dict}`` or a bare state dict.
``mmagic``    mmagic / mmediting: ``{"state_dict": {"generator.…": …}}``, ``pcd_alignment.``,
              ConvModule ``.conv.`` infixes, ``upsample1.upsample_conv``, ``feat_l2_conv1``.
``original``  the original EDVR repository: ``L3_offset_conv1``, ``conv_offset_mask``,
              ``tsa_fusion.tAtt_1``, ``pre_deblur.RB_L1_1``, ``recon_trunk``, ``HRconv``.

The architecture (``EDVRConfig``) is inferred from the tensors, so a path is all
a caller passes. Files load with ``weights_only=True``: a checkpoint never runs code.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from edvr_vs.files import atomic_output, sha256_of
from edvr_vs.nn.edvr import EDVR, EDVRConfig

StateDict = dict[str, torch.Tensor]
Weights = str | os.PathLike[str] | Mapping[str, object]

Rule = tuple[str, str | Callable[[re.Match[str]], str]]

_ORIGINAL_RULES: list[Rule] = [
    # TSA: the original's tAtt_2 embeds the reference frame, BasicSR calls that temporal_attn1.
    (r"^tsa_fusion\.tAtt_1\.", "fusion.temporal_attn2."),
    (r"^tsa_fusion\.tAtt_2\.", "fusion.temporal_attn1."),
    (r"^tsa_fusion\.fea_fusion\.", "fusion.feat_fusion."),
    (r"^tsa_fusion\.sAtt_add_(\d+)\.", r"fusion.spatial_attn_add\1."),
    (r"^tsa_fusion\.sAtt_L(\d+)\.", r"fusion.spatial_attn_l\1."),
    (r"^tsa_fusion\.sAtt_(\d+)\.", r"fusion.spatial_attn\1."),
    (r"^tsa_fusion\.", "fusion."),  # without TSA, the 1×1 fusion conv itself
    (r"^pre_deblur\.conv_first_1\.", "predeblur.conv_first."),
    (r"^pre_deblur\.conv_first_2\.", "predeblur.stride_conv_hr1."),
    (r"^pre_deblur\.conv_first_3\.", "predeblur.stride_conv_hr2."),
    (r"^pre_deblur\.deblur_L(\d)_conv\.", r"predeblur.stride_conv_l\1."),
    (r"^pre_deblur\.RB_L3_1\.", "predeblur.resblock_l3."),
    (r"^pre_deblur\.RB_L2_(\d)\.", r"predeblur.resblock_l2_\1."),
    (r"^pre_deblur\.RB_L1_(\d)\.", lambda m: f"predeblur.resblock_l1.{int(m[1]) - 1}."),
    (r"^pre_deblur\.", "predeblur."),
    (r"^fea_L(\d)_conv(\d)\.", r"conv_l\1_\2."),
    (r"^pcd_align\.L(\d)_offset_conv(\d)\.", r"pcd_align.offset_conv\2.l\1."),
    (r"^pcd_align\.L(\d)_dcnpack\.", r"pcd_align.dcn_pack.l\1."),
    (r"^pcd_align\.L(\d)_fea_conv\.", r"pcd_align.feat_conv.l\1."),
    (r"\.conv_offset_mask\.", ".conv_offset."),
    (r"^recon_trunk\.", "reconstruction."),
    (r"^HRconv\.", "conv_hr."),
]

_MMAGIC_RULES: list[Rule] = [
    (r"^pcd_alignment\.", "pcd_align."),
    (r"^feat_l(\d)_conv(\d)\.", r"conv_l\1_\2."),
    (r"^upsample(\d)\.upsample_conv\.", r"upconv\1."),
    (r"\.conv\.(weight|bias)$", r".\1"),  # ConvModule wraps its conv as `.conv`
]

_LAYOUT_MARKERS = {
    "mmagic": ("pcd_alignment.", "upsample1.upsample_conv", "feat_l2_conv1", ".conv.weight"),
    "original": ("L1_offset_conv1", "conv_offset_mask", "tsa_fusion", "fea_L2_conv1", "recon_trunk", "HRconv"),
}
_RULES = {"basicsr": [], "mmagic": _MMAGIC_RULES, "original": _ORIGINAL_RULES}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read as EDVR weights; the message names the file."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint in BasicSR's layout with its inferred architecture."""

    state: StateDict
    config: EDVRConfig
    layout: str  # basicsr | mmagic | original
    source: str  # file path, or "<state dict>"

    @property
    def num_params(self) -> int:
        return sum(t.numel() for t in self.state.values())


def _check_zip(path: Path, size: int) -> None:
    """A zip checkpoint's directory and every member's CRC-32, before torch reads it (torch checks
    neither: a flipped bit in a tensor would load as a different weight)."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except Exception as e:  # noqa: BLE001 - zipfile raises many types on damaged directories
        raise CheckpointError(f"checkpoint {str(path)!r} is a damaged zip archive ({size} bytes): "
                              f"{type(e).__name__}: {e}") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: the member {bad!r} fails its CRC-32 check "
                              f"({size} bytes; a damaged copy or download?)")


def _read_file(path: Path) -> object:
    """The object a checkpoint file holds; any failure to read it is a CheckpointError naming the file."""
    try:
        return _load_file(path)
    except OSError as e:  # permissions, a vanished file, an I/O error
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: {e.strerror or e}") from None


def _load_file(path: Path) -> object:
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        raise CheckpointError(f"checkpoint {str(path)!r} is an HTML page, not a checkpoint "
                              "(a failed or blocked download?)")
    try:
        is_zip = zipfile.is_zipfile(path)
    except Exception as e:  # noqa: BLE001 - it raises on some damaged end records ("span multiple disks")
        raise CheckpointError(f"checkpoint {str(path)!r} is a damaged zip archive ({size} bytes): "
                              f"{type(e).__name__}: {e}") from None
    if is_zip:
        _check_zip(path, size)
    try:
        # The zip format (torch ≥ 1.6) can be memory-mapped; the legacy format cannot.
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing on them
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as e:
        text = str(e)
        code = re.search(r"unsupported GLOBAL (\S+)", text)
        if code:
            raise CheckpointError(f"checkpoint {str(path)!r} refers to {code[1]}, which is not a tensor or plain "
                                  "container; it was not loaded, since loading it could run code") from None
        detail = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("Unsupported")), "")
        raise CheckpointError(f"checkpoint {str(path)!r} is not a PyTorch checkpoint "
                              f"({size} bytes; truncated or corrupt?){': ' + detail if detail else ''}") from None
    except Exception as e:  # noqa: BLE001 - torch's loaders fail in many ways on damaged files (even assert)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} is not a readable PyTorch checkpoint "
                              f"({size} bytes; truncated or corrupt?): {msg}") from None


def _state_dict_of(obj: object, source: str) -> StateDict:
    """The tensor dict inside a loaded checkpoint (``params_ema`` preferred over ``params``)."""
    if isinstance(obj, Mapping):
        for key in ("params_ema", "params", "state_dict", "model"):
            if isinstance(obj.get(key), Mapping) and obj[key]:
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"checkpoint {source!r} holds {type(obj).__name__}, not a state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"checkpoint {source!r} holds no tensors (keys: {list(obj)[:5]})")
    return tensors


def detect_layout(keys: list[str]) -> str:
    """``basicsr``, ``mmagic`` or ``original``, from the key names."""
    for layout, markers in _LAYOUT_MARKERS.items():
        if any(m in k for k in keys for m in markers):
            return layout
    return "basicsr"


def to_basicsr(state: StateDict) -> tuple[StateDict, str]:
    """Rename any supported layout's keys to BasicSR's; returns (state, layout detected)."""
    stripped: StateDict = {}
    for k, v in state.items():
        for prefix in ("module.", "generator."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        stripped[k] = v
    layout = detect_layout(list(stripped))
    out: StateDict = {}
    for k, v in stripped.items():
        for pattern, repl in _RULES[layout]:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out, layout


def _count_blocks(state: StateDict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.conv1\.weight$")
    return len({m[1] for k in state if (m := pattern.match(k))})


def infer_config(state: StateDict, source: str = "<state dict>") -> EDVRConfig:
    """The EDVR architecture a BasicSR-layout state dict was made for."""
    needed = ["conv_l2_1.weight", "pcd_align.cas_dcnpack.weight", "pcd_align.dcn_pack.l1.conv_offset.weight",
              "conv_last.weight"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {source!r} does not hold EDVR weights: missing {missing[:5]}; "
                              f"it has {sorted(state)[:5]}{' …' if len(state) > 5 else ''}")
    num_feat = state["conv_l2_1.weight"].shape[0]
    with_predeblur = "predeblur.conv_first.weight" in state
    first_key = "predeblur.conv_first.weight" if with_predeblur else "conv_first.weight"
    if first_key not in state:
        raise CheckpointError(f"checkpoint {source!r} has neither 'conv_first' nor 'predeblur.conv_first' "
                              "(an original-repository HR_in model without pre-deblur is not supported)")
    with_tsa = "fusion.temporal_attn1.weight" in state
    fusion_in = state["fusion.feat_fusion.weight" if with_tsa else "fusion.weight"].shape[1]
    offset_out = state["pcd_align.dcn_pack.l1.conv_offset.weight"].shape[0]
    kernel = state["pcd_align.dcn_pack.l1.weight"].shape[-1] ** 2
    if fusion_in % num_feat or offset_out % (3 * kernel):
        raise CheckpointError(f"checkpoint {source!r}: fusion ({fusion_in}) or offset ({offset_out}) channels "
                              f"do not fit num_feat {num_feat}")
    cfg = EDVRConfig(
        num_in_ch=state[first_key].shape[1],
        num_out_ch=state["conv_last.weight"].shape[0],
        num_feat=num_feat,
        num_frame=fusion_in // num_feat,
        deformable_groups=offset_out // (3 * kernel),
        num_extract_block=_count_blocks(state, "feature_extraction."),
        num_reconstruct_block=_count_blocks(state, "reconstruction."),
        hr_in="predeblur.stride_conv_hr1.weight" in state,
        with_predeblur=with_predeblur,
        with_tsa=with_tsa,
    )
    try:
        cfg.validate()
    except ValueError as e:
        raise CheckpointError(f"checkpoint {source!r}: inferred architecture is invalid: {e}") from None
    return cfg


def read_checkpoint(weights: Weights) -> Checkpoint:
    """Read a path or state dict of any supported layout into a ``Checkpoint``."""
    if isinstance(weights, Mapping):
        source, obj = "<state dict>", weights
    elif isinstance(weights, (str, os.PathLike)):
        source = os.fspath(weights)
        obj = _read_file(Path(source))
    else:
        raise CheckpointError(f"'weights' must be a path or a state dict, got {type(weights).__name__}")
    state, layout = to_basicsr(_state_dict_of(obj, source))
    return Checkpoint(state=state, config=infer_config(state, source), layout=layout, source=source)


def check_compatible(model: torch.nn.Module, state: StateDict, source: str) -> None:
    """Raise a ``CheckpointError`` listing missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {source!r} does not match EDVR {model.config}: "
                              f"missing keys {missing[:5]}{' …' if len(missing) > 5 else ''} "
                              f"({len(missing)} in all), unexpected keys {unexpected[:5]}"
                              f"{' …' if len(unexpected) > 5 else ''} ({len(unexpected)} in all)")
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if state[k].shape != v.shape]
    if shapes:
        raise CheckpointError(f"checkpoint {source!r}: tensor shapes differ from the inferred architecture "
                              f"(checkpoint vs model): {'; '.join(shapes[:5])}")


def load_model(weights: Weights, *, device: str | torch.device = "cpu") -> EDVR:
    """Build EDVR for a checkpoint and load its weights (eval mode, fp32).

    Args:
        weights: path to a BasicSR, mmagic or original-EDVR checkpoint, or a state dict.
        device: where the model lives.

    Raises:
        CheckpointError: the file is missing, empty, truncated, not a checkpoint,
            would run code, or holds weights of another network or other shapes.
    """
    ckpt = read_checkpoint(weights)
    model = EDVR(**ckpt.config.as_dict())
    check_compatible(model, ckpt.state, ckpt.source)
    model.load_state_dict({k: v.float() for k, v in ckpt.state.items()}, strict=True)
    return model.to(device).eval()


def write_checkpoint(ckpt: Checkpoint, output: str | os.PathLike[str], *, half: bool = False) -> str:
    """Write ``ckpt``'s weights in BasicSR's layout (``{"params": ...}``, fp16 if ``half``) to ``output``,
    atomically; returns the written file's sha256."""
    state = {k: (v.half() if half else v).contiguous() for k, v in ckpt.state.items()}
    with atomic_output(output) as tmp:
        torch.save({"params": state}, tmp)
    return sha256_of(output)
