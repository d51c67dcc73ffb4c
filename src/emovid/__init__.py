"""emovid: read emotion from video.

Submodules are imported on use so ``import emovid`` stays cheap: ``emovid.video`` (decoding, sampling,
transforms), ``emovid.data`` (label formats, datasets, synthetic data), ``emovid.models`` (backbone registry).
"""

from importlib.metadata import PackageNotFoundError, version

from emovid.errors import EmovidError

try:
    __version__ = version("emovid")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["EmovidError", "__version__"]
