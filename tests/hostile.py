"""A malformed-input corpus made at test time, and a harness that runs emovid's commands on it.

Every case is a small file (or special file, or odd name) of one family:

* ``truncated`` — a clean mp4 cut at many offsets, with the index first (``faststart``) and last;
* ``bitflip`` / ``zeroed`` — bytes overwritten at many offsets;
* ``garbage`` — empty, random, text, an image or JSON named ``.mp4``, an audio-only file;
* ``geometry`` — 1 frame, 2x2, 8x256, 256x8, odd sizes, other containers;
* ``names`` — the clean video under names any file system allows (bytes that are not UTF-8, 250 bytes, a
  newline, a leading dash, quotes);
* ``special`` — a FIFO, a folder, a socket, a broken link and a link to ``/dev/zero``, all named ``*.mp4``.

:func:`run_cli` runs one command in-process under a watchdog (``SIGALRM``): a hang is reported as such instead of
blocking the suite, and the outcome is classified as ``ok`` / ``error`` (one clean line, exit 1) / ``bug``
(traceback, exit 3, more than one error line per failure, or a hang).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLEAN_FRAMES = 30


class Hang(BaseException):
    """Raised by the watchdog inside a command that ran past its time (BaseException: nothing may catch it)."""


@dataclass
class Outcome:
    rc: int | None
    out: str
    err: str
    hang: bool = False

    @property
    def problems(self) -> list[str]:
        """What makes this outcome a bug rather than a clean success, warning or error."""
        bad = []
        if self.hang:
            bad.append("hang")
        if self.rc not in (0, 1):
            bad.append(f"exit {self.rc}")
        text = self.out + self.err
        if "Traceback (most recent call last)" in text:
            bad.append("traceback")
        if "unexpected " in self.err:
            bad.append("unexpected exception")
        for line in self.err.splitlines():
            if line.strip() and not line.startswith("emovid: ") and not _progress_line(line):
                bad.append(f"stray stderr line {line[:80]!r}")
                break
        return bad


def _progress_line(line: str) -> bool:
    # tqdm bars and the banner lines some commands print before working ("mode: ...", "resuming ...")
    return "it/s" in line or "%|" in line or line.startswith(("mode:", "resuming"))


def run_cli(argv: list[str], timeout: float = 60.0) -> Outcome:
    """``emovid ARGV`` in this process with stdout/stderr captured and a watchdog of ``timeout`` seconds."""
    from emovid.cli import main

    def _alarm(signum, frame):
        raise Hang()

    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    rc, hang = None, False
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(argv))
    except Hang:
        hang = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return Outcome(rc, out.getvalue(), err.getvalue(), hang)


# ---- the corpus -----------------------------------------------------------------------------------------------


def _face_frames(n: int, h: int = 96, w: int = 128) -> list[np.ndarray]:
    import cv2

    frames = []
    for i in range(n):
        img = np.full((h, w, 3), 200, np.uint8)
        cx, cy = w // 2 + int(6 * np.sin(i / 3)), h // 2
        cv2.ellipse(img, (cx, cy), (28, 36), 0, 0, 360, (230, 190, 160), -1)
        for dx in (-10, 10):
            cv2.circle(img, (cx + dx, cy - 8), 4, (40, 40, 40), -1)
        cv2.ellipse(img, (cx, cy + 14), (12, 4 + i % 5), 0, 0, 180, (120, 40, 40), 2)
        frames.append(img)
    return frames


def _remux_faststart(src: Path, dst: Path) -> None:
    """Copy ``src`` with the index (moov) before the data, as streaming services write mp4."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w", format="mp4", options={"movflags": "faststart"}) as o:
        s_in = i.streams.video[0]
        s_out = o.add_stream_from_template(s_in)
        for p in i.demux(s_in):
            if p.dts is None:
                continue
            p.stream = s_out
            o.mux(p)


def _audio_only(path: Path) -> None:
    import av

    with av.open(str(path), "w") as c:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        for start in range(0, 16000, 1024):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, start
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)


@dataclass(frozen=True)
class Case:
    """One corpus entry: family, file name (``str``, may hold surrogates) and whether it is a special file."""

    family: str
    name: str
    special: bool = False
    damaged: bool = False  # structurally damaged (index declares frames the file lacks): must never pass silently


