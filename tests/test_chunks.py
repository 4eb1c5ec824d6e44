"""Scene cuts, the chunk plan, segment joining and the work folder's manifest (no Ray needed)."""

from __future__ import annotations

import hashlib
import time
from fractions import Fraction
from pathlib import Path

import pytest
import vapoursynth as vs

from edvr_vs import scenes
from edvr_vs.chunks import Chunk, ChunkPlanner, plan_chunks
from edvr_vs.cluster.manifest import WorkDir, WorkDirError, source_identity
from edvr_vs.cluster.planning import PlanThread
from edvr_vs.media import concat, encode, open_source
from edvr_vs.passthrough import plan
from edvr_vs.video_tags import VideoTags
from edvr_vs.window import scene_window, window_indices
from tests.media_checks import (CUT_CLIP_FRAMES, CUT_CLIP_STARTS, chapters, framemd5, make_cut_clip, make_tagged_clip,
                                packet_times)

core = vs.core


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> Path:
    return make_cut_clip(tmp_path_factory.mktemp("cuts") / "cuts.mkv")


def test_cuts_found_in_real_footage(cut_clip):
    clip = open_source(cut_clip)
    assert clip.num_frames == CUT_CLIP_FRAMES
    assert scenes.scene_starts(scenes.mark_cuts(clip)) == CUT_CLIP_STARTS
    # bikes' fast pans right after the first cut (luma difference up to ~0.08) are not cuts
    assert scenes.scene_starts(scenes.mark_cuts(clip, 0.05)) != CUT_CLIP_STARTS
    assert scenes.scene_starts(scenes.mark_cuts(clip, None)) == []


def drain(plan: PlanThread) -> list[Chunk]:
    """Every chunk ``plan`` hands out until it is complete (within a minute); then it is closed."""
    chunks = []
    deadline = time.monotonic() + 60
    while not plan.complete and time.monotonic() < deadline:
        chunks += plan.take()
        time.sleep(0.01)
    plan.close()
    assert plan.complete
    return chunks


@pytest.mark.parametrize("span", [1, 7, 8, 15, 30, 100])
def test_spans_scanned_apart_find_the_cuts_of_one_scan(cut_clip, span):
    """Cuts at 8 and 30: with spans of 8 and 15 (and 1) a cut falls on a span's first frame, with 7 and
    30 elsewhere; every span's cuts, put together, are one scan's."""
    marked = scenes.mark_cuts(open_source(cut_clip))
    bounds = [(a, min(a + span, CUT_CLIP_FRAMES)) for a in range(0, CUT_CLIP_FRAMES, span)]
    found = [s for a, b in reversed(bounds) for s in scenes.iter_scene_starts(marked, None, a, b)]
    assert sorted(found) == scenes.scene_starts(marked) == CUT_CLIP_STARTS


def test_split_plan_equals_one_scan_whoever_scans_which_span(cut_clip):
    """The driver's thread scans spans from the front while "workers" (here: this test) take them from the
    back, one failing and giving its span back: the same scene starts and chunks as one scan."""
    clip = open_source(cut_clip)
    want = plan_chunks(CUT_CLIP_FRAMES, CUT_CLIP_STARTS, 2, 4, 8)
    slow = core.std.FrameEval(clip, lambda n: (time.sleep(0.05), clip)[1])  # the driver's scan: 50 ms a frame
    plan = PlanThread(slow, scenes.DEFAULT_THRESHOLD, 2, 4, 8, span=6)
    marked = scenes.mark_cuts(clip)
    failed = plan.spans.take()
    plan.spans.give_back(failed)  # a worker lost while scanning it
    taken = []
    while (i := plan.spans.take()) is not None and len(taken) < 3:
        taken.append(i)
        plan.spans.done(i, list(scenes.iter_scene_starts(marked, None, *plan.spans.bounds[i])), by_worker=True)
    if i is not None:
        plan.spans.give_back(i)
    assert drain(plan) == want and plan.starts == CUT_CLIP_STARTS
    assert taken[0] == len(plan.spans.bounds) - 1 == failed  # workers take from the back
    assert plan.spans.by_workers == 3 and len(plan.spans.results) == len(plan.spans.bounds)


def test_marked_cuts_are_kept_and_any_range_equals_the_whole():
    blank = core.std.BlankClip(width=64, height=48, format=vs.YUV420P8, length=12, color=[60, 128, 128])
    marked_by_hand = core.std.SetFrameProps(blank[5], _SceneChangeNext=1)
    clip = blank[:5] + marked_by_hand + blank[6:]
    marked = scenes.mark_cuts(clip)
    assert scenes.scene_starts(marked) == [6]  # no luma change: only the hand-made cut
    whole = [dict(f.props) for f in marked.frames()]
    assert [dict(f.props) for f in marked[4:9].frames()] == whole[4:9]
    with pytest.raises(ValueError, match="threshold"):
        scenes.mark_cuts(clip, 1.5)


