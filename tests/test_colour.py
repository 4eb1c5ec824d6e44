"""The colour rule (one table, one default) and files that appear whole or not at all."""

from __future__ import annotations

import pytest
import vapoursynth as vs

from edvr_vs.colour import MATRICES, Colour, clip_colour, default_matrix, frame_colour, matrix_number
from edvr_vs.files import atomic_output, sha256_of

core = vs.core
FULL = int(vs.RANGE_FULL)  # _Range: 1 full, 0 limited (R74 and later)


@pytest.mark.parametrize("size,want", [((1280, 544), 1), ((960, 720), 1), ((1279, 719), 6), ((176, 144), 6)])
def test_unspecified_matrix_is_709_from_1280x720_up(size, want):
    assert default_matrix(*size) == want


def test_frame_colour_reads_props_with_override_and_defaults():
    assert frame_colour({}, 320, 180) == Colour(6, False, 0)
    assert frame_colour({"_Matrix": 9, "_Range": FULL, "_ChromaLocation": 1}, 320, 180) == Colour(9, True, 1)
    assert frame_colour({"_Matrix": 2}, 1920, 1080) == Colour(1, False, 0)  # unspecified: by size
    assert frame_colour({"_Matrix": 1}, 320, 180, matrix=5).matrix == 5  # matrix= wins
    assert frame_colour({"_ChromaLocation": 2}, 320, 180).chromaloc == 0  # top-left counts as left
    assert Colour(1, True, 0).range_prop == int(vs.RANGE_FULL)


def test_clip_colour_is_frame_0s_and_defaults_for_rgb():
    yuv = core.std.SetFrameProps(core.std.BlankClip(format=vs.YUV420P8, width=64, height=32), _Matrix=5, _Range=FULL)
    assert clip_colour(yuv) == Colour(5, True, 0)
    assert clip_colour(core.std.BlankClip(format=vs.RGB24, width=64, height=32)) == Colour(6, False, 0)


def test_matrix_names_and_numbers():
    assert matrix_number("709") == 1 and matrix_number("170m") == 6 and matrix_number(9) == 9
    assert {m.number for m in MATRICES.values()} == {1, 4, 5, 6, 7, 9}
    for bad in ("bt999", 2, True, None):
        with pytest.raises(ValueError, match=r"'matrix' must be one of 709, 601, 170m"):
            matrix_number(bad)


def test_atomic_output(tmp_path):
    target = tmp_path / "out.mkv"
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mkv" and tmp.name.startswith(".")
        tmp.write_bytes(b"abc")
        assert not target.exists()
    assert target.read_bytes() == b"abc" and list(tmp_path.iterdir()) == [target]
    assert sha256_of(target) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(tmp_path / "b.pth") as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == [target]  # nothing under the name, no temporary left
