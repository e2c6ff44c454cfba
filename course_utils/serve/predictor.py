"""An exported learner behind the web app: what kind of model it is, turning uploaded bytes into an input
(with errors a browser can show), and predictions as plain JSON values.

Every check that can refuse a request runs here, before anything is stored (see feedback.py).
"""
from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import io
import math
import threading
import warnings
import weakref
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ..data_block import CategoryList, MultiCategoryList
from ..learner import Learner, load_learner
from ..vision.image import to_rgb
from ..vision.points import PointsLabelList
from ..vision.segmentation import MASK_COLOURS, SegmentationLabelList
from ..vision.transforms import sample_plan
from .batcher import Batcher

__all__ = ["KINDS", "BadInput", "ModelOutputError", "Predictor", "model_kind"]

KINDS = ("multi-label", "single-label", "segmentation", "points", "text")
# What Pillow reports -> the extension a stored copy gets (the upload's own name is never used).
IMAGE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}
# EXIF orientations that need a turn or a flip, and those that swap width and height (as vision/image.py)
TURNS, SIDEWAYS = (2, 3, 4, 5, 6, 7, 8), (5, 6, 7, 8)
BIG_PIXELS = 4_000_000  # after decoding a photo this big, the freed pixel memory is handed back to the system


class BadInput(ValueError):
    """A request the app refuses: `status` is the HTTP status, the message says what was wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ModelOutputError(RuntimeError):
    """The model answered NaN or infinite values: the export itself is broken, not the request."""


def model_kind(learn: Learner) -> str:
    """Which of the lesson's models this is, from its data's types (one of `KINDS`)."""
    x, y = learn.data.train_ds.x, learn.data.train_ds.y
    if type(x).__name__ == "TextList" and isinstance(y, CategoryList):
        return "text"
    if isinstance(y, MultiCategoryList):
        return "multi-label"
    if isinstance(y, CategoryList):
        return "single-label"
    if isinstance(y, SegmentationLabelList):
        return "segmentation"
    if isinstance(y, PointsLabelList):
        return "points"
    raise ValueError(f"The web app serves classifiers, segmentation and points models; this export predicts "
                     f"{type(y).__name__} targets, which it cannot show.")


class Predictor:
    """One exported learner, ready to answer requests from many threads: each prepares its own input, and the
    model runs them in batches in one thread of its own (a model is not thread-safe; see batcher.py).
    `max_batch=1` runs one request at a time; `batch_wait_ms` is the longest a request waits for companions."""

    def __init__(self, export: str | Path, max_chars: int = 10_000, max_mp: float = 40.0, max_batch: int = 32,
                 batch_wait_ms: float = 5.0):
        self.export = Path(export)
        self.learn = load_learner(export, device="cpu")
        f = self.export / "export.pkl" if self.export.is_dir() else self.export
        self.export_file = f
        self.sha256 = hashlib.sha256(f.read_bytes()).hexdigest()  # which export, even after a rename or copy
        self.trained = datetime.fromtimestamp(f.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
        self.kind = model_kind(self.learn)
        self.classes = list(self.learn.data.classes or [])
        self.max_chars = max_chars
        self.max_mp = max_mp  # megapixels: far below Pillow's bomb limit, so a huge photo costs little memory
        self._lock = threading.Lock()  # text models: one tokenisation at a time
        self.batcher = Batcher(self.learn.eval_forward, max_batch=max_batch, wait_ms=batch_wait_ms)
        weakref.finalize(self, self.batcher.close)  # the worker thread ends with the predictor

    def nonfinite_weights(self) -> list[str]:
        """The names of the model's tensors that hold NaN or infinite values (none in a sound export)."""
        return [k for k, v in self.learn.model.state_dict().items()
                if v.is_floating_point() and not bool(torch.isfinite(v).all())]

    @property
    def export_id(self) -> str:
        """The served export as one feedback.csv cell: its file name and the first 12 hex digits of its sha256."""
        return f"{self.export_file.name}@{self.sha256[:12]}"

    def info(self) -> dict:
        """What the model is: its kind, classes and input size, and which export it is: file name, sha256 of
        the file (`sha256sum` prints the same) and when it was trained (the export file's time, UTC)."""
        size = self.learn.data.valid_ds.cfg.size
        res = {"kind": self.kind, "classes": self.classes, "export": self.export_file.name,
               "export_path": str(self.export_file.resolve()), "export_sha256": self.sha256[:12],
               "trained": self.trained,
               "input_size": list(size) if isinstance(size, (tuple, list)) else size,
               "input": "text" if self.kind == "text" else "image"}
        if self.kind == "text":
            res["max_chars"] = self.max_chars
        if self.kind == "multi-label":
            thresh = self.learn.data.train_ds.y.thresh
            res["thresh"] = thresh.tolist() if isinstance(thresh, torch.Tensor) else thresh
        return res

    # --- inputs ----------------------------------------------------------------------------------------
    def open_image(self, data: bytes) -> tuple[Image.Image, str]:
        """Decoded uploaded bytes, upright (EXIF orientation applied, as `predict` on a file does), and the
        extension to store them under; refuses what is not a whole image of at most `max_mp` megapixels."""
        if not data:
            raise BadInput(400, "The uploaded file is empty; choose an image file.")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                ext = IMAGE_FORMATS.get(img.format)
                if ext is None:
                    raise BadInput(415, f"{img.format} images are not accepted; use JPEG, PNG, WebP, GIF, BMP or TIFF.")
                self._check_pixels(img)
                big = img.width * img.height > BIG_PIXELS
                img = self._decode(img)
                if big:
                    _give_memory_back()
        except BadInput:
            raise
        except UnidentifiedImageError:
            raise BadInput(415, "The uploaded file is not an image (it is not a JPEG, PNG, WebP, GIF, BMP or TIFF "
                                "file); choose a photo.") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise BadInput(413, f"The image has too many pixels to be a photo; resize it below {self.max_mp:g} "
                                "megapixels.") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise BadInput(422, f"The image is corrupt or truncated ({e}); upload the complete file again.") from None
        return img, ext

    def _check_pixels(self, img: Image.Image) -> None:
        """Refuse, from the header alone, an image over `max_mp` megapixels (before a pixel is decoded)."""
        w, h = img.size
        if w * h > self.max_mp * 1e6:
            raise BadInput(413, f"The image is {w}x{h} pixels ({w * h / 1e6:.1f} megapixels); this app takes at "
                                f"most {self.max_mp:g}. Resize it (or start the app with a larger --max-mp).")

    def _decode(self, img: Image.Image) -> Image.Image:
        """Every pixel decoded now (a truncated file fails here, not in the model), upright, and, as `predict`
        on a file does it, straight at the size the model's resize needs (a JPEG decoded at a reduced scale):
        a big photo costs little memory after this, and the answer is the same as `predict` on the file. Points
        models keep the photo's own pixels (their answer is in them); texts never come here."""
        if _orientation(img) in TURNS:
            img = ImageOps.exif_transpose(img)  # decodes; the CLI's open_lazy does the same
        if img.mode == "F":
            img.load()
            if not np.isfinite(np.asarray(img)).all():
                raise BadInput(422, "The image has NaN or infinite pixel values (a floating-point TIFF), which "
                                    "cannot be shown as a photo; send an ordinary 8- or 16-bit image.")
        if self.kind == "points":
            img.load()
            return img
        ds = self.learn.data.valid_ds
        plan = sample_plan(ds.tfms, (img.height, img.width), ds.cfg.size, ds.cfg.resize_method, train=False)
        h, w = plan.resized
        if img.format == "JPEG":
            img.draft("RGB", (w, h))  # what vision's load_rgb does: a DCT-domain downscale
        img.load()
        return plan.resize(to_rgb(img))

    def check_text(self, text) -> str:
        """The text to classify, refused when missing, empty or longer than `max_chars`."""
        if not isinstance(text, str):
            raise BadInput(400, 'Send the text as JSON: {"text": "..."}.')
        if not text.strip():
            raise BadInput(400, "The text is empty; paste a review to classify.")
        if len(text) > self.max_chars:
            raise BadInput(413, f"The text has {len(text)} characters; the limit is {self.max_chars}. "
                                "Shorten it (or start the app with a larger --max-chars).")
        return text

    # --- predictions -----------------------------------------------------------------------------------
    def predict(self, item) -> dict:
        """A prediction as JSON values: the label(s) and probabilities for classifiers, a coloured mask PNG
        over the model's view of the photo for segmentation, the point(s) in the photo's pixels for points."""
        serial = self._lock if self.kind == "text" else contextlib.nullcontext()
        with self.batcher.request() as ticket, serial, torch.no_grad():
            label, _, probs = self.learn.predict(item, run=lambda xb: self.batcher(xb, ticket))
            if not bool(torch.isfinite(probs).all()):
                raise ModelOutputError(
                    f"The model's output is not finite (NaN or infinite): the weights of {self.export_file.name} are "
                    "broken (a fine-tune with a bad learning rate?). Serve another export.")
            res = {"kind": self.kind}
            if self.kind == "segmentation":
                res.update(self._mask_json(item, label))
            elif self.kind == "points":
                res.update(points=[[round(v, 1) for v in p] for p in label.tolist()],
                           image_size=[item.height, item.width])
            else:
                res.update(self._class_json(label, probs))
        res["predicted"] = predicted_text(self.kind, res)
        return res

    def _class_json(self, label, probs: torch.Tensor) -> dict:
        order = probs.argsort(descending=True).tolist()
        return {"prediction": label, "labels": [self.classes[i] for i in order],
                "probabilities": [round(float(probs[i]), 4) for i in order]}

    def _mask_json(self, img: Image.Image, mask: torch.Tensor) -> dict:
        """The photo as the model saw it (resized and cropped like the validation set) and the predicted mask
        in the same pixels, both as base64 PNGs, with the share of pixels of each class present."""
        seen = self.learn.data.denorm(self.learn.data.one_item(img))[0].clamp(0, 1)
        ids = mask[0].numpy()
        colours = (MASK_COLOURS[ids % len(MASK_COLOURS)] * 255).astype(np.uint8)  # as in show_mask
        counts = np.bincount(ids.ravel(), minlength=len(self.classes))
        legend = [{"label": self.classes[i], "share": round(float(counts[i] / ids.size), 4),
                   "colour": "#%02x%02x%02x" % tuple(colours[ids == i][0])}
                  for i in np.argsort(-counts) if counts[i]]
        photo = (seen.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        return {"prediction": [c["label"] for c in legend], "legend": legend,
                "image_png": _png_base64(photo), "mask_png": _png_base64(colours)}

    # --- feedback ----------------------------------------------------------------------------------------
    def corrected_label(self, labels: list[str], point: tuple | None, image_size=None) -> str:
        """The user's correction as the text stored in feedback.csv; refuses labels that are not classes."""
        if self.kind == "segmentation":
            raise BadInput(422, "Corrections of masks are not collected; feedback works for classifiers and points.")
        if self.kind == "points":
            return _check_point(point, image_size)
        labels = [s.strip() for s in labels if s.strip()]
        if not labels:
            raise BadInput(400, "Say what the right answer is: send the field 'label' with one of the classes.")
        unknown = [s for s in labels if s not in self.classes]
        if unknown:
            raise BadInput(422, f"{unknown[0]!r} is not one of the model's classes: {', '.join(self.classes)}.")
        if self.kind != "multi-label" and len(labels) > 1:
            raise BadInput(422, f"This model gives one class per {'text' if self.kind == 'text' else 'image'}; "
                                f"send one label, not {len(labels)}.")
        return " ".join(dict.fromkeys(labels))  # multi-label: each tag once, in the order given


def predicted_text(kind: str, res: dict) -> str:
    """A prediction as one feedback.csv cell: the class, the tags separated by spaces, or 'row col' pixels."""
    if kind == "points":
        return "; ".join(f"{r} {c}" for r, c in res["points"])
    pred = res["prediction"]
    return " ".join(pred) if isinstance(pred, list) else str(pred)


def _check_point(point, image_size) -> str:
    if point is None:
        raise BadInput(400, "Click where the right point is: send the fields 'row' and 'col' (pixels of the photo).")
    try:
        row, col = (float(v) for v in point)
    except (TypeError, ValueError):
        raise BadInput(422, f"'row' and 'col' must be numbers, not {point!r}.") from None
    h, w = image_size
    if not (math.isfinite(row) and math.isfinite(col) and 0 <= row <= h - 1 and 0 <= col <= w - 1):
        raise BadInput(422, f"The point ({row}, {col}) is outside the {h}x{w} photo; rows go 0..{h - 1}, "
                            f"columns 0..{w - 1}.")
    return f"{row:.1f} {col:.1f}"


def _give_memory_back() -> None:
    """Return freed memory to the system (glibc's malloc_trim): without it, the pixels of each big photo decoded
    in a worker thread stay in that thread's heap, and a few concurrent uploads keep hundreds of MB."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        pass


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(ExifTags.Base.Orientation, 1))
    except (OSError, ValueError, TypeError, SyntaxError):  # a damaged EXIF block: the pixels as stored
        return 1


def _png_base64(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")
