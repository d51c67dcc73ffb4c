from pathlib import Path

import numpy as np
import pytest

from conftest import frame_index, index_frame, make_index_video
from emovid.errors import (
    EmptyVideoError,
    FrameIndexError,
    InputNotFoundError,
    NotAVideoError,
    NoVideoStreamError,
    SpecialFileError,
    TruncatedVideoError,
    UnsupportedCodecError,
)
from emovid.video import VideoReader, probe, read_frames, write_video


def test_probe_reports_exact_geometry(index_video):
    info = probe(index_video)
    assert info.num_frames == 48 and info.num_frames_exact
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(48 / 25)
    assert (info.width, info.height) == (64, 48)
    assert info.codec == "h264"
    assert not info.variable_fps and not info.has_audio and info.rotation == 0


@pytest.mark.parametrize("indices", [[0], [47], [5, 3, 5, 40, 0], list(range(48)), [-1, -48]])
def test_get_frames_returns_exact_pixels(index_video, indices):
    frames = read_frames(index_video, indices)
    n = 48
    assert frames.shape == (len(indices), 48, 64, 3) and frames.dtype == np.uint8
    for got, i in zip(frames, indices, strict=False):
        np.testing.assert_array_equal(got, index_frame(i % n))


def test_sparse_access_seeks_instead_of_decoding_everything(gop_video):
    wanted = [3, 95, 151, 277, 10, 299]
    with VideoReader(gop_video) as r:
        frames = r.get_frames(wanted)
        decoded = r.frames_decoded
    assert [frame_index(f) for f in frames] == wanted
    for got, i in zip(frames, wanted, strict=False):
        np.testing.assert_array_equal(got, index_frame(i))
    # 6 frames, each at most 9 frames past its keyframe (GOP 10) plus decoder delay; far below all 300.
    assert decoded < 120


def test_dense_access_decodes_each_frame_once(gop_video):
    with VideoReader(gop_video) as r:
        r.get_frames(list(range(0, 300, 2)))
        assert r.frames_decoded <= 300 + 8  # forward decoding, no re-seeks (small decoder look-ahead allowed)


def test_resize_while_converting(index_video):
    frames = read_frames(index_video, [0, 10], size=(24, 32))
    assert frames.shape == (2, 24, 32, 3)
    # Constant-colour channels survive area resizing exactly.
    assert (frames[1, 4:, :, 0] == 10).all()  # below the white corner marker


def test_iter_frames_streams_all_in_order(index_video):
    with VideoReader(index_video) as r:
        got = [(i, t, frame_index(f)) for i, t, f in r.iter_frames(start=4, stop=12)]
    assert [g[0] for g in got] == list(range(4, 12))
    assert [g[2] for g in got] == list(range(4, 12))
    assert got[0][1] == pytest.approx(4 / 25)


def test_iter_at_rate_picks_the_frame_showing_at_each_tick(index_video):
    with VideoReader(index_video) as r:
        got = [(i, frame_index(f)) for i, _, f in r.iter_at_rate(5)]
    # 25 fps sampled at 5 fps over 1.92 s: ticks 0, 0.2, ..., 1.8 -> frames 0, 5, ..., 45.
    assert [i for i, _ in got] == list(range(0, 48, 5))
    assert all(i == j for i, j in got)


def test_variable_frame_rate(tmp_path):
    times = [0.0, 0.04, 0.08, 0.2, 0.24, 0.5, 0.54, 0.58, 1.0, 1.1]
    path = tmp_path / "vfr.mkv"
    write_video(path, (index_frame(i) for i in range(len(times))), fps=25, codec="ffv1", frame_times=times)
    with VideoReader(path) as r:
        info = r.info
        np.testing.assert_allclose(r.frame_times, times, atol=1e-4)
        assert info.variable_fps and info.num_frames == len(times)
        np.testing.assert_array_equal(r.get_frames([7])[0], index_frame(7))
        # At 10 fps the ticks 0.0..1.1 fall on frames showing then.
        ticks = [i for i, _, _ in r.iter_at_rate(10)]
    assert ticks == [0, 2, 3, 4, 5, 7, 8, 9]


def test_rotation_metadata_is_applied(tmp_path):
    path = tmp_path / "rot.mp4"
    make_index_video(path, n=5, rotation=90)
    info = probe(path)
    assert info.rotation == 90 and (info.width, info.height) == (48, 64)
    frame = read_frames(path, [3])[0]
    np.testing.assert_array_equal(frame, np.rot90(index_frame(3), 1))  # 90 degrees counter-clockwise
    assert read_frames(path, [3], size=(32, 24)).shape == (1, 32, 24, 3)


def test_odd_sized_video(tmp_path):
    path = make_index_video(tmp_path / "odd.mkv", n=6, h=37, w=51, codec="ffv1")
    info = probe(path)
    assert (info.width, info.height) == (51, 37)
    np.testing.assert_array_equal(read_frames(path, [5])[0], index_frame(5, 37, 51))


