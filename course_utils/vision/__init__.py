"""Vision: image items, transforms and CNN learners (lesson 3's planet, camvid and head-pose)."""
from .data import ImageList, imagenet_stats
from .image import open_image, show_image
from .models import cnn_learner, models
from .transforms import ResizeMethod, get_transforms

__all__ = ["ImageList", "imagenet_stats", "open_image", "show_image", "cnn_learner", "models",
           "ResizeMethod", "get_transforms"]
