"""emovid: read emotion from video.

Submodules are imported on use so ``import emovid`` stays cheap: ``emovid.video`` (decoding, sampling,
transforms), ``emovid.data`` (label formats, datasets, synthetic data), ``emovid.models`` (backbone registry).

On a shared machine, call ``emovid.utils.threads.configure()`` before the first ``import torch`` (the ``emovid``
command does): idle OpenMP threads then spin only briefly before sleeping, and ``EMOVID_THREADS`` sets the thread
count.
"""

import os
from importlib.metadata import PackageNotFoundError, version

from emovid.errors import EmovidError

try:
    __version__ = version("emovid")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"


def load(run: str | os.PathLike, device: str = "cpu", clips: str | None = None, batch_size: int = 16):
    """A trained run folder as a :class:`emovid.predict.Predictor`: ``emovid.load(run).predict_one("talk.mp4")``.

    Imported on use (torch and the task modules load only now); see :func:`emovid.predict.load` for the arguments.
    """
    from emovid.predict import load as _load

    return _load(run, device=device, clips=clips, batch_size=batch_size)


def analyze_video(path: str | os.PathLike, **kwargs):
    """Faces and emotions of one video or image as an :class:`emovid.analyze.Analysis` (nothing is written).

    ``emovid.analyze_video("talk.mp4", smooth=0.5).rows()`` gives one dict per frame and face; ``.to_pandas()`` a
    DataFrame (needs pandas); ``.result`` the JSON of ``emovid analyze``. Imported on use; see
    :func:`emovid.analyze.analyze_video` for the arguments (model, pretrained, device, analysis options).
    """
    from emovid.analyze.pipeline import analyze_video as _analyze_video

    return _analyze_video(path, **kwargs)


__all__ = ["EmovidError", "__version__", "analyze_video", "load"]
