"""EDVR's building blocks, with BasicSR's module and parameter names: residual blocks, PCD
alignment, TSA fusion and the pre-deblurring module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edvr_vs.nn.conv import conv1, conv3, lrelu
from edvr_vs.nn.dcn import DCNv2Pack

Pyramid = list[torch.Tensor]  # [L1 (n, C, h, w), L2 (n, C, h/2, w/2), L3 (n, C, h/4, w/4)]


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear ×2, ``align_corners=False`` (``nn.Upsample`` in BasicSR)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


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
        return self.conv2.run(self.conv1.run(x, "relu"), add=x)


def residual_stack(num_block: int, num_feat: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlockNoBN(num_feat) for _ in range(num_block)))


class PCDAlignment(nn.Module):
    """Pyramid, cascading and deformable alignment of neighbour to reference features.

    Level ``l3`` (1/4 size) runs first; offsets and features are upsampled ×2
    (offsets also doubled in magnitude) into the next level; a cascading DCN
    refines the L1 result.
    """

    def __init__(self, num_feat: int = 64, deformable_groups: int = 8) -> None:
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
            self.dcn_pack[level] = DCNv2Pack(num_feat, num_feat, 3, padding=1, deformable_groups=deformable_groups)
            if i < 3:
                self.feat_conv[level] = conv3(num_feat * 2, num_feat)
        self.cas_offset_conv1 = conv3(num_feat * 2, num_feat)
        self.cas_offset_conv2 = conv3(num_feat, num_feat)
        self.cas_dcnpack = DCNv2Pack(num_feat, num_feat, 3, padding=1, deformable_groups=deformable_groups)

    def forward(self, nbr_feat_l: Pyramid, ref_l1: torch.Tensor, first: Pyramid) -> torch.Tensor:
        """Align n neighbours to their references: features ``nbr_feat_l`` (each level (n, C, ...)),
        the references' L1 features (n, C, h, w), and each level's ``offset_conv1(cat(nbr, ref))``
        before its activation (``first``; built from per-frame halves, see ``EDVR.frame_features``).
        Returns the aligned L1 features (n, C, h, w)."""
        up_offset = up_feat = None
        feat = nbr_feat_l[0]
        for i in (3, 2, 1):
            level = f"l{i}"
            offset = lrelu(first[i - 1])
            if i == 3:
                offset = self.offset_conv2[level].run(offset, "lrelu")
            else:
                offset = self.offset_conv2[level].run(torch.cat([offset, up_offset], dim=1), "lrelu")
                offset = self.offset_conv3[level].run(offset, "lrelu")
            feat = self.dcn_pack[level](nbr_feat_l[i - 1], offset)
            if i < 3:
                feat = self.feat_conv[level].run(torch.cat([feat, up_feat], dim=1), "lrelu" if i > 1 else None)
            else:
                feat = lrelu(feat)
            if i > 1:
                up_offset = upsample2(offset) * 2
                up_feat = upsample2(feat)
        offset = torch.cat([feat, ref_l1], dim=1)
        offset = self.cas_offset_conv2.run(self.cas_offset_conv1.run(offset, "lrelu"), "lrelu")
        return lrelu(self.cas_dcnpack(feat, offset))


def _weigh(aligned: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
    """``aligned (b, t, C, h, w) * corr (b, t, 1, h, w)`` as (b, t·C, h, w). In inference it is written
    straight in the features' memory format (a reshape of the product would copy it into NCHW, and
    the 1×1 convolutions would copy it back); autograd, which ``out=`` does not allow, takes the reshape."""
    b, t, c, h, w = aligned.shape
    if torch.is_grad_enabled() and (aligned.requires_grad or corr.requires_grad):
        return (aligned * corr).reshape(b, t * c, h, w)
    channels_last = aligned.stride(2) == 1
    weighted = torch.empty((b, t * c, h, w), dtype=aligned.dtype, device=aligned.device,
                           memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.mul(aligned, corr, out=weighted.unflatten(1, (t, c)))
    return weighted


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
        weighted = _weigh(aligned_feat, corr.unsqueeze(2))

        feat = self.feat_fusion.run(weighted, "lrelu")

        # Spatial attention over a three-level pyramid.
        attn = self.spatial_attn1.run(weighted, "lrelu")
        attn = self.spatial_attn2.run(self._pool(attn), "lrelu")
        attn_level = self.spatial_attn_l1.run(attn, "lrelu")
        attn_level = self.spatial_attn_l2.run(self._pool(attn_level), "lrelu")
        attn_level = upsample2(self.spatial_attn_l3.run(attn_level, "lrelu"))
        attn = self.spatial_attn3.run(attn, "lrelu") + attn_level
        attn = upsample2(self.spatial_attn4.run(attn, "lrelu"))
        attn = self.spatial_attn5(attn)
        attn_add = self.spatial_attn_add2(self.spatial_attn_add1.run(attn, "lrelu"))
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
        feat_l1 = self.conv_first.run(x, "lrelu")
        if self.hr_in:
            feat_l1 = self.stride_conv_hr2.run(self.stride_conv_hr1.run(feat_l1, "lrelu"), "lrelu")
        feat_l2 = self.stride_conv_l2.run(feat_l1, "lrelu")
        feat_l3 = self.stride_conv_l3.run(feat_l2, "lrelu")
        feat_l3 = upsample2(self.resblock_l3(feat_l3))
        feat_l2 = upsample2(self.resblock_l2_2(self.resblock_l2_1(feat_l2) + feat_l3))
        feat_l1 = self.resblock_l1[1](self.resblock_l1[0](feat_l1)) + feat_l2
        for block in self.resblock_l1[2:]:
            feat_l1 = block(feat_l1)
        return feat_l1
