"""Damaged and special inputs: refused before opening, decoded as far as they go, damage and implausible headers
reported (fuzzing findings)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import index_frame, make_index_video
from emovid.errors import EmptyVideoError, SpecialFileError, TruncatedVideoError
from emovid.video import VideoReader, probe
from emovid.video.decode import damage_message


def _write_mp4(path, n: int = 60, fps: int = 30, gop: int = 10, container_opts: dict | None = None) -> str:
    """Lossy H.264 64x48; the noise keeps frame sizes even, so a cut at x % of the bytes lands at x % of frames."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=container_opts or {}) as c:
        s = c.add_stream("libx264", rate=fps, options={"g": str(gop), "threads": "1"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(n):
            img = np.clip(index_frame(i).astype(int) + rng.integers(0, 48, (48, 64, 3)), 0, 255).astype(np.uint8)
            for pk in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return str(path)


@pytest.fixture(scope="module")
def faststart(tmp_path_factory):
    """60 frames, index (moov) before the data, as streamed downloads have it: a cut copy still opens."""
    return _write_mp4(tmp_path_factory.mktemp("damage") / "fs.mp4", container_opts={"movflags": "faststart"})


def _cut(src: str, dst: Path, fraction: float) -> str:
    data = Path(src).read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return str(dst)


def _bit_flips(src: str, dst: Path) -> str:
    """Invert the middle third of four P-frame payloads in the middle of the mdat; the container stays intact."""
    import av

    data = bytearray(Path(src).read_bytes())
    with av.open(src) as c:
        spans = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size and not p.is_keyframe]
    for pos, size in spans[len(spans) // 3 : len(spans) // 3 + 4]:
        a, b = pos + size // 3, pos + 2 * size // 3
        data[a:b] = bytes(x ^ 0xFF for x in data[a:b])
    dst.write_bytes(bytes(data))
    return str(dst)


# ---- special files (refused before opening) ------------------------------------------------------------------


def test_fifo_is_refused_before_opening(tmp_path):
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    got: list[BaseException] = []

    def run():
        try:
            probe(fifo)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            got.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=20)
    if t.is_alive():  # opening blocked: release it (a writer that closes at once) so the thread can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(timeout=5)
        pytest.fail("probe blocked on a FIFO: it must be refused before opening")
    assert len(got) == 1 and isinstance(got[0], SpecialFileError)
    assert "clip.mp4: is a FIFO, not a regular file" in str(got[0])


def test_character_device_is_refused():
    with pytest.raises(SpecialFileError, match="/dev/null: is a character device"):
        VideoReader("/dev/null")


# ---- cut-off files ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7, 0.9])
def test_cut_faststart_file_decodes_what_it_holds_and_says_so(faststart, tmp_path, fraction):
    cut = _cut(faststart, tmp_path / "cut.mp4", fraction)
    with VideoReader(cut) as r:
        n = len(r)
        d = r.damage
        assert d is not None and d["declared_frames"] == 60 and 0 < d["frames"] == n < 60
        assert d["stream_ended_early"] and f"file holds {n} of 60 declared frames" in d["reasons"]
        # Every frame it holds decodes, streamed (frame threads) and by index, so a sampler over len(r) works.
        assert [i for i, _, _ in r.iter_frames()] == list(range(n))
        assert r.get_frames(list(range(n))).shape == (n, 48, 64, 3)
        with pytest.raises(TruncatedVideoError, match="frame 59 is missing"):
            r.get_frames([59])  # asked for by index beyond what the file holds: still an error
        assert r.damage_summary.startswith(f"{cut}: damaged video: file holds {n} of 60 declared frames")
        json.dumps(r.damage)
    info = probe(cut)
    assert info.truncated and info.damage is not None and info.num_frames == n


def test_cut_matroska_is_damage_by_duration(tmp_path):
    src = make_index_video(tmp_path / "full.mkv", n=60, fps=30, codec="libx264", crf=20, gop=10)
    cut = _cut(src, tmp_path / "cut.mkv", 0.6)
    with VideoReader(cut) as r:  # Matroska declares no frame count, only a duration
        d = r.damage
        assert d is not None and d["declared_frames"] is None and d["stream_ended_early"]
        assert "the stream ends early" in d["reasons"][0]
        assert sum(1 for _ in r.iter_frames()) == len(r)


def test_clean_file_has_no_damage_and_no_warnings(index_video):
    with VideoReader(index_video) as r:
        assert r.damage is None and r.damage_summary is None
        r.get_frames([0, 20, 47])
        assert sum(1 for _ in r.iter_frames()) == 48
        assert r.damage is None
    info = probe(index_video, decode=True)
    assert info.damage is None and info.warnings == [] and not info.truncated
    assert damage_message(None) is None


# ---- bit flips ------------------------------------------------------------------------------------------------


def _run(code: str, *args: str, log: bool) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "EMOVID_FFMPEG_LOG": "1" if log else "0"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env)


