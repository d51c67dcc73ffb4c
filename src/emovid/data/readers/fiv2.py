"""First Impressions V2 (ChaLearn 2016/17, the EmoNeXt recipe): Big-Five personality traits per 15 s clip.

The official annotations (``annotation_training.pkl``, ``annotation_validation.pkl``, ``annotation_test.pkl``)
are Python-2 pickles of ``{trait: {"VIDEOID.NNN.mp4": float in [0, 1]}}`` with the traits extraversion,
neuroticism, agreeableness, conscientiousness, openness and interview. Like the original recipe we keep the five OCEAN
traits, in :data:`FIV2_TRAITS` order; ``interview`` is kept aside when present.

Videos ship split over 75 folders (``training80_01`` … ``training80_25``, ``validation80_01`` …,
``test80_01`` …). :func:`find_fiv2_videos` indexes given folders and their immediate sub-folders, so passing
the dataset root finds every clip.

The pickle is read with a restricted unpickler that only builds dicts, strings and numbers (including NumPy
scalars), so a label file cannot run code. The only callables a pickle may name are :data:`_ALLOWED`:

* ``int``, ``float``, ``dict`` and ``copy_reg._reconstructor`` (which can only instantiate those);
* ``numpy.dtype`` for a numeric type code (``"f8"``, ``"<i4"``, ...) and the NumPy scalar constructor
  (``numpy.core.multiarray.scalar``, ``numpy._core.multiarray.scalar`` in NumPy 2) for numeric dtypes: how
  Python 2 and 3 pickle ``np.float64`` values;
* ``_codecs.encode(text, "latin1")``: how protocol 2 pickles ``bytes`` in Python 3 (the scalar's raw bytes);
  any other argument is refused.
"""

from __future__ import annotations

import copyreg
import io
import os
import pickle
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from emovid.data.readers._common import Problem, Reporter, clip, key_path, parse_float, read_bytes, run_reader, show
from emovid.errors import InputNotFoundError
from emovid.utils.paths import check_regular_file

#: OCEAN order used for targets.
FIV2_TRAITS: tuple[str, ...] = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
FIV2_EXTRA = ("interview",)
FIV2_FOLDER_RE = re.compile(r"^(training|validation|test)80_\d\d$")
_KEY_RE = re.compile(r"^(?P<yt>.+)\.(?P<clip>\d{3})\.mp4$")
# NumPy dtype kinds a scalar may have: bool, signed/unsigned int, float, complex. Not "O" (object), "V" (void, which
# can hold objects), "S"/"U" (no label is text) or "M"/"m".
_NUMERIC_KINDS = "biufc"


def _np_dtype(spec, align=False, copy=False, *rest):
    """``numpy.dtype(spec, align, copy)`` for a short numeric type code only."""
    import numpy as np

    if not isinstance(spec, str) or len(spec) > 8 or rest:
        raise pickle.UnpicklingError(f"refusing numpy.dtype({show(spec)}, ...)")
    dt = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dt.kind not in _NUMERIC_KINDS:
        raise pickle.UnpicklingError(f"refusing numpy.dtype({show(spec)}): not a numeric type")
    return dt


def _np_scalar(dtype, data=None, *rest):
    """NumPy's scalar constructor (raw bytes + dtype) for numeric dtypes built by :func:`_np_dtype` only."""
    import numpy as np

    ok = (
        isinstance(dtype, np.dtype)
        and dtype.kind in _NUMERIC_KINDS
        # BUILD may have set fields/subarray on the dtype: only a plain number may be made from raw bytes
        and not dtype.hasobject
        and dtype.fields is None
        and dtype.subdtype is None
        and isinstance(data, bytes | str)
        and not rest
    )
    if not ok:
        raise pickle.UnpicklingError("refusing a numpy scalar that is not a plain number")
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import scalar
    # Python 2 pickles carry the bytes as a str (decoded as latin1 here); NumPy encodes it back
    return scalar(dtype, data)


_LATIN1_NAMES = frozenset({"latin1", "iso88591", "l1"})