def test_plan_merges_small_scenes_and_splits_long_ones():
    chunks = plan_chunks(100, [3, 5, 9, 60], radius=2, min_chunk=8, max_chunk=20)
    assert [(c.start, c.stop) for c in chunks] == [(0, 9), (9, 26), (26, 43), (43, 60), (60, 80), (80, 100)]
    assert all(c.frames <= 20 for c in chunks)
    # chunks starting and ending at cuts read nothing beyond them; a split inside a scene reads N per side
    assert [c.context for c in chunks] == [0, 2, 4, 2, 2, 2]
    tail = plan_chunks(23, [20], radius=2, min_chunk=5, max_chunk=30)
    assert [(c.start, c.stop) for c in tail] == [(0, 23)]  # a short last scene joins the chunk before
    with pytest.raises(ValueError, match="--min-chunk"):
        plan_chunks(10, [], radius=2, min_chunk=9, max_chunk=4)


def test_a_default_chunk_size_follows_the_other_option():
    from edvr_vs.chunks import MAX_CHUNK, MIN_CHUNK, chunk_sizes

    assert chunk_sizes(None, None) == (MIN_CHUNK, MAX_CHUNK) == (120, 1200)
    assert chunk_sizes(None, 25) == (25, 25)  # --max-chunk 25 alone
    assert chunk_sizes(None, 500) == (120, 500)
    assert chunk_sizes(2000, None) == (2000, 2000)  # --min-chunk 2000 alone
    assert chunk_sizes(8, None) == (8, 1200)
    with pytest.raises(ValueError, match=r"--min-chunk \(9\) must not exceed --max-chunk \(4\)"):
        chunk_sizes(9, 4)  # two explicit values that contradict each other
    with pytest.raises(ValueError, match="--max-chunk must be a positive number of frames, got 0"):
        chunk_sizes(None, 0)


def test_planner_hands_out_chunks_early_and_plans_the_same():
    import random

    rng = random.Random(4)
    for _ in range(200):
        length = rng.randint(1, 400)
        starts = sorted(rng.sample(range(1, length), min(length - 1, rng.randint(0, 12)))) if length > 1 else []
        lo = rng.randint(1, 40)
        hi = rng.randint(lo, 90)
        planner, streamed, early = ChunkPlanner(length, 2, lo, hi), [], 0
        scene_list = scenes.scenes(length, starts)
        for i, (a, b) in enumerate(scene_list):
            got = planner.add_scene(a, b)
            early += len(got) if i < len(scene_list) - 1 else 0
            streamed += got
        streamed += planner.finish()
        assert streamed == plan_chunks(length, starts, 2, lo, hi)
        assert [c.index for c in streamed] == list(range(len(streamed)))
        assert streamed[0].start == 0 and streamed[-1].stop == length
        assert all(x.stop == y.start for x, y in zip(streamed, streamed[1:]))
        assert all(c.frames <= hi for c in streamed)
        # at most two chunks wait for later scenes
        assert early >= len([c for c in streamed if c.stop <= scene_list[-1][0]]) - 2


@pytest.mark.parametrize("padding", ["replicate", "reflection_circle"])
def test_context_counts_the_frames_windows_read(padding):
    length, starts, radius = 70, [11, 40], 2
    props = {s - 1: {"_SceneChangeNext": 1} for s in starts}
    for c in plan_chunks(length, starts, radius, min_chunk=6, max_chunk=13):
        read = set()
        for n in range(c.start, c.stop):
            delivered = window_indices(n, radius, 0, length - 1, padding)
            read |= set(scene_window(n, radius, length, padding, delivered, props))
        assert len(read - set(range(c.start, c.stop))) == c.context, c


def _frames_clip(fps: Fraction, length: int) -> vs.VideoNode:
    colours = [core.std.BlankClip(width=32, height=32, format=vs.YUV420P8, length=1, color=[16 + 5 * i, 128, 128])
               for i in range(length)]
    return core.std.AssumeFPS(core.std.Splice(colours), fpsnum=fps.numerator, fpsden=fps.denominator)