def test_bit_flips_are_counted_as_decode_errors_with_the_ffmpeg_log(faststart, tmp_path):
    # Opt-in (EMOVID_FFMPEG_LOG=1): PyAV's log callback can deadlock frame-threaded decoding, so it is off by default
    # and the reader here decodes without worker threads.
    bad = _bit_flips(faststart, tmp_path / "flipped.mp4")
    code = (
        "import sys, json\n"
        "from emovid.video import VideoReader, probe\n"
        "with VideoReader(sys.argv[1], thread_type='NONE') as r:\n"
        "    before = r.damage\n"
        "    n = sum(1 for _ in r.iter_frames())\n"
        "    d = r.damage\n"
        "print(json.dumps({'before': before, 'n': n, 'd': d, 'probe': probe(sys.argv[1], decode=True).damage}))\n"
    )
    p = _run(code, bad, log=True)
    assert p.returncode == 0, p.stderr
    import json

    got = json.loads(p.stdout)
    assert got["before"] is None and got["n"] == 60  # concealed, not dropped
    d = got["d"]
    assert d is not None and d["decode_errors"] > 0 and not d["stream_ended_early"]
    assert d["declared_frames"] == 60 and d["frames"] == 60 and d["messages"]
    assert "the decoder reported" in "; ".join(d["reasons"])
    assert got["probe"]["decode_errors"] > 0


def test_ffmpeg_log_stays_off_by_default_and_off_the_terminal(faststart, tmp_path):
    bad = _bit_flips(faststart, tmp_path / "flipped.mp4")
    code = (
        "import sys, av.logging\n"
        "from emovid.video import VideoReader\n"
        "with VideoReader(sys.argv[1]) as r:\n"
        "    n = sum(1 for _ in r.iter_frames())\n"
        "print(n, av.logging.get_level())\n"
        "from emovid.cli import main\n"
        "main(['probe', '--decode', sys.argv[1]])\n"
    )
    p = _run(code, bad, log=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "60 None"  # PyAV's log callback never installed: no deadlock risk
    assert "error while decoding" not in p.stderr and "h264" not in p.stderr
    p = _run(code.replace("VideoReader(sys.argv[1])", "VideoReader(sys.argv[1], thread_type='NONE')"), bad, log=True)
    assert p.returncode == 0, p.stderr
    # With the opt-in, FFmpeg's own lines ("error while decoding MB ...") are counted, not printed.
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"emovid: warning: {bad}: damaged video: the decoder reported")
    assert "error while decoding" not in p.stderr and "h264" not in p.stderr


# ---- loaders -----------------------------------------------------------------------------------------------------