def test_lossy_h264_default_gop_decodes_requested_frames(tmp_path):
    path = make_index_video(tmp_path / "lossy.mp4", n=60, codec="libx264", crf=10)
    frames = read_frames(path, [0, 31, 59])
    # Lossy: the index channel survives within a few levels.
    assert [abs(int(f[10, 20, 0]) - i) <= 3 for f, i in zip(frames, [0, 31, 59], strict=False)] == [True] * 3


# ---- bad input -------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputNotFoundError, match="nope.mp4: no such file"):
        probe(tmp_path / "nope.mp4")


def test_not_a_video(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 20)
    with pytest.raises(NotAVideoError, match="notes.mp4: cannot be opened as a video"):
        probe(p)


def test_folder_is_not_a_video(tmp_path):
    with pytest.raises(SpecialFileError, match="is a folder, not a regular file"):
        probe(tmp_path)


def test_audio_only_file(tmp_path):
    import av

    p = tmp_path / "speech.m4a"
    with av.open(str(p), "w") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        for k in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, k * 1024
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    with pytest.raises(NoVideoStreamError, match="speech.m4a: is an audio-only file"):
        probe(p)


def test_mp4_without_frames_has_no_video_stream(tmp_path):
    import av

    p = tmp_path / "empty.mp4"
    with av.open(str(p), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 16, 16, "yuv420p"
        c.start_encoding()
    with pytest.raises(NoVideoStreamError, match="empty.mp4: is a file without a video stream"):
        probe(p)


def test_zero_decodable_frames(tmp_path):
    import av

    src = make_index_video(tmp_path / "ok.mkv", n=4, codec="ffv1")
    data = bytearray(Path(src).read_bytes())
    with av.open(src) as c:
        spans = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    rng = np.random.default_rng(0)
    for pos, size in spans:  # garbage in every frame's payload, container intact
        data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    bad = tmp_path / "garbage.mkv"
    bad.write_bytes(bytes(data))
    with pytest.raises(
        EmptyVideoError,
        match="garbage.mkv: (no frame of the video stream could be decoded|the video stream contains no frames)",
    ):
        probe(bad)


def test_unsupported_codec(tmp_path):
    src = make_index_video(tmp_path / "ok.mkv", n=3, codec="ffv1")
    data = Path(src).read_bytes()
    assert data.count(b"V_FFV1") == 1
    bad = tmp_path / "alien.mkv"
    bad.write_bytes(data.replace(b"V_FFV1", b"V_QQQQ"))  # a codec id no decoder knows
    with pytest.raises(UnsupportedCodecError, match="alien.mkv: its video codec has no decoder"):
        probe(bad)


def test_truncated_stream(tmp_path):
    src = tmp_path / "full.mp4"
    make_index_video(src, n=200, h=96, w=128)
    data = src.read_bytes()
    # moov at the end (the default): cutting the file loses the index -> cannot open.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(NotAVideoError, match="cut.mp4: cannot be opened"):
        probe(cut)


def test_truncated_faststart_stream_fails_on_missing_frames(tmp_path):
    import av

    src = tmp_path / "fs.mp4"
    with av.open(str(src), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=25, options={"g": "10"})
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(100):
            for pk in s.encode(
                av.VideoFrame.from_ndarray(rng.integers(0, 255, (96, 128, 3), np.uint8), format="rgb24")
            ):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    data = src.read_bytes()
    cut = tmp_path / "fs_cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with VideoReader(cut) as r:
        assert r.get_frames([0]).shape[0] == 1  # the intact head still decodes
        assert r.info.truncated and r.info.num_frames < 100
        with pytest.raises(TruncatedVideoError, match=r"fs_cut.mp4: frame 99 is missing: the file is truncated"):
            r.get_frames([99])


def test_index_out_of_range(index_video):
    with VideoReader(index_video) as r, pytest.raises(FrameIndexError, match=r"\[0, 48\)"):
        r.get_frames([48])


def test_independent_keyframe_groups_decode_on_two_demuxers_with_the_same_frames(gop_video, monkeypatch):
    from emovid.video.stream import _StreamDecoder

    wanted = [3, 95, 151, 277, 10, 299, 151]
    with VideoReader(gop_video, threads=1) as r:  # threads=1: one demuxer, as before
        one = r.get_frames(wanted)
        decoded_one = r.frames_decoded
    made = []
    real = _StreamDecoder._companion
    monkeypatch.setattr(_StreamDecoder, "_companion", lambda self: made.append(1) or real(self))
    monkeypatch.setattr("emovid.video.decode._cores", lambda: 2)
    with VideoReader(gop_video) as r:
        two = r.get_frames(wanted)
        assert r.frames_decoded == decoded_one and r.damage is None
        assert r.get_frames([5, 6, 7]).shape[0] == 3  # one keyframe group: one demuxer
    assert made == [1]
    np.testing.assert_array_equal(two, one)
    assert [frame_index(f) for f in two] == wanted


# ---- packets kept in memory after the index scan -------------------------------------------------------------


def _without_kept_packets(monkeypatch):
    monkeypatch.setattr("emovid.video.stream.PACKET_CACHE_BYTES", 0)


def _everything(path, wanted):
    with VideoReader(path) as r:
        sparse = r.get_frames(wanted)
        again = r.get_frames(wanted[::-1])  # backwards: every frame behind the decoder is a fresh seek
        stream = [(i, f) for i, _, f in r.iter_frames(start=7)]
        sampled = [(i, f) for i, _, f in r.iter_at_rate(7.0)]
        return sparse, again, stream, sampled, r.damage, r._packets is not None


@pytest.mark.parametrize(
    "codec,ext,opts",
    [
        ("libx264", "mp4", {}),
        ("libx265", "mp4", {"x265-params": "log-level=none:keyint=10"}),
        ("mpeg4", "mp4", {}),
        ("libvpx-vp9", "webm", {}),
        ("mjpeg", "avi", None),
        ("mpeg2video", "ts", {}),
    ],
)
def test_decoding_from_kept_packets_gives_the_frames_reading_the_file_gives(tmp_path, monkeypatch, codec, ext, opts):
    import av

    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    # MJPEG: every frame is a keyframe, in full-range YUV.
    kw = {"pix_fmt": "yuvj420p"} if opts is None else {"gop": 10, "options": opts}
    path = make_index_video(tmp_path / f"v.{ext}", n=60, fps=30, codec=codec, crf=None, **kw)
    monkeypatch.setattr("emovid.video.decode._cores", lambda: 2)  # two decoders at once where groups allow
    wanted = [2, 17, 33, 34, 48, 59]
    kept = _everything(path, wanted)
    _without_kept_packets(monkeypatch)
    read = _everything(path, wanted)
    assert kept[-1] and not read[-1]
    for a, b in zip(kept[:2], read[:2], strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(kept[2:4], read[2:4], strict=True):
        assert [i for i, _ in a] == [i for i, _ in b]
        for (_, fa), (_, fb) in zip(a, b, strict=True):
            np.testing.assert_array_equal(fa, fb)
    assert kept[4] is None and read[4] is None


def test_a_second_decoder_fed_from_kept_packets_opens_no_file(gop_video, monkeypatch):
    import emovid.video.stream as stream

    opened = []
    real = stream._open_container
    monkeypatch.setattr(stream, "_open_container", lambda p: opened.append(p) or real(p))
    monkeypatch.setattr("emovid.video.decode._cores", lambda: 2)
    wanted = [3, 95, 151, 277, 10, 299]
    with VideoReader(gop_video) as r:
        assert r._group_plan(np.unique(wanted)) is not None
        frames = r.get_frames(wanted)
    assert opened == []  # the reader's own open goes through emovid.video.decode; no second demuxer
    assert [frame_index(f) for f in frames] == wanted
    monkeypatch.setattr(stream, "PACKET_CACHE_BYTES", 1000)  # over the cap: the packets are read from the file
    with VideoReader(gop_video) as r:
        assert r._packets is None
        np.testing.assert_array_equal(r.get_frames(wanted), frames)
    assert len(opened) == 1


def test_a_stream_without_extradata_gets_a_second_demuxer_not_a_bare_decoder(gop_video):
    # Its parameter sets may come only with the first keyframe: a bare decoder starting later could not decode.
    from types import SimpleNamespace

    with VideoReader(gop_video) as r:
        assert r._fresh_context() is not None
        r._ctx = SimpleNamespace(name="h264", extradata=b"")
        assert r._fresh_context() is None
        r._ctx = SimpleNamespace(name="rawvideo", extradata=b"x")
        assert r._fresh_context() is None


@pytest.mark.parametrize("cap", [None, 0])  # packets kept in memory / read from the file
def test_avi_with_b_frames_is_indexed_in_display_order(tmp_path, monkeypatch, cap):
    # AVI carries no presentation times: its packets are numbered in decoding order, so the frames of a stream with
    # B-frames come out of the decoder tagged out of order. Frame i must still be the i-th frame shown.
    import av

    if cap is not None:
        monkeypatch.setattr("emovid.video.stream.PACKET_CACHE_BYTES", cap)
    path = make_index_video(tmp_path / "b.avi", n=60, fps=30, codec="libx264", crf=None, gop=10)
    with av.open(path) as c:
        shown = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]  # the decoder's output: display order
        tags = [p.pts for p in c.demux(c.streams.video[0]) if p.size]
    monkeypatch.setattr("emovid.video.decode._cores", lambda: 2)
    wanted = [33, 2, 17, 34, 48, 59, 0, 21]
    with VideoReader(path) as r:
        assert len(r) == 60
        got = r.get_frames(wanted)
        streamed = [(i, f) for i, _, f in r.iter_frames(start=15)]
        sampled = [(i, f) for i, _, f in r.iter_at_rate(7.0)]  # what `emovid analyze` reads
        assert r.damage is None
    for g, i in zip(got, wanted, strict=True):
        np.testing.assert_array_equal(g, shown[i])
    assert len(sampled) == 14
    for i, f in sampled:
        np.testing.assert_array_equal(f, shown[i])
    assert [i for i, _ in streamed] == list(range(15, 60))
    for i, f in streamed:
        np.testing.assert_array_equal(f, shown[i])
    assert tags == sorted(tags)  # the file's own numbering is no help