def _latin1_encode(text, encoding="utf-8", errors="strict", *rest):
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``: ``encode(str, "latin1")``, nothing else."""
    if not isinstance(text, str) or rest or errors != "strict" or not isinstance(encoding, str):
        raise pickle.UnpicklingError("refusing _codecs.encode other than encode(text, 'latin1')")
    if encoding.lower().replace("-", "").replace("_", "") not in _LATIN1_NAMES:  # no codec lookup on pickle data
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {show(encoding)}")
    return text.encode("latin1")


#: ``(module, name)`` a pickle may name -> what it gets instead (never an arbitrary import).
_ALLOWED: dict[tuple[str, str], Callable] = {
    ("builtins", "float"): float,
    ("builtins", "int"): int,
    ("builtins", "dict"): dict,
    ("__builtin__", "float"): float,
    ("__builtin__", "int"): int,
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("numpy", "dtype"): _np_dtype,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("_codecs", "encode"): _latin1_encode,
}


@dataclass(frozen=True)
class FIV2Record:
    """One FIV2 clip.

    Attributes:
        video_id: ``VIDEOID.NNN`` (the file name without ``.mp4``).
        file: the annotation key, ``VIDEOID.NNN.mp4``.
        video_path: where the clip was found (or would be, in the first searched folder, if missing).
        traits: OCEAN values in [0, 1], :data:`FIV2_TRAITS` order.
        interview: the ``interview`` score, when present.
    """

    video_id: str
    file: str
    video_path: Path
    traits: tuple[float, ...]
    interview: float | None = None

    @property
    def youtube_id(self) -> str:
        """The source video; clips of one source share a person, so split by this."""
        m = _KEY_RE.match(self.file)
        return m.group("yt") if m else self.video_id

    @property
    def targets(self) -> dict[str, tuple[float, ...]]:
        return {"traits": self.traits}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load {clip(str(module), 60)}.{clip(str(name), 60)}")
        return found

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing a persistent id")


def unpickle_annotations(data: bytes) -> object:
    """Unpickle annotation bytes (Python 2 strings read as ``latin1``) allowing only plain data types."""
    return _SafeUnpickler(io.BytesIO(data), encoding="latin1").load()


def load_annotation_pickle(path: str | os.PathLike) -> object:
    """Unpickle an official annotation file (Python 2, ``latin1``) allowing only plain data types.

    Raises:
        InputNotFoundError: no such file.
        SpecialFileError: a folder, FIFO, device or socket (refused before opening).
    """
    data = Path(check_regular_file(path, "annotation file")).read_bytes()
    return unpickle_annotations(data)


def training_annotations(path: str | os.PathLike) -> Path:
    """The annotation pickle to train on: ``path`` itself, or in an FIV2 folder its ``annotation_training.pkl``.

    A folder is searched as ``emovid data check fiv2`` searches it (``annotation_*.pkl`` directly inside); a folder
    with a single such pickle gives that one.

    Raises:
        ConfigError: a folder without annotation pickles, or with several but no ``annotation_training.pkl``.
    """
    from emovid.errors import ConfigError

    p = Path(path)
    if not p.is_dir():
        return p
    pkls = sorted(p.glob("annotation_*.pkl"))
    if (p / "annotation_training.pkl") in pkls:
        return p / "annotation_training.pkl"
    if len(pkls) == 1:
        return pkls[0]
    if not pkls:
        raise ConfigError(
            f"{p}: no annotation_*.pkl in this folder; give the First Impressions folder that holds "
            "annotation_training.pkl, or the pickle itself"
        )
    raise ConfigError(
        f"{p}: no annotation_training.pkl among {', '.join(q.name for q in pkls)}; give the pickle to train on"
    )


def find_fiv2_videos(folders: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """Map ``VIDEOID.NNN.mp4`` → path for the ``.mp4`` files in ``folders`` and their immediate sub-folders."""
    out: dict[str, Path] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputNotFoundError(folder, "folder")
        for p in sorted(folder.iterdir()):
            if p.is_dir():
                for q in sorted(p.iterdir()):
                    if q.suffix == ".mp4":
                        out.setdefault(q.name, q)
            elif p.suffix == ".mp4":
                out.setdefault(p.name, p)
    return out


def read_fiv2(
    path: str | os.PathLike,
    video_dirs: Iterable[str | os.PathLike] | None = None,
    problems: list[Problem] | None = None,
) -> list[FIV2Record]:
    """Read an FIV2 annotation pickle.

    Args:
        path: ``annotation_*.pkl``.
        video_dirs: folders to search for the clips (each and its sub-folders); defaults to the pickle's folder.
        problems: collect problems here instead of raising.

    Raises:
        LabelFormatError: (raise mode) not a pickle, a missing trait, a clip missing from one trait, a value
            that is not a number in [0, 1], a key not shaped ``VIDEOID.NNN.mp4``; the message names the file
            and the key (``trait."KEY"``).
    """
    dirs = [Path(path).parent] if video_dirs is None else [Path(d) for d in video_dirs]
    return run_reader(_read, Reporter(path, problems), dirs)


def _read(rep: Reporter, dirs: list[Path]) -> list[FIV2Record]:
    raw = read_bytes(rep, "annotation file")
    if not raw:
        rep.fatal("file is empty")
    try:
        data = unpickle_annotations(raw)
    except Exception as e:  # pickle raises many types on garbage input (MemoryError and RecursionError included)
        rep.fatal(f"not a readable annotation pickle ({type(e).__name__}: {clip(str(e), 120)})")
    if not isinstance(data, dict):
        rep.fatal(f"expected a dict {{trait: {{clip: value}}}}, found {type(data).__name__}")
    missing = [t for t in FIV2_TRAITS if t not in data]
    if missing:
        rep.fatal(f"missing trait(s) {', '.join(missing)}; found {show(list(data))}")
    for t in (*FIV2_TRAITS, *FIV2_EXTRA):
        if t in data and not isinstance(data[t], dict):
            rep.fatal(f"trait {t!r} must map clip names to values, found {type(data[t]).__name__}", key_path(t))
    index = find_fiv2_videos(d for d in dirs if d.is_dir())
    keys: list[str] = []
    seen: set[str] = set()
    for t in FIV2_TRAITS:
        for k in data[t]:
            if k not in seen:
                seen.add(k)
                keys.append(k)
    if not keys:
        rep("empty", "the pickle holds no clips")
    out: list[FIV2Record] = []
    for k in keys:
        if not isinstance(k, str) or not _KEY_RE.match(k):
            where = key_path(FIV2_TRAITS[0], k if isinstance(k, str) else show(k))
            rep("malformed", f"clip name {show(k)} is not shaped VIDEOID.NNN.mp4", where)
            continue
        absent = [t for t in FIV2_TRAITS if k not in data[t]]
        if absent:
            rep("malformed", f"clip has no value for trait(s) {', '.join(absent)}", key_path(absent[0], k))
            continue
        vals = [parse_float(rep, data[t][k], key_path(t, k), t, 0.0, 1.0) for t in FIV2_TRAITS]
        if any(v is None for v in vals):
            continue
        interview = None
        if "interview" in data and k in data["interview"]:
            interview = parse_float(rep, data["interview"][k], key_path("interview", k), "interview", 0.0, 1.0)
        path = index.get(k, dirs[0] / k if dirs else Path(k))
        out.append(FIV2Record(k[: -len(".mp4")], k, path, tuple(float(v) for v in vals), interview))
    return out