def test_clip_loader_processes_a_cut_file_and_records_its_damage(faststart, tmp_path):
    from emovid.data.datasets import ClipLoader
    from emovid.video.sampling import parse_sampler

    class Rec:
        video_id = "cut"
        video_path = _cut(faststart, tmp_path / "cut.mp4", 0.7)

    # Windows run to the last frame the file holds (before: TruncatedVideoError at the cut).
    clips, meta = ClipLoader(parse_sampler("sliding:16:8"), short_side=24, all_clips=True, with_meta=True)(Rec())
    assert clips.ndim == 5 and clips.shape[0] >= 4 and clips.shape[2] == 16
    assert meta["damage"] is not None and meta["damage"]["frames"] == meta["frames"] < 60
    assert len(meta["frame_times"]) == 16
    x, times = ClipLoader(parse_sampler("uniform:8"))(Rec())  # the default return is unchanged
    assert x.shape[1] == 8 and isinstance(times, np.ndarray)

    class Clean:
        video_id = "clean"
        video_path = faststart

    assert ClipLoader(parse_sampler("uniform:4"), with_meta=True)(Clean())[1]["damage"] is None


def test_seeking_into_open_gops_is_no_damage(tmp_path):
    # After a seek to a non-IDR keyframe h264 complains about references from before it ("mmco: unref short
    # failure"): artefacts of seeking, not damage.
    opts = {"x264-params": "open-gop=1:bframes=3"}
    src = make_index_video(tmp_path / "open_gop.mp4", n=120, fps=30, codec="libx264", crf=20, gop=12, options=opts)
    for thread_type in ("SLICE", "AUTO"):
        with VideoReader(src, thread_type=thread_type) as r:
            r.get_frames([5, 50, 13, 100, 119, 3, 77])
            assert sum(1 for _ in r.iter_at_rate(3)) == 12
            assert r.damage is None


def test_streaming_after_sparse_sampling_decodes_every_frame(tmp_path):
    import av

    if "libx265" not in av.codecs_available:
        pytest.skip("no HEVC encoder in this FFmpeg build")
    opts = {"x265-params": "log-level=error"}
    src = make_index_video(tmp_path / "hevc.mp4", n=120, fps=30, h=96, w=128, codec="libx265", gop=12, options=opts)
    with VideoReader(src) as r:
        assert sum(1 for _ in r.iter_at_rate(3)) == 12
        # Before: sampling left skip_frame=NONREF on the decoder, and this stream lost every other frame.
        assert [i for i, _, _ in r.iter_frames(start=40, stop=60)] == list(range(40, 60))
        assert r.damage is None


def test_get_frames_can_repeat_the_nearest_frame_for_one_that_does_not_decode(faststart):
    with VideoReader(faststart, thread_type="NONE") as r:
        r._lost.add(10)  # as if frame 10 had failed to decode
        frames = r.get_frames([9, 10, 12], missing="nearest")
        np.testing.assert_array_equal(frames[1], frames[0])
        assert r.damage["lost_frames"] == 1 and "1 frame could not be decoded" in r.damage["reasons"]


def test_nothing_decodes_is_still_an_error(tmp_path):
    import av

    src = make_index_video(tmp_path / "ok.mkv", n=4, codec="ffv1")
    data = bytearray(Path(src).read_bytes())
    with av.open(src) as c:
        spans = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    for pos, size in spans:
        data[pos : pos + size] = bytes(size)
    bad = tmp_path / "zeros.mkv"
    bad.write_bytes(bytes(data))
    with pytest.raises(EmptyVideoError, match="zeros.mkv"):
        probe(bad)


# ---- implausible headers -----------------------------------------------------------------------------------------


def _box(data: bytes | bytearray, path: tuple[str, ...]) -> int:
    """Offset of the payload of the ISO BMFF box at ``path`` (e.g. ``("moov", "trak", "tkhd")``)."""
    start, end = 0, len(data)
    for depth, name in enumerate(path):
        i = start
        while True:
            assert i + 8 <= end, f"no {'/'.join(path[: depth + 1])} box"
            size, typ = struct.unpack_from(">I4s", data, i)
            header = 8
            if size == 1:  # 64-bit size follows
                size, header = struct.unpack_from(">Q", data, i + 8)[0], 16
            elif size == 0:  # runs to the end of its parent
                size = end - i
            if typ.decode("latin1") == name:
                start, end = i + header, i + size
                break
            i += size
    return start


