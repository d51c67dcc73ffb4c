"""Faces in video: offline detection (:mod:`.detect`), tracking over sampled frames (:mod:`.track`) and square
crops, including the EmoNeXt recipe's N evenly spaced main-face crops per video (:mod:`.crops`).

>>> from emovid.faces import video_face_crops
>>> fc = video_face_crops("talk.mp4", num_crops=30)   # doctest: +SKIP
>>> fc.crops.shape, fc.length                           # doctest: +SKIP
((30, 224, 224, 3), 27)
"""

from emovid.faces.crops import FaceCrops, crop_square, square_box, video_face_crops
from emovid.faces.detect import DETECTORS, Face, FaceDetector, HaarFaceDetector, create_detector, iou_matrix, nms
from emovid.faces.track import IoUTracker, Track, main_track

__all__ = [
    "DETECTORS",
    "Face",
    "FaceCrops",
    "FaceDetector",
    "HaarFaceDetector",
    "IoUTracker",
    "Track",
    "create_detector",
    "crop_square",
    "iou_matrix",
    "main_track",
    "nms",
    "square_box",
    "video_face_crops",
]
