"""An exported learner behind the web app: what kind of model it is, turning uploaded bytes into an input
(with errors a browser can show), and predictions as plain JSON values (what each kind answers, and how its
corrections are written, is its class in kinds.py).

Every check that can refuse a request runs here, before anything is stored (see feedback.py).
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import threading
import warnings
import weakref
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ..kinds import KINDS, BadInput, kind_named, kind_of  # noqa: F401  (kept importable)
from ..learner import Learner, load_learner
from ..vision.image import to_rgb
from ..vision.transforms import sample_plan
from .batcher import Batcher

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name

# What Pillow reports -> the extension a stored copy gets (the upload's own name is never used).
IMAGE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}
# EXIF orientations that need a turn or a flip, and those that swap width and height (as vision/image.py)
TURNS, SIDEWAYS = (2, 3, 4, 5, 6, 7, 8), (5, 6, 7, 8)
BIG_PIXELS = 4_000_000  # after decoding a photo this big, the freed pixel memory is handed back to the system


class ModelOutputError(RuntimeError):
    """The model answered NaN or infinite values: the export itself is broken, not the request."""


def model_kind(learn: Learner) -> str:
    """Which of the lesson's models this is (one of `KINDS`; see `kinds.kind_of`)."""
    return kind_of(learn).name


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
        self.task = kind_of(self.learn)  # what the answers and corrections of this kind are (kinds.py)
        self.kind = self.task.name
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
               "input": self.task.input}
        res.update(self.task.info(self.learn, self.max_chars))
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
        if self.task.keeps_pixels:
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
        serial = self._lock if self.task.input == "text" else contextlib.nullcontext()
        with self.batcher.request() as ticket, serial, torch.no_grad():
            label, _, probs = self.learn.predict(item, run=lambda xb: self.batcher(xb, ticket))
            if not bool(torch.isfinite(probs).all()):
                raise ModelOutputError(
                    f"The model's output is not finite (NaN or infinite): the weights of {self.export_file.name} are "
                    "broken (a fine-tune with a bad learning rate?). Serve another export.")
            res = {"kind": self.kind, **self.task.answer(self.learn, item, label, probs)}
        res["predicted"] = self.task.predicted_cell(res)
        return res

    # --- feedback ----------------------------------------------------------------------------------------
    def corrected_label(self, labels: list[str], point: tuple | None, image_size=None) -> str:
        """The user's correction as the text stored in feedback.csv; refuses labels that are not classes."""
        return self.task.correction_cell(labels, point, image_size, self.classes)


def predicted_text(kind: str, res: dict) -> str:
    """A prediction as one feedback.csv cell: the class, the tags separated by spaces, or 'row col' pixels."""
    return kind_named(kind).predicted_cell(res)


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
