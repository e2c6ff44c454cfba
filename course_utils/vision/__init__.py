"""Vision: image items, transforms and CNN learners (lesson 3's planet, camvid and head-pose)."""
from .biwi import biwi_center
from .boxes import ObjectItemList, bb_pad_collate, get_annotations, show_boxes
from .data import ImageList, imagenet_stats
from .image import open_image, show_image
from .models import cnn_learner, models
from .points import PointsItemList, show_points
from .segmentation import SegmentationItemList, open_mask, show_mask
from .transforms import ResizeMethod, get_transforms
from .unet import unet_learner

__all__ = ["ImageList", "imagenet_stats", "open_image", "show_image", "cnn_learner", "models",
           "ResizeMethod", "get_transforms", "PointsItemList", "show_points", "biwi_center",
           "SegmentationItemList", "open_mask", "show_mask", "unet_learner",
           "ObjectItemList", "get_annotations", "bb_pad_collate", "show_boxes"]
