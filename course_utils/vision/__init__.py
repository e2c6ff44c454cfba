"""Vision: image items, transforms and CNN learners (lesson 3's planet, camvid and head-pose)."""
from .biwi import biwi_center
from .boxes import ObjectItemList, bb_pad_collate, get_annotations, show_boxes
from .data import ImageFileList, ImageItemList, ImageList, get_image_files, imagenet_stats
from .image import VisionImage, open_image, plot_multi, show_image
from .models import cnn_learner, create_cnn, models
from .points import FlowField, ImagePoints, PointsItemList, show_points
from .segmentation import ImageSegment, SegmentationItemList, open_mask, show_mask
from .transforms import ResizeMethod, get_transforms
from .unet import unet_learner

__all__ = ["ImageList", "imagenet_stats", "open_image", "show_image", "cnn_learner", "models",
           "ResizeMethod", "get_transforms", "PointsItemList", "show_points", "biwi_center",
           "SegmentationItemList", "open_mask", "show_mask", "unet_learner",
           "ObjectItemList", "get_annotations", "bb_pad_collate", "show_boxes",
           # the lesson video's names (see course_utils.all)
           "ImageItemList", "ImageFileList", "get_image_files", "VisionImage", "plot_multi", "create_cnn",
           "FlowField", "ImagePoints", "ImageSegment"]


def __getattr__(name: str):
    """A name of the lesson video's library that lives elsewhere here, or has no equivalent: say what to type."""
    from .. import all as everything
    if name in everything.__all__ or name in everything.UNSUPPORTED:
        getattr(everything, name)  # raises VideoNameError with the replacement for an unsupported name
        raise ImportError(f"`{name}` is not in course_utils.vision; `from course_utils.all import {name}` has it "
                          "(or `from course_utils.all import *`, the lesson's one import line).")
    raise AttributeError(f"module 'course_utils.vision' has no attribute {name!r}")