def _patched(src: str, dst: Path, path: tuple[str, ...], offset: int, value: bytes) -> str:
    """``src`` with ``value`` written ``offset`` bytes into the payload of box ``path`` (v0 boxes)."""
    data = bytearray(Path(src).read_bytes())
    at = _box(data, path) + offset
    data[at : at + len(value)] = value
    dst.write_bytes(bytes(data))
    return str(dst)


# Payload offsets, version-0 boxes: after version(1) + flags(3),
#   mvhd/mdhd: creation(4) modification(4) timescale(4) duration(4)  -> timescale at 12
#   tkhd: creation(4) modification(4) track_ID(4) reserved(4) duration(4) reserved(8) layer(2) alternate_group(2)
#         volume(2) reserved(2) matrix(9 x 4, 16.16 / 2.30 fixed point)  -> matrix at 40
MDHD = ("moov", "trak", "mdia", "mdhd")
TKHD = ("moov", "trak", "tkhd")
STTS = ("moov", "trak", "mdia", "minf", "stbl", "stts")


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """10 frames, 25 fps, no edit list (which would otherwise hide most frames once the timescale is garbage)."""
    return _write_mp4(tmp_path_factory.mktemp("hdr") / "plain.mp4", n=10, fps=25, container_opts={"use_editlist": "0"})


def test_all_zero_display_matrix_is_no_rotation(plain, tmp_path, capsys):
    from emovid.cli import main

    bad = _patched(plain, tmp_path / "zero_matrix.mp4", TKHD, 40, bytes(36))
    info = probe(bad)  # before: rotation 232 (FFmpeg's NaN angle as an int), width and height kept
    assert info.rotation == 0 and (info.width, info.height) == (64, 48)
    assert any("display matrix is degenerate" in w for w in info.warnings)
    assert main(["probe", bad]) == 0  # warnings only: probed, exit 0
    cap = capsys.readouterr()
    assert ", rotated" not in cap.out and "WARNING: implausible metadata: the display matrix" in cap.out
    assert cap.err.splitlines() == [f"emovid: warning: {bad}: implausible metadata: {info.warnings[0]}"]


def test_display_matrix_off_the_right_angles_is_ignored(plain, tmp_path):
    c = round(65536 / 2**0.5)  # cos 45° = sin 45°, 16.16
    matrix = struct.pack(">9i", c, c, 0, -c, c, 0, 0, 0, 1 << 30)
    info = probe(_patched(plain, tmp_path / "skew.mp4", TKHD, 40, matrix))
    assert info.rotation == 0 and any("not a multiple of 90" in w for w in info.warnings)
    np.testing.assert_array_equal(VideoReader(tmp_path / "skew.mp4").get_frames([0]).shape, (1, 48, 64, 3))


def test_real_rotation_is_no_warning(tmp_path):
    info = probe(make_index_video(tmp_path / "rot.mp4", n=3, rotation=270))
    assert info.rotation == 270 and info.warnings == [] and info.damage is None


@pytest.mark.parametrize("timescale", [0, 1, 0xFFFFFFFF])
def test_garbage_timescale_gives_a_frame_rate_warning(plain, tmp_path, capsys, timescale):
    from emovid.cli import main

    bad = _patched(plain, tmp_path / "ts.mp4", MDHD, 12, struct.pack(">I", timescale))
    info = probe(bad)  # before: "5120.000 s, 0.002 fps" printed as fact
    assert info.fps < 0.5 and any("frame rate" in w and "implausible" in w for w in info.warnings)
    assert main(["probe", "--json", bad]) == 0
    cap = capsys.readouterr()
    data = json.loads(cap.out)[0]
    assert data["warnings"] == info.warnings and data["damage"] is None
    assert cap.err.startswith(f"emovid: warning: {bad}: implausible metadata: frame rate")