@pytest.mark.parametrize("encoder", ["ffv1", "x264", "x265"])
@pytest.mark.parametrize("fps", [Fraction(25), Fraction(30000, 1001), Fraction(24000, 1001)])
def test_joined_segments_equal_one_encode(tmp_path, fps, encoder):
    clip = _frames_clip(fps, 37)
    encode(clip, tmp_path / "one.mkv", encoder, [], progress=lambda *_: None)
    bounds = [0, 5, 6, 19, 30, 37]
    segments = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        segments.append(tmp_path / f"s{i}.nut")
        encode(clip[a:b], segments[-1], encoder, [], progress=lambda *_: None)
    concat(segments, tmp_path / "joined.mkv", [Fraction(b - a) / fps for a, b in zip(bounds, bounds[1:])])
    joined, one = framemd5(tmp_path / "joined.mkv"), framemd5(tmp_path / "one.mkv")
    if encoder == "ffv1":
        assert joined == one  # pixels and timestamps
    else:  # lossy, B-frames: each segment is its own encode, so compare the frames' timestamps only
        assert [line.split(",")[1:4] for line in joined] == [line.split(",")[1:4] for line in one]
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("encoder", ["ffv1", "x264"])
def test_joined_segments_say_what_the_source_said(tmp_path, encoder):
    """Segments in NUT lose the colour description (FFV1 has none in its bitstream): the join writes
    the source's tags, pixel aspect, audio, subtitles and chapters as a single encode would."""
    src = make_tagged_clip(tmp_path / "tagged.mkv")
    clip = open_source(src)
    tags = VideoTags.of(clip)
    segments = []
    for i, (a, b) in enumerate([(0, 12), (12, 30)]):
        segments.append(tmp_path / f"s{i}.nut")
        encode(clip[a:b], segments[-1], encoder, [], tags=tags, progress=lambda *_: None)
    out = tmp_path / "joined.mkv"
    fps = Fraction(clip.fps_num, clip.fps_den)
    concat(segments, out, [Fraction(12) / fps, Fraction(18) / fps], tags, plan(str(src), out))
    assert VideoTags.of(open_source(out)) == tags
    for stream in ("a", "s"):
        assert packet_times(out, stream) == packet_times(src, stream)
    assert chapters(out) == chapters(src)


def test_manifest_resumes_and_refuses_other_jobs(tmp_path, cut_clip):
    clip = open_source(cut_clip)
    source = source_identity(str(cut_clip), clip)
    settings = {"precision": None, "encoder": "ffv1"}
    chunks = [Chunk(0, 0, 8, 0), Chunk(1, 8, 41, 0)]
    work = WorkDir(tmp_path / "parts")
    work.lock()
    assert work.load() is None
    with pytest.raises(WorkDirError, match="in use by another edvr-vs run"):
        WorkDir(work.path).lock()
    assert work.start(source, settings, None) == {}
    for c in chunks:
        work.add_chunk(c)
    work.segment(chunks[0]).write_bytes(b"segment 0")
    work.record(chunks[0], {"frames": 8, "sha256": hashlib.sha256(b"segment 0").hexdigest()})
    (work.path / ".chunk-00001.partial-123.nut").write_bytes(b"half")
    earlier = work.load()
    assert earlier["chunks"] == [[0, 8, 0], [8, 41, 0]] and not earlier["plan_complete"]
    work.check(earlier, source, settings)
    assert WorkDir(work.path).start(source, settings, earlier) == {0: (0, 8)}
    assert not list(work.path.glob(".chunk-*"))  # a dead worker's partial segment is discarded
    with pytest.raises(WorkDirError, match=r"precision \(None -> 'fp32'\)"):
        work.check(earlier, source, {**settings, "precision": "fp32"})
    with pytest.raises(WorkDirError, match="source frames"):
        work.check(earlier, {**source, "frames": 40}, settings)
    work.segment(chunks[0]).write_bytes(b"changed")  # a segment that lost its hash is computed again
    assert WorkDir(work.path).start(source, settings, work.load()) == {}
    (work.path / "mine.txt").write_text("not edvr-vs's")
    work.remove()  # removes its own files only, and gives the folder up
    assert [p.name for p in work.path.iterdir()] == ["mine.txt"]
    WorkDir(work.path).lock()
    with pytest.raises(WorkDirError, match="not an edvr-vs work folder"):
        work.load()
    (work.path / "manifest.json").write_text('{"steps": [1, 2]}')  # another tool's manifest
    with pytest.raises(WorkDirError, match="is not an edvr-vs manifest"):
        work.load()


def test_plan_thread_streams_the_same_plan_and_stops_when_closed(cut_clip):
    clip = open_source(cut_clip)
    plan = PlanThread(clip, scenes.DEFAULT_THRESHOLD, 2, 4, 8)
    assert drain(plan) == plan_chunks(CUT_CLIP_FRAMES, CUT_CLIP_STARTS, 2, 4, 8)
    assert plan.starts == CUT_CLIP_STARTS
    slow = core.std.FrameEval(clip, lambda n: (time.sleep(0.05), clip)[1])  # 50 ms a frame
    stopped = PlanThread(slow, scenes.DEFAULT_THRESHOLD, 2, 4, 8)
    time.sleep(0.2)
    t0 = time.monotonic()
    stopped.close()
    assert time.monotonic() - t0 < 5 and not stopped.complete
    assert all(c.stop <= CUT_CLIP_FRAMES for c in stopped.take())