def build_video_corpus(folder: Path, work: Path) -> list[Case]:
    """Write every video case into ``folder`` (flat) and return the cases; ``work`` holds the clean sources."""
    import cv2

    from emovid.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    clean = work / "clean.mp4"
    write_video(clean, _face_frames(CLEAN_FRAMES), fps=15, gop=10)
    fast = work / "fast.mp4"
    _remux_faststart(clean, fast)
    data = {"end": clean.read_bytes(), "fast": fast.read_bytes()}
    cases: list[Case] = []

    def put(family: str, name: str, blob: bytes, damaged: bool = False) -> None:
        (folder / name).write_bytes(blob)
        cases.append(Case(family, name, damaged=damaged))

    put("clean", "clean.mp4", data["end"])
    put("clean", "clean_fast.mp4", data["fast"])
    for layout, blob in data.items():
        for pct in (1, 5, 10, 20, 30, 45, 60, 70, 80, 90, 95, 99):
            cut = blob[: len(blob) * pct // 100]
            put("truncated", f"cut_{layout}_{pct:02d}.mp4", cut, damaged=layout == "fast" and pct >= 30)
        rng = np.random.default_rng(1 if layout == "end" else 2)
        for pct in (2, 10, 25, 40, 55, 70, 85, 97):
            b = bytearray(blob)
            at = len(b) * pct // 100
            b[at : at + 24] = rng.integers(0, 256, 24, dtype=np.uint8).tobytes()
            put("bitflip", f"flip_{layout}_{pct:02d}.mp4", bytes(b))
        for pct in (0, 30, 60):
            b = bytearray(blob)
            at = len(b) * pct // 100
            b[at : at + 512] = bytes(min(512, len(b) - at))
            put("zeroed", f"zero_{layout}_{pct:02d}.mp4", bytes(b))
    rng = np.random.default_rng(3)
    put("garbage", "empty.mp4", b"")
    put("garbage", "one_byte.mp4", b"\x00")
    put("garbage", "random.mp4", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    put("garbage", "text.mp4", b"this is not a video\n" * 20)
    put("garbage", "json.mp4", b'{"video": [1, 2, 3]}')
    ok, png = cv2.imencode(".png", _face_frames(1)[0])
    put("garbage", "image.mp4", png.tobytes())
    put("garbage", "header_only.mp4", data["end"][:64])
    put("garbage", "moov_only.mp4", data["fast"][: data["fast"].find(b"mdat") + 8])
    _audio_only(folder / "audio_only.mp4")
    cases.append(Case("garbage", "audio_only.mp4"))

    geometry = {
        "one_frame.mp4": dict(frames=_face_frames(1)),
        "tiny_2x2.mp4": dict(frames=[np.full((2, 2, 3), 128, np.uint8)] * 4),
        "thin_8x256.mp4": dict(frames=[np.full((8, 256, 3), 90, np.uint8)] * 4),
        "tall_256x8.mp4": dict(frames=[np.full((256, 8, 3), 90, np.uint8)] * 4),
        "odd_37x51.mkv": dict(frames=[np.full((37, 51, 3), 60, np.uint8)] * 4, codec="ffv1"),
        "clean_vp9.webm": dict(frames=_face_frames(6), codec="libvpx-vp9"),
        "clean_mpeg4.avi": dict(frames=_face_frames(6), codec="mpeg4"),
    }
    for name, kw in geometry.items():
        frames = kw.pop("frames")
        try:
            write_video(folder / name, frames, fps=10, **kw)
        except Exception:  # an encoder this FFmpeg build lacks: the case is simply not in the corpus
            continue
        cases.append(Case("geometry", name))

    odd_names = [
        os.fsdecode(b"bad_\xff\xfe_name.mp4"),
        "n" * 246 + ".mp4",  # 250 bytes: outputs and their temporary files must still fit 255
        "new\nline.mp4",
        "-leading-dash.mp4",
        'quote\'s "and" spaces.mp4',
        "emoji_\U0001f600.mp4",
        "back\\slash.mp4",
    ]
    for name in odd_names:
        (folder / name).write_bytes(data["end"])
        cases.append(Case("names", name))

    os.mkfifo(folder / "fifo.mp4")
    (folder / "dir.mp4").mkdir()
    (folder / "broken_link.mp4").symlink_to(folder / "does-not-exist.mp4")
    (folder / "dev_zero.mp4").symlink_to("/dev/zero")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(folder / "sock.mp4"))
    except OSError:  # path too long for AF_UNIX on this machine
        pass
    finally:
        sock.close()
    for name in ("fifo.mp4", "dir.mp4", "broken_link.mp4", "dev_zero.mp4", "sock.mp4"):
        if os.path.lexists(folder / name):
            cases.append(Case("special", name, special=True))
    return cases


def python_name(name: str) -> str:
    """A test id for a case name (printable, short)."""
    from emovid.errors import display_path

    text = display_path(name).replace("\n", "\\n")
    return text if len(text) < 40 else text[:20] + "..." + text[-12:]


__all__ = ["Case", "Hang", "Outcome", "build_video_corpus", "python_name", "run_cli"]