def test_huge_timescale_gives_a_frame_rate_warning(plain, tmp_path):
    info = probe(_patched(plain, tmp_path / "ts.mp4", MDHD, 12, struct.pack(">I", 0x7FFFFFFF)))
    assert info.fps > 1000 and any("frame rate" in w for w in info.warnings)


def test_garbled_sample_durations_contradict_the_header(plain, tmp_path):
    # stts: version/flags(4) entry_count(4), then (sample_count, sample_delta) pairs: a garbage delta.
    info = probe(_patched(plain, tmp_path / "stts.mp4", STTS, 12, struct.pack(">I", 0x00FFFFFF)))
    assert info.duration > 1000  # before: printed as the duration, nothing else said
    assert any("frame rate" in w for w in info.warnings)
    assert any("but the header declares 0.400 s" in w for w in info.warnings)


def test_probe_flags_a_cut_file_and_exits_0(faststart, tmp_path, capsys):
    from emovid.cli import main

    cut = _cut(faststart, tmp_path / "cut.mp4", 0.7)
    assert main(["probe", cut]) == 0
    cap = capsys.readouterr()
    assert "WARNING: damaged video: file holds" in cap.out
    lines = cap.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"emovid: warning: {cut}: damaged video: file holds")
    assert main(["probe", "--json", cut]) == 0
    d = json.loads(capsys.readouterr().out)[0]["damage"]
    assert d["declared_frames"] == 60 and d["stream_ended_early"]


def test_two_demuxers_book_the_same_damage_as_one(faststart, tmp_path, monkeypatch):
    # Sparse frames over several keyframe groups are decoded on two demuxers at once; the second one's decoding
    # (concealed frames, lost frames, frames decoded) is booked on the reader exactly as one demuxer books it.
    bad = _bit_flips(faststart, tmp_path / "flipped.mp4")
    monkeypatch.setattr("emovid.video.decode._cores", lambda: 2)
    wanted = [13, 22, 30, 40, 49, 59]
    got = []
    for parallel in (False, True):
        with VideoReader(bad) as r:
            r._parallel = parallel
            assert r._group_plan(np.asarray(wanted)) is not None
            got.append((r.get_frames(wanted, missing="nearest"), r.damage, r.frames_decoded))
    np.testing.assert_array_equal(got[0][0], got[1][0])
    assert got[0][1] == got[1][1] and got[0][2] == got[1][2]


@pytest.mark.parametrize("damage", ["flips", "cut"])
def test_kept_packets_book_the_same_damage_as_reading_the_file(faststart, tmp_path, monkeypatch, damage):
    # Short videos are decoded from the packets the index scan kept; a damaged one must come out exactly as when
    # every pass reads the file again: same frames, same damage record.
    bad = (
        _bit_flips(faststart, tmp_path / "flipped.mp4")
        if damage == "flips"
        else _cut(faststart, tmp_path / "cut.mp4", 0.6)
    )
    got = []
    for cap in (None, 0):
        if cap is not None:
            monkeypatch.setattr("emovid.video.stream.PACKET_CACHE_BYTES", cap)
        with VideoReader(bad) as r:
            assert (r._packets is None) == (cap == 0)
            n = len(r)
            wanted = [i for i in (5, 13, 22, 30, 40, 49, 59) if i < n]
            frames = r.get_frames(wanted, missing="nearest")
            streamed = [i for i, _, _ in r.iter_frames()]
            got.append((frames, streamed, r.damage))
    np.testing.assert_array_equal(got[0][0], got[1][0])
    assert got[0][1] == got[1][1] and got[0][2] == got[1][2] and got[0][2] is not None
