"""An independent oracle: BasicSR's EDVR forward pass, transcribed as plain functions.

It reads weights by their BasicSR key names from a state dict, uses
``torchvision.ops.deform_conv2d`` for every DCN, and runs one PCD alignment per
neighbour as BasicSR does. It shares no code with ``edvr_vs.nn``, so agreement
shows that our modules compute BasicSR's function on BasicSR's keys. It is also the
baseline that ``scripts/bench.py`` measures the filter against ("BasicSR's approach").

Never used at run time: it needs torchvision, which only the ``test`` extra installs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision


class Ref:
    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.s = state

    def conv(self, name: str, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        w = self.s[name + ".weight"]
        return F.conv2d(x, w, self.s[name + ".bias"], stride, w.shape[-1] // 2)

    @staticmethod
    def lrelu(x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.1)

    @staticmethod
    def up(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
        return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)

    def resblock(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(name + ".conv2", F.relu(self.conv(name + ".conv1", x)))

    def stack(self, name: str, x: torch.Tensor) -> torch.Tensor:
        i = 0
        while f"{name}.{i}.conv1.weight" in self.s:
            x = self.resblock(f"{name}.{i}", x)
            i += 1
        return x

    def dcn(self, name: str, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        out = self.conv(name + ".conv_offset", feat)
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        return torchvision.ops.deform_conv2d(x, torch.cat((o1, o2), 1), self.s[name + ".weight"],
                                             self.s[name + ".bias"], 1, 1, 1, torch.sigmoid(mask))

    def pcd(self, nbr: list[torch.Tensor], ref: list[torch.Tensor]) -> torch.Tensor:
        up_off = up_feat = feat = None
        for i in (3, 2, 1):
            lv = f"l{i}"
            off = self.lrelu(self.conv(f"pcd_align.offset_conv1.{lv}", torch.cat([nbr[i - 1], ref[i - 1]], 1)))
            if i == 3:
                off = self.lrelu(self.conv(f"pcd_align.offset_conv2.{lv}", off))
            else:
                off = self.lrelu(self.conv(f"pcd_align.offset_conv2.{lv}", torch.cat([off, up_off], 1)))
                off = self.lrelu(self.conv(f"pcd_align.offset_conv3.{lv}", off))
            feat = self.dcn(f"pcd_align.dcn_pack.{lv}", nbr[i - 1], off)
            if i < 3:
                feat = self.conv(f"pcd_align.feat_conv.{lv}", torch.cat([feat, up_feat], 1))
            if i > 1:
                feat = self.lrelu(feat)
                up_off = self.up(off) * 2
                up_feat = self.up(feat)
        off = torch.cat([feat, ref[0]], 1)
        off = self.lrelu(self.conv("pcd_align.cas_offset_conv2", self.lrelu(self.conv("pcd_align.cas_offset_conv1", off))))
        return self.lrelu(self.dcn("pcd_align.cas_dcnpack", feat, off))

    def tsa(self, aligned: torch.Tensor, center: int) -> torch.Tensor:
        b, t, c, h, w = aligned.shape
        emb_ref = self.conv("fusion.temporal_attn1", aligned[:, center])
        emb = self.conv("fusion.temporal_attn2", aligned.reshape(-1, c, h, w)).view(b, t, -1, h, w)
        corr = torch.cat([torch.sum(emb[:, i] * emb_ref, 1, keepdim=True) for i in range(t)], 1)
        prob = torch.sigmoid(corr).unsqueeze(2).expand(b, t, c, h, w).reshape(b, -1, h, w)
        aligned = aligned.reshape(b, -1, h, w) * prob
        feat = self.lrelu(self.conv("fusion.feat_fusion", aligned))

        def pool(x):
            return torch.cat([F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1)], 1)

        attn = self.lrelu(self.conv("fusion.spatial_attn1", aligned))
        attn = self.lrelu(self.conv("fusion.spatial_attn2", pool(attn)))
        lvl = self.lrelu(self.conv("fusion.spatial_attn_l1", attn))
        lvl = self.lrelu(self.conv("fusion.spatial_attn_l2", pool(lvl)))
        lvl = self.up(self.lrelu(self.conv("fusion.spatial_attn_l3", lvl)))
        attn = self.lrelu(self.conv("fusion.spatial_attn3", attn)) + lvl
        attn = self.up(self.lrelu(self.conv("fusion.spatial_attn4", attn)))
        attn = self.conv("fusion.spatial_attn5", attn)
        add = self.conv("fusion.spatial_attn_add2", self.lrelu(self.conv("fusion.spatial_attn_add1", attn)))
        return feat * torch.sigmoid(attn) * 2 + add

    def predeblur(self, x: torch.Tensor) -> torch.Tensor:
        l1 = self.lrelu(self.conv("predeblur.conv_first", x))
        if "predeblur.stride_conv_hr1.weight" in self.s:
            l1 = self.lrelu(self.conv("predeblur.stride_conv_hr1", l1, 2))
            l1 = self.lrelu(self.conv("predeblur.stride_conv_hr2", l1, 2))
        l2 = self.lrelu(self.conv("predeblur.stride_conv_l2", l1, 2))
        l3 = self.lrelu(self.conv("predeblur.stride_conv_l3", l2, 2))
        l3 = self.up(self.resblock("predeblur.resblock_l3", l3))
        l2 = self.resblock("predeblur.resblock_l2_1", l2) + l3
        l2 = self.up(self.resblock("predeblur.resblock_l2_2", l2))
        for i in range(2):
            l1 = self.resblock(f"predeblur.resblock_l1.{i}", l1)
        l1 = l1 + l2
        for i in range(2, 5):
            l1 = self.resblock(f"predeblur.resblock_l1.{i}", l1)
        return l1

    def __call__(self, x: torch.Tensor, center: int | None = None) -> torch.Tensor:
        b, t, c, h, w = x.shape
        center = t // 2 if center is None else center
        hr_in = "predeblur.stride_conv_hr1.weight" in self.s
        x_center = x[:, center]
        if "predeblur.conv_first.weight" in self.s:
            l1 = self.conv("conv_1x1", self.predeblur(x.view(-1, c, h, w)))
            if hr_in:
                h, w = h // 4, w // 4
        else:
            l1 = self.lrelu(self.conv("conv_first", x.view(-1, c, h, w)))
        l1 = self.stack("feature_extraction", l1)
        l2 = self.lrelu(self.conv("conv_l2_2", self.lrelu(self.conv("conv_l2_1", l1, 2))))
        l3 = self.lrelu(self.conv("conv_l3_2", self.lrelu(self.conv("conv_l3_1", l2, 2))))
        l1 = l1.view(b, t, -1, h, w)
        l2 = l2.view(b, t, -1, h // 2, w // 2)
        l3 = l3.view(b, t, -1, h // 4, w // 4)
        ref = [l1[:, center], l2[:, center], l3[:, center]]
        aligned = torch.stack([self.pcd([l1[:, i], l2[:, i], l3[:, i]], ref) for i in range(t)], 1)
        if "fusion.temporal_attn1.weight" in self.s:
            feat = self.tsa(aligned, center)
        else:
            feat = self.conv("fusion", aligned.view(b, -1, h, w))
        out = self.stack("reconstruction", feat)
        out = self.lrelu(F.pixel_shuffle(self.conv("upconv1", out), 2))
        out = self.lrelu(F.pixel_shuffle(self.conv("upconv2", out), 2))
        out = self.conv("conv_last", self.lrelu(self.conv("conv_hr", out)))
        return out + (x_center if hr_in else self.up(x_center, 4))
