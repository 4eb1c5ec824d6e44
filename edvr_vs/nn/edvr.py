"""EDVR (Wang et al., CVPR-W 2019) with BasicSR's module and parameter names.

Every ``state_dict`` key equals the one in BasicSR's ``basicsr/archs/edvr_arch.py``,
so BasicSR checkpoints load with ``strict=True``. The network is built from two parts,
and ``forward`` is nothing but the two in a row, so the filter can cache what depends
on one frame alone:

``frame_features``  frames → ``FrameFeatures``: pyramid (L1, L2, L3) and each level's
                    ``offset_conv1`` applied to the frame as neighbour and as reference
                    (that conv is linear in ``cat(neighbour, reference)``)   per frame
``restore_window``  ``WindowInputs`` (the window's frame features, the centre's
                    reference halves, L1 and RGB) → PCD alignment, fusion,
                    reconstruction → the restored centre frame              per window
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from edvr_vs.nn.blocks import PCDAlignment, PredeblurModule, Pyramid, TSAFusion, residual_stack
from edvr_vs.nn.conv import conv1, conv3, set_fused
from edvr_vs.nn.dcn import BackendName, DCNv2Pack


@dataclass(frozen=True, kw_only=True)
class EDVRConfig:
    """Everything that defines an EDVR architecture (BasicSR's constructor arguments)."""

    num_in_ch: int = 3
    num_out_ch: int = 3
    num_feat: int = 64
    num_frame: int = 5
    deformable_groups: int = 8
    num_extract_block: int = 5
    num_reconstruct_block: int = 10
    center_frame_idx: int | None = None
    hr_in: bool = False
    with_predeblur: bool = False
    with_tsa: bool = True

    @property
    def radius(self) -> int:
        """N: a window is frames n-N .. n+N (``num_frame`` = 2N+1)."""
        return self.num_frame // 2

    @property
    def center(self) -> int:
        """The reference frame's position in the window (N unless ``center_frame_idx`` says otherwise)."""
        return self.radius if self.center_frame_idx is None else self.center_frame_idx

    @property
    def scale(self) -> int:
        """Output size ÷ input size: 1 with ``hr_in``, else 4."""
        return 1 if self.hr_in else 4

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (16 with ``hr_in``, else 4)."""
        return 16 if self.hr_in else 4

    def validate(self) -> None:
        def positive(name: str) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"EDVR: {name!r} must be a positive int, got {v!r}")

        for name in ("num_in_ch", "num_out_ch", "num_feat", "num_frame", "deformable_groups"):
            positive(name)
        for name in ("num_extract_block", "num_reconstruct_block"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"EDVR: {name!r} must be an int ≥ 0, got {v!r}")
        if self.num_frame % 2 == 0:
            raise ValueError(f"EDVR: 'num_frame' must be odd, got {self.num_frame}")
        if not 0 <= self.center < self.num_frame:
            raise ValueError(f"EDVR: 'center_frame_idx' must be in [0, {self.num_frame - 1}], got {self.center}")
        if self.num_feat % self.deformable_groups:
            raise ValueError(f"EDVR: 'num_feat' ({self.num_feat}) must be a multiple of "
                             f"'deformable_groups' ({self.deformable_groups})")
        if self.hr_in and not self.with_predeblur:
            raise ValueError("EDVR: 'hr_in' needs 'with_predeblur' (the pre-deblur module does the ×4 downsampling)")

    def as_dict(self) -> dict[str, int | bool | None]:
        return asdict(self)


class FrameFeatures(NamedTuple):
    """Everything of one frame's (batch of n frames') that a window needs; each (n, ...)."""

    frames: torch.Tensor  # (n, 3, h, w), the input
    feats: Pyramid  # L1, L2, L3 features
    as_nbr: Pyramid  # each level's offset_conv1 half for the frame as a neighbour (no bias)
    as_ref: Pyramid  # each level's offset_conv1 half for the frame as the reference (with bias)

    def tensors(self) -> Iterator[torch.Tensor]:
        yield self.frames
        for pyramid in (self.feats, self.as_nbr, self.as_ref):
            yield from pyramid


class WindowInputs(NamedTuple):
    """The inputs of ``EDVR.restore_window`` for b windows of t frames, in the fixed order that CUDA
    graphs capture (``tuple(inputs)``; ``WindowInputs(*tensors)`` rebuilds it)."""

    feat_l1: torch.Tensor  # (b·t, C, h, w): every window frame's features, window by window
    feat_l2: torch.Tensor  # (b·t, C, h/2, w/2)
    feat_l3: torch.Tensor  # (b·t, C, h/4, w/4)
    nbr_l1: torch.Tensor  # offset_conv1 neighbour halves, shaped as feat_l*
    nbr_l2: torch.Tensor
    nbr_l3: torch.Tensor
    ref_l1: torch.Tensor  # (b, C, h, w): the centre's offset_conv1 reference halves
    ref_l2: torch.Tensor
    ref_l3: torch.Tensor
    center_l1: torch.Tensor  # (b, C, h, w): the centre's L1 features
    center_frame: torch.Tensor  # (b, 3, h, w): the centre frame

    @staticmethod
    def parts(frames: Sequence[FrameFeatures], center: FrameFeatures) -> list[list[torch.Tensor]]:
        """Per field, the tensors to concatenate along the batch for one window of per-frame features."""
        return [*([f.feats[k] for f in frames] for k in range(3)), *([f.as_nbr[k] for f in frames] for k in range(3)),
                *([center.as_ref[k]] for k in range(3)), [center.feats[0]], [center.frames]]

    @classmethod
    def gather(cls, frames: Sequence[FrameFeatures], center: FrameFeatures,
               out: WindowInputs | None = None) -> WindowInputs:
        """One window's inputs from its frames' features and its centre's (into ``out``'s buffers if given)."""
        parts = cls.parts(frames, center)
        if out is not None:
            return cls(*(torch.cat(p, out=o) for p, o in zip(parts, out)))
        return cls(*(torch.cat(p) if len(p) > 1 else p[0] for p in parts))


class EDVR(nn.Module):
    """EDVR: ``(b, t, c, h, w)`` in [0, 1] → ``(b, out, 4h, 4w)``, or ``(b, out, h, w)`` with ``hr_in``.

    ``h`` and ``w`` must be multiples of 4 (16 with ``hr_in``); the filter pads.
    Constructor arguments are BasicSR's; ``set_dcn`` chooses how the deformable
    convolutions run.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_frame: int = 5,
        deformable_groups: int = 8,
        num_extract_block: int = 5,
        num_reconstruct_block: int = 10,
        center_frame_idx: int | None = None,
        hr_in: bool = False,
        with_predeblur: bool = False,
        with_tsa: bool = True,
    ) -> None:
        super().__init__()
        cfg = EDVRConfig(
            num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_frame=num_frame,
            deformable_groups=deformable_groups, num_extract_block=num_extract_block,
            num_reconstruct_block=num_reconstruct_block, center_frame_idx=center_frame_idx,
            hr_in=hr_in, with_predeblur=with_predeblur, with_tsa=with_tsa,
        )
        cfg.validate()
        self.config = cfg

        if with_predeblur:
            self.predeblur = PredeblurModule(num_in_ch, num_feat, hr_in)
            self.conv_1x1 = conv1(num_feat, num_feat)
        else:
            self.conv_first = conv3(num_in_ch, num_feat)
        self.feature_extraction = residual_stack(num_extract_block, num_feat)
        self.conv_l2_1 = conv3(num_feat, num_feat, 2)
        self.conv_l2_2 = conv3(num_feat, num_feat)
        self.conv_l3_1 = conv3(num_feat, num_feat, 2)
        self.conv_l3_2 = conv3(num_feat, num_feat)

        self.pcd_align = PCDAlignment(num_feat, deformable_groups)
        if with_tsa:
            self.fusion: nn.Module = TSAFusion(num_feat, num_frame, cfg.center)
        else:
            self.fusion = conv1(num_frame * num_feat, num_feat)

        self.reconstruction = residual_stack(num_reconstruct_block, num_feat)
        self.upconv1 = conv3(num_feat, num_feat * 4)
        self.upconv2 = conv3(num_feat, 64 * 4)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = conv3(64, 64)
        self.conv_last = conv3(64, num_out_ch)

    def set_fused_convs(self, enabled: bool) -> None:
        """Convolutions with their activation and residual add fused on the CPU (``edvr_vs.nn.conv``)."""
        set_fused(self, enabled)

    def set_dcn(self, *, backend: BackendName | None = None, check_offsets: bool | None = None,
                autotune: bool | None = None) -> None:
        """How every deformable convolution runs: its sampling ``backend`` (``edvr_vs.nn.dcn``; ``auto``:
        the CuPy kernels on CUDA, pure torch elsewhere), whether ``cupy`` times its two kernels per shape
        (``autotune``), and BasicSR's offset-magnitude warning (``check_offsets``, a host
        synchronisation per DCN). None keeps the current setting."""
        for m in self.modules():
            if isinstance(m, DCNv2Pack):
                for name, value in (("backend", backend), ("check_offsets", check_offsets), ("autotune", autotune)):
                    if value is not None:
                        setattr(m, name, value)

    # ---- per frame ------------------------------------------------------------------------------
    def extract_features(self, frames: torch.Tensor) -> Pyramid:
        """``(n, c, h, w)`` frames → [L1, L2, L3] features of ``num_feat`` channels."""
        if self.config.with_predeblur:
            feat_l1 = self.conv_1x1(self.predeblur(frames))
        else:
            feat_l1 = self.conv_first.run(frames, "lrelu")
        feat_l1 = self.feature_extraction(feat_l1)
        feat_l2 = self.conv_l2_2.run(self.conv_l2_1.run(feat_l1, "lrelu"), "lrelu")
        feat_l3 = self.conv_l3_2.run(self.conv_l3_1.run(feat_l2, "lrelu"), "lrelu")
        return [feat_l1, feat_l2, feat_l3]

    def offset_halves(self, feats: Pyramid, *, as_reference: bool) -> Pyramid:
        """Each level's ``offset_conv1`` half for frames with features ``feats``.

        ``offset_conv1(cat(nbr, ref)) = conv(nbr, W[:, :C]) + conv(ref, W[:, C:]) + bias``: the
        neighbour half has no bias, the reference half carries it, and a neighbour's half plus a
        reference's is that pair's ``offset_conv1`` output.
        """
        halves = []
        for i, feat in enumerate(feats):
            conv = self.pcd_align.offset_conv1[f"l{i + 1}"]
            c = feat.shape[1]
            if as_reference:
                halves.append(F.conv2d(feat, conv.weight[:, c:], conv.bias, 1, 1))
            else:
                halves.append(F.conv2d(feat, conv.weight[:, :c], None, 1, 1))
        return halves

    def frame_features(self, frames: torch.Tensor) -> FrameFeatures:
        """``(n, c, h, w)`` frames → what any window needs of them."""
        feats = self.extract_features(frames)
        return FrameFeatures(frames, feats, self.offset_halves(feats, as_reference=False),
                             self.offset_halves(feats, as_reference=True))

    # ---- per window -----------------------------------------------------------------------------
    def restore_window(self, w: WindowInputs, *, batch_align: bool = True) -> torch.Tensor:
        """b windows → their restored centre frames ``(b, out, H, W)``.

        ``batch_align``: the b·t alignments as one batch, or one call per frame (BasicSR's way; on
        the CPU faster at real sizes, since one frame's tensors stay in cache).
        """
        b = w.center_frame.shape[0]
        t = w.feat_l1.shape[0] // b
        nbr = [w.feat_l1, w.feat_l2, w.feat_l3]
        first = [a + _each_frame(r, t) for a, r in zip((w.nbr_l1, w.nbr_l2, w.nbr_l3), (w.ref_l1, w.ref_l2, w.ref_l3))]
        ref_l1 = _each_frame(w.center_l1, t)
        if batch_align:
            aligned = self.pcd_align(nbr, ref_l1, first)
        else:
            aligned = self._align_each(([f[j:j + 1] for f in nbr], ref_l1[j:j + 1], [f[j:j + 1] for f in first])
                                       for j in range(b * t))
        return self.reconstruct(self.fuse(_per_window(aligned, b, t)), w.center_frame)

    def restore_frames(self, frames: Sequence[FrameFeatures], center: FrameFeatures) -> torch.Tensor:
        """One window straight from its frames' features, aligned frame by frame: the result of
        ``restore_window(WindowInputs.gather(frames, center), batch_align=False)`` without gathering
        the window's tensors into batches first (the CPU's path)."""
        aligned = self._align_each((list(f.feats), center.feats[0], [a + r for a, r in zip(f.as_nbr, center.as_ref)])
                                   for f in frames)
        return self.reconstruct(self.fuse(_per_window(aligned, 1, len(frames))), center.frames)

    def _align_each(self, pairs: Iterable[tuple[Pyramid, torch.Tensor, Pyramid]]) -> torch.Tensor:
        """PCD alignment one neighbour at a time: (features, reference L1, first offsets) → (n, C, h, w)."""
        return torch.cat([self.pcd_align(nbr, ref_l1, first) for nbr, ref_l1, first in pairs])

    def fuse(self, aligned: torch.Tensor) -> torch.Tensor:
        """``(b, t, C, h, w)`` aligned features → ``(b, C, h, w)``."""
        if self.config.with_tsa:
            return self.fusion(aligned)
        b, t, c, h, w = aligned.shape
        return self.fusion(aligned.reshape(b, t * c, h, w))

    def reconstruct(self, fused: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """Fused features ``(b, C, h, w)`` + centre frame → restored ``(b, out, H, W)``."""
        out = self.reconstruction(fused)
        # The activation is elementwise, so it runs before the shuffle, inside the convolution.
        out = self.pixel_shuffle(self.upconv1.run(out, "lrelu"))
        out = self.pixel_shuffle(self.upconv2.run(out, "lrelu"))
        base = center if self.config.hr_in else F.interpolate(center, scale_factor=4, mode="bilinear",
                                                                align_corners=False)
        return self.conv_last.run(self.conv_hr.run(out, "lrelu"), add=base)

    # ---- both ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Windows ``(b, t, c, h, w)`` → restored centre frames: ``frame_features`` of every frame, then
        ``restore_window`` (the reference halves only for the centres, as BasicSR computes them)."""
        b, t, c, h, w = x.shape
        cfg = self.config
        if h % cfg.multiple or w % cfg.multiple:
            raise ValueError(f"EDVR: height and width must be multiples of {cfg.multiple}, got {h}×{w}")
        if t != cfg.num_frame:
            raise ValueError(f"EDVR: expected {cfg.num_frame} frames, got {t}")
        feats = self.extract_features(x.reshape(b * t, c, h, w))
        center = [_per_window(f, b, t)[:, cfg.center] for f in feats]
        inputs = WindowInputs(*feats, *self.offset_halves(feats, as_reference=False),
                              *self.offset_halves(center, as_reference=True), center[0], x[:, cfg.center])
        return self.restore_window(inputs)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``(..., h, w)`` → bottom and right edges replicated up to multiples of ``multiple`` (what
    ``EDVR`` needs: ``EDVRConfig.multiple``); the restored frame's first ``scale·h`` rows and
    ``scale·w`` columns are the unpadded frame's."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple), mode="replicate")


def _per_window(x: torch.Tensor, b: int, t: int) -> torch.Tensor:
    """(b·t, ...) → (b, t, ...)."""
    return x.view(b, t, *x.shape[1:])


def _each_frame(x: torch.Tensor, t: int) -> torch.Tensor:
    """(b, ...) → (b·t, ...): each window's tensor once for each of its t frames (a view when b = 1)."""
    return x.expand(t, *x.shape[1:]) if x.shape[0] == 1 else x.repeat_interleave(t, 0)
