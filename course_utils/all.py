"""One import line for the lesson video's code: `from course_utils.all import *` gives what
`from fastai.vision import *` (and the text and metrics modules) gave the lesson: the data block API, the
learners, metrics, datasets, and `np`, `pd`, `torch`, `nn`, `F`, `plt`, `partial`, `Path`, `gc`, `re`, `os`.

The notebooks keep their explicit imports; this module is for typing along with the video. A name of the
video's library that has no equivalent here raises an error saying what to type instead (see `UNSUPPORTED`)."""
import gc
import os
import re
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .callbacks import unfreeze_slice
from .config import CoursePath as Path
from .config import gpu_mem_get_free_no_cache, seed_everything
from .data_block import (
    CategoryList,
    DataBunch,
    DatasetType,
    FloatList,
    ItemList,
    LabelList,
    LabelLists,
    MultiCategoryList,
    tensor,
)
from .download import Config, URLs, get_dataset, untar_data
from .interpret import Interpretation as ClassificationInterpretation
from .learner import Learner, load_learner, lr_find
from .metrics import MSELossFlat, accuracy, accuracy_thresh, dice, error_rate, fbeta, mse, rmse
from .vision import (
    ObjectItemList,
    PointsItemList,
    ResizeMethod,
    SegmentationItemList,
    bb_pad_collate,
    biwi_center,
    cnn_learner,
    get_annotations,
    get_transforms,
    imagenet_stats,
    models,
    open_image,
    open_mask,
    show_boxes,
    show_image,
    show_mask,
    show_points,
    unet_learner,
)
from .vision.data import ImageFileList, ImageItemList, ImageList, get_image_files
from .vision.image import VisionImage as Image
from .vision.image import plot_multi
from .vision.models import create_cnn
from .vision.points import FlowField, ImagePoints
from .vision.segmentation import ImageSegment

__all__ = [
    # what the lesson's star import brought along
    "gc", "os", "re", "partial", "plt", "np", "pd", "torch", "nn", "F", "Path",
    # data
    "ItemList", "LabelList", "LabelLists", "DataBunch", "DatasetType", "CategoryList", "MultiCategoryList",
    "FloatList", "tensor", "URLs", "untar_data", "Config", "get_dataset",
    # vision
    "ImageList", "ImageItemList", "ImageFileList", "get_image_files", "SegmentationItemList", "PointsItemList",
    "ObjectItemList", "get_transforms", "ResizeMethod", "imagenet_stats", "open_image", "open_mask", "Image",
    "ImageSegment", "ImagePoints", "FlowField", "show_image", "show_mask", "show_points", "show_boxes", "plot_multi",
    "get_annotations", "bb_pad_collate", "biwi_center", "models", "cnn_learner", "create_cnn", "unet_learner",
    # learner, metrics, interpretation
    "Learner", "load_learner", "lr_find", "unfreeze_slice", "gpu_mem_get_free_no_cache", "seed_everything",
    "accuracy", "error_rate", "accuracy_thresh", "fbeta", "dice", "mse", "rmse", "MSELossFlat",
    "ClassificationInterpretation",
]

try:  # text names: the text package adds its own (TextList, language_model_learner, ...)
    from . import text as _text
    for _name in getattr(_text, "__all__", ()):
        globals()[_name] = getattr(_text, _name)
        if _name not in __all__:
            __all__.append(_name)
except ImportError as _e:  # noqa: F841 - a broken text install should not stop the vision lessons
    pass

# Names of the lesson video's library that have no equivalent here, and what to type instead.
UNSUPPORTED = {
    "ImageDataBunch": "the data block chain: ImageList.from_folder(path).split_by_folder().label_from_folder()"
                      ".transform(get_transforms(), size=224).databunch(bs=64)",
    "ObjectDetectDataset": "ObjectItemList (the data block tour)",
    "SegmentationDataset": "SegmentationItemList (the CamVid lesson)",
    "TextFileList": "TextList.from_folder(path)",
    "TextSplitData": "TextList.from_folder(path).split_by_folder(valid='test')",
    "ClassificationLearner": "cnn_learner(data, models.resnet34)",
    "FlattenedLoss": "nothing: each label type brings its own loss (learn.loss_func)",
    "CrossEntropyFlat": "nothing: classification and masks already use cross-entropy (learn.loss_func)",
    "BCEWithLogitsFlat": "nothing: multi-label data already uses binary cross-entropy with logits",
    "get_ip": "ImagePoints(FlowField(img.size, pts), scale=True) (define get_ip yourself, as the lesson does)",
    "num_cpus": "os.cpu_count()",
    "defaults": "nothing: the device is picked for you (course_utils.config.default_device())",
}


class VideoNameError(ImportError):
    """A name of the lesson video's library that has no equivalent here; the message says what to type instead.
    An ImportError, so that `from course_utils.all import Name` shows the message (Python replaces an
    AttributeError there with a bare "cannot import name")."""


def __getattr__(name: str):
    if name in UNSUPPORTED:
        raise VideoNameError(f"`{name}` is a name of the lesson video's library with no equivalent here; "
                             f"type instead: {UNSUPPORTED[name]}.")
    raise AttributeError(f"module 'course_utils.all' has no attribute {name!r}")
