"""EDVR (Wang et al., CVPR-W 2019) with BasicSR's module and parameter names.

Every ``state_dict`` key equals the one in BasicSR's ``basicsr/archs/edvr_arch.py``,
so BasicSR checkpoints load with ``strict=True``. The forward pass computes the
same function; it is split into per-frame and per-window parts so the filter
can cache what depends on one frame alone:

``extract_features``  frames → pyramid features (L1, L2, L3)          per frame
``pcd_align``         (neighbour, reference) features → aligned L1     per window, batched
``fuse``              aligned features of a window → fused features    per window
``reconstruct``       fused features + centre frame → restored frame   per window
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edvr_vs.nn.dcn import BackendName, DCNv2Pack

Pyramid = list[torch.Tensor]  # [L1 (n, C, h, w), L2 (n, C, h/2, w/2), L3 (n, C, h/4, w/4)]


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear ×2, ``align_corners=False`` (``nn.Upsample`` in BasicSR)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1)


def conv1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, 1)


class ResidualBlockNoBN(nn.Module):
    """``x + conv2(relu(conv1(x)))``; weights start as Kaiming-normal × 0.1 (BasicSR)."""

    def __init__(self, num_feat: int = 64) -> None:
        super().__init__()
        self.conv1 = conv3(num_feat, num_feat)
        self.conv2 = conv3(num_feat, num_feat)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight)
            with torch.no_grad():
                conv.weight.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def residual_stack(num_block: int, num_feat: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlockNoBN(num_feat) for _ in range(num_block)))


class PCDAlignment(nn.Module):
    """Pyramid, cascading and deformable alignment of neighbour to reference features.

    Level ``l3`` (1/4 size) runs first; offsets and features are upsampled ×2
    (offsets also doubled in magnitude) into the next level; a cascading DCN
    refines the L1 result.
    """

    def __init__(self, num_feat: int = 64, deformable_groups: int = 8, backend: BackendName = "auto") -> None:
        super().__init__()
        self.offset_conv1 = nn.ModuleDict()
        self.offset_conv2 = nn.ModuleDict()
        self.offset_conv3 = nn.ModuleDict()
        self.dcn_pack = nn.ModuleDict()
        self.feat_conv = nn.ModuleDict()
        for i in (3, 2, 1):
            level = f"l{i}"
            self.offset_conv1[level] = conv3(num_feat * 2, num_feat)
            if i == 3:
                self.offset_conv2[level] = conv3(num_feat, num_feat)
            else:
                self.offset_conv2[level] = conv3(num_feat * 2, num_feat)
                self.offset_conv3[level] = conv3(num_feat, num_feat)
            self.dcn_pack[level] = DCNv2Pack(num_feat, num_feat, 3, padding=1,
                                             deformable_groups=deformable_groups, backend=backend)
            if i < 3:
                self.feat_conv[level] = conv3(num_feat * 2, num_feat)
        self.cas_offset_conv1 = conv3(num_feat * 2, num_feat)
        self.cas_offset_conv2 = conv3(num_feat, num_feat)
        self.cas_dcnpack = DCNv2Pack(num_feat, num_feat, 3, padding=1,
                                     deformable_groups=deformable_groups, backend=backend)

    def forward(self, nbr_feat_l: Pyramid, ref_feat_l: Pyramid) -> torch.Tensor:
        """Align; both pyramids have the same batch size n. Returns (n, C, h, w)."""
        first = [self.offset_conv1[f"l{i + 1}"](torch.cat([nbr, ref], dim=1))
                 for i, (nbr, ref) in enumerate(zip(nbr_feat_l, ref_feat_l))]
        return self.align_from_first_offsets(nbr_feat_l, ref_feat_l[0], first)

    def align_from_first_offsets(self, nbr_feat_l: Pyramid, ref_l1: torch.Tensor, first: Pyramid) -> torch.Tensor:
        """Align, given each level's ``offset_conv1`` output before its activation.

        ``offset_conv1`` is linear in ``cat(nbr, ref)``, so a caller may build
        ``first`` from per-frame halves computed once (see ``EDVR.split_offset_conv1``).
        """
        up_offset = up_feat = None
        feat = nbr_feat_l[0]
        for i in (3, 2, 1):
            level = f"l{i}"
            offset = lrelu(first[i - 1])
            if i == 3:
                offset = lrelu(self.offset_conv2[level](offset))
            else:
                offset = lrelu(self.offset_conv2[level](torch.cat([offset, up_offset], dim=1)))
                offset = lrelu(self.offset_conv3[level](offset))
            feat = self.dcn_pack[level](nbr_feat_l[i - 1], offset)
            if i < 3:
                feat = self.feat_conv[level](torch.cat([feat, up_feat], dim=1))
            if i > 1:
                feat = lrelu(feat)
                up_offset = upsample2(offset) * 2
                up_feat = upsample2(feat)
        offset = torch.cat([feat, ref_l1], dim=1)
        offset = lrelu(self.cas_offset_conv2(lrelu(self.cas_offset_conv1(offset))))
        return lrelu(self.cas_dcnpack(feat, offset))


class TSAFusion(nn.Module):
    """Temporal and spatial attention fusion: (b, t, C, h, w) → (b, C, h, w); h, w even."""

    def __init__(self, num_feat: int = 64, num_frame: int = 5, center_frame_idx: int = 2) -> None:
        super().__init__()
        self.center_frame_idx = center_frame_idx
        self.temporal_attn1 = conv3(num_feat, num_feat)
        self.temporal_attn2 = conv3(num_feat, num_feat)
        self.feat_fusion = conv1(num_frame * num_feat, num_feat)
        self.max_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg_pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.spatial_attn1 = conv1(num_frame * num_feat, num_feat)
        self.spatial_attn2 = conv1(num_feat * 2, num_feat)
        self.spatial_attn3 = conv3(num_feat, num_feat)
        self.spatial_attn4 = conv1(num_feat, num_feat)
        self.spatial_attn5 = conv3(num_feat, num_feat)
        self.spatial_attn_l1 = conv1(num_feat, num_feat)
        self.spatial_attn_l2 = conv3(num_feat * 2, num_feat)
        self.spatial_attn_l3 = conv3(num_feat, num_feat)
        self.spatial_attn_add1 = conv1(num_feat, num_feat)
        self.spatial_attn_add2 = conv1(num_feat, num_feat)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.max_pool(x), self.avg_pool(x)], dim=1)

    def forward(self, aligned_feat: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = aligned_feat.shape
        # Temporal attention: sigmoid of each frame's embedding correlated with the centre's.
        emb_ref = self.temporal_attn1(aligned_feat[:, self.center_frame_idx])
        emb = self.temporal_attn2(aligned_feat.reshape(b * t, c, h, w)).view(b, t, -1, h, w)
        corr = torch.sigmoid((emb * emb_ref.unsqueeze(1)).sum(dim=2))  # (b, t, h, w)
        weighted = (aligned_feat * corr.unsqueeze(2)).reshape(b, t * c, h, w)

        feat = lrelu(self.feat_fusion(weighted))

        # Spatial attention over a three-level pyramid.
        attn = lrelu(self.spatial_attn1(weighted))
        attn = lrelu(self.spatial_attn2(self._pool(attn)))
        attn_level = lrelu(self.spatial_attn_l1(attn))
        attn_level = lrelu(self.spatial_attn_l2(self._pool(attn_level)))
        attn_level = upsample2(lrelu(self.spatial_attn_l3(attn_level)))
        attn = lrelu(self.spatial_attn3(attn)) + attn_level
        attn = upsample2(lrelu(self.spatial_attn4(attn)))
        attn = self.spatial_attn5(attn)
        attn_add = self.spatial_attn_add2(lrelu(self.spatial_attn_add1(attn)))
        return feat * torch.sigmoid(attn) * 2 + attn_add


class PredeblurModule(nn.Module):
    """Pre-deblurring pyramid of residual blocks; with ``hr_in`` it first downsamples ×4."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, hr_in: bool = False) -> None:
        super().__init__()
        self.hr_in = hr_in
        self.conv_first = conv3(num_in_ch, num_feat)
        if hr_in:
            self.stride_conv_hr1 = conv3(num_feat, num_feat, 2)
            self.stride_conv_hr2 = conv3(num_feat, num_feat, 2)
        self.stride_conv_l2 = conv3(num_feat, num_feat, 2)
        self.stride_conv_l3 = conv3(num_feat, num_feat, 2)
        self.resblock_l3 = ResidualBlockNoBN(num_feat)
        self.resblock_l2_1 = ResidualBlockNoBN(num_feat)
        self.resblock_l2_2 = ResidualBlockNoBN(num_feat)
        self.resblock_l1 = nn.ModuleList(ResidualBlockNoBN(num_feat) for _ in range(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat_l1 = lrelu(self.conv_first(x))
        if self.hr_in:
            feat_l1 = lrelu(self.stride_conv_hr2(lrelu(self.stride_conv_hr1(feat_l1))))
        feat_l2 = lrelu(self.stride_conv_l2(feat_l1))
        feat_l3 = lrelu(self.stride_conv_l3(feat_l2))
        feat_l3 = upsample2(self.resblock_l3(feat_l3))
        feat_l2 = upsample2(self.resblock_l2_2(self.resblock_l2_1(feat_l2) + feat_l3))
        feat_l1 = self.resblock_l1[1](self.resblock_l1[0](feat_l1)) + feat_l2
        for block in self.resblock_l1[2:]:
            feat_l1 = block(feat_l1)
        return feat_l1


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
    def center(self) -> int:
        return self.num_frame // 2 if self.center_frame_idx is None else self.center_frame_idx

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


class EDVR(nn.Module):
    """EDVR: ``(b, t, c, h, w)`` in [0, 1] → ``(b, out, 4h, 4w)``, or ``(b, out, h, w)`` with ``hr_in``.

    ``h`` and ``w`` must be multiples of 4 (16 with ``hr_in``); the filter pads.
    Constructor arguments are BasicSR's; ``dcn_backend`` picks the deformable
    sampling backend (``auto``: CuPy kernel on CUDA, pure torch elsewhere).
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
        dcn_backend: BackendName = "auto",
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
        self.center_frame_idx = cfg.center
        self.hr_in = hr_in
        self.with_predeblur = with_predeblur
        self.with_tsa = with_tsa

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

        self.pcd_align = PCDAlignment(num_feat, deformable_groups, dcn_backend)
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

    def set_dcn_backend(self, backend: BackendName) -> None:
        for m in self.modules():
            if isinstance(m, DCNv2Pack):
                m.backend = backend

    def extract_features(self, frames: torch.Tensor) -> Pyramid:
        """``(n, c, h, w)`` frames → [L1, L2, L3] features of ``num_feat`` channels."""
        if self.with_predeblur:
            feat_l1 = self.conv_1x1(self.predeblur(frames))
        else:
            feat_l1 = lrelu(self.conv_first(frames))
        feat_l1 = self.feature_extraction(feat_l1)
        feat_l2 = lrelu(self.conv_l2_2(lrelu(self.conv_l2_1(feat_l1))))
        feat_l3 = lrelu(self.conv_l3_2(lrelu(self.conv_l3_1(feat_l2))))
        return [feat_l1, feat_l2, feat_l3]

    def split_offset_conv1(self, feats: Pyramid) -> tuple[Pyramid, Pyramid]:
        """Per-frame halves of each level's ``offset_conv1``.

        ``offset_conv1(cat(nbr, ref)) = conv(nbr, W[:, :C]) + conv(ref, W[:, C:]) + bias``.
        Returns (as-neighbour halves without bias, as-reference halves with bias),
        each a pyramid like ``feats``; the sum of a neighbour's and a reference's
        halves is that pair's ``offset_conv1`` output.
        """
        as_nbr, as_ref = [], []
        for i, feat in enumerate(feats):
            conv = self.pcd_align.offset_conv1[f"l{i + 1}"]
            c = feat.shape[1]
            as_nbr.append(F.conv2d(feat, conv.weight[:, :c], None, 1, 1))
            as_ref.append(F.conv2d(feat, conv.weight[:, c:], conv.bias, 1, 1))
        return as_nbr, as_ref

    def fuse(self, aligned: torch.Tensor) -> torch.Tensor:
        """``(b, t, C, h, w)`` aligned features → ``(b, C, h, w)``."""
        if self.with_tsa:
            return self.fusion(aligned)
        b, t, c, h, w = aligned.shape
        return self.fusion(aligned.reshape(b, t * c, h, w))

    def reconstruct(self, fused: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """Fused features ``(b, C, h, w)`` + centre frame → restored ``(b, out, H, W)``."""
        out = self.reconstruction(fused)
        out = lrelu(self.pixel_shuffle(self.upconv1(out)))
        out = lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(lrelu(self.conv_hr(out)))
        if self.hr_in:
            return out + center
        return out + F.interpolate(center, scale_factor=4, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = x.shape
        m = self.config.multiple
        if h % m or w % m:
            raise ValueError(f"EDVR: height and width must be multiples of {m}, got {h}×{w}")
        if t != self.config.num_frame:
            raise ValueError(f"EDVR: expected {self.config.num_frame} frames, got {t}")
        feats = self.extract_features(x.reshape(b * t, c, h, w))
        nbr = [f.view(b, t, *f.shape[1:]) for f in feats]
        ref = [f[:, self.center_frame_idx:self.center_frame_idx + 1].expand_as(f) for f in nbr]
        flat = [f.reshape(b * t, *f.shape[2:]) for f in nbr]
        ref_flat = [f.reshape(b * t, *f.shape[2:]) for f in ref]
        aligned = self.pcd_align(flat, ref_flat)
        aligned = aligned.view(b, t, *aligned.shape[1:])
        return self.reconstruct(self.fuse(aligned), x[:, self.center_frame_idx])
