"""EmoNeXt-sequence heads: CMU-MOSEI emotions (``emotion_dist``) and First Impressions V2 personality (``personality``).

Both train on per-video face-embedding sequences written by ``emovid faces embed`` (``ROOT/SPLIT/VIDEO.pt``
holding ``{"emb": Tensor[30, D], "length": n}``, zero rows for missing faces), given as ``--video-root ROOT``
(``--features`` is an alias). The head is a small Transformer over the sequence
(:class:`emovid.models.heads.SequenceTransformer`).

* ``emotion_dist``: labels from a MOSEI CSV (``video_id,happy,sad,anger,surprise,disgust,fear[,split]``) turned
  into the 7-class distribution of :mod:`emovid.data.readers.mosei`; loss: class-balanced ``KLDivLoss`` to the
  softmax targets (weights inversely proportional to each class's mass in the training set); metrics: KL
  divergence, top-1 agreement of the predicted and labelled strongest class. The CSV's ``split`` column
  (train/dev/test) is used when present.
* ``personality``: labels from an FIV2 annotation pickle (OCEAN kept); loss: MSE on sigmoid outputs; metrics:
  MSE, MAE, mean accuracy ``1 - MAE`` (the challenge's score) and CCC averaged over the traits (a constant
  prediction of a trait scores 0 for it). Videos are split by their
  source YouTube video, so clips of one person never sit on both sides.

The code lives in :mod:`emovid.tasks.face_embedding` (data loading, ``emotion_dist``, ``personality``),
:mod:`emovid.tasks.face_fusion` (``fusion``) and :mod:`emovid.tasks.face_predict` (inference on new videos); every
name stays importable from here, and importing this module registers the three tasks.
"""

from emovid.tasks.face_embedding import (
    EmbeddingLoader,
    EmotionDistTask,
    PersonalityTask,
    official_split,
)
from emovid.tasks.face_fusion import FusionTask
from emovid.tasks.face_predict import FacePersonalityPredictor, FaceSequencePredictor, personality_predictor

__all__ = [
    "EmbeddingLoader",
    "EmotionDistTask",
    "FacePersonalityPredictor",
    "FaceSequencePredictor",
    "FusionTask",
    "PersonalityTask",
    "official_split",
    "personality_predictor",
]
