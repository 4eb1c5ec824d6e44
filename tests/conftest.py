"""Shared fixtures: real footage from ../shared/data, small random checkpoints."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def read_png(path: Path) -> torch.Tensor:
    """PNG → float tensor (3, h, w) in [0, 1] (torchvision is a test-only dependency)."""
    from torchvision.io import ImageReadMode, decode_png, read_file

    return decode_png(read_file(str(path)), mode=ImageReadMode.RGB).float() / 255


@pytest.fixture(scope="session")
def vimeo_frames() -> torch.Tensor:
    """The 7 real frames of a Vimeo-90K septuplet, (7, 3, 64, 112) in [0, 1]."""
    folder = DATA / "vimeo90k_00001_0266"
    if not folder.is_dir():
        pytest.fail(f"real footage missing: {folder} (the tests need ../shared/data beside the repo)")
    return torch.stack([read_png(folder / f"im{i}.png") for i in range(1, 8)])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``cuda`` tests skip without a GPU; ``linux`` tests (``@pytest.mark.linux(reason=...)``: /proc, rlimits,
    POSIX signals and process groups, tmpfs, Xvfb) skip elsewhere, saying what they need."""
    on_linux = sys.platform.startswith("linux")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        linux = item.get_closest_marker("linux")
        if linux is not None and not on_linux:
            item.add_marker(pytest.mark.skip(reason=f"Linux only: {linux.kwargs.get('reason', 'POSIX facilities')}"))


@contextlib.contextmanager
def gpu_memory_cap(nbytes: int) -> Iterator[None]:
    """Let torch's allocator use at most ``nbytes`` of GPU 0 inside the block."""
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, nbytes / total))
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


def randomize(model: torch.nn.Module, seed: int = 0, offset_std: float = 0.02) -> torch.nn.Module:
    """Give a fresh EDVR non-trivial weights: its own init, plus offset convs that move samples.

    Fresh DCN packs predict zero offsets; here they predict offsets of a few
    pixels, so tests exercise real deformable sampling.
    """
    from edvr_vs.nn.dcn import DCNv2Pack

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
        for m in model.modules():
            if isinstance(m, DCNv2Pack):
                m.conv_offset.weight.copy_(torch.randn(m.conv_offset.weight.shape, generator=g) * offset_std)
                m.conv_offset.bias.copy_(torch.randn(m.conv_offset.bias.shape, generator=g))
    return model.eval()


# BasicSR's official test configurations (DESIGN.md §3): EDVR constructor arguments.
OFFICIAL_CONFIGS = {
    "M_x4_SR_REDS": dict(num_feat=64, num_frame=5, num_reconstruct_block=10),
    "M_woTSA_x4_SR_REDS": dict(num_feat=64, num_frame=5, num_reconstruct_block=10, with_tsa=False),
    "L_x4_SR_REDS": dict(num_feat=128, num_frame=5, num_reconstruct_block=40),
    "L_x4_SR_Vimeo90K": dict(num_feat=128, num_frame=7, num_reconstruct_block=40),
    "L_x4_SRblur_REDS": dict(num_feat=128, num_frame=5, num_reconstruct_block=40, with_predeblur=True),
    "L_deblur_REDS": dict(num_feat=128, num_frame=5, num_reconstruct_block=40, with_predeblur=True, hr_in=True),
}


DEMO = DATA / "demo_000"


def demo_frames(count: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The first ``count`` real frames of demo_000 (320×180), optionally cropped to (w, h)."""
    if not DEMO.is_dir():
        pytest.fail(f"real footage missing: {DEMO}")
    frames = torch.stack([read_png(DEMO / f"{i:08d}.png") for i in range(count)])
    if size is not None:
        w, h = size
        frames = frames[..., 40:40 + h, 60:60 + w].contiguous()
    return frames


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A small random EDVR (5 frames, TSA) saved in BasicSR layout."""
    from edvr_vs.nn.edvr import EDVR

    path = tmp_path_factory.mktemp("w") / "tiny.pth"
    model = randomize(EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1), seed=11)
    torch.save({"params": model.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def tiny_hr_in_weights(tmp_path_factory) -> Path:
    """A small random deblurring EDVR (hr_in, pre-deblur, 5 frames)."""
    from edvr_vs.nn.edvr import EDVR

    path = tmp_path_factory.mktemp("w") / "tiny_hr_in.pth"
    model = randomize(EDVR(num_feat=16, num_extract_block=1, num_reconstruct_block=1, with_predeblur=True,
                           hr_in=True), seed=12)
    torch.save({"params": model.state_dict()}, path)
    return path
