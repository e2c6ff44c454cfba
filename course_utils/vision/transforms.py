"""Data augmentation with lesson 3's semantics (`get_transforms`), and resizing.

Every geometric step (crop/resize window, dihedral flip, rotation, zoom, perspective warp)
is one 3x3 matrix in normalised coordinates, so a random draw composes into a single
matrix and the image is resampled once. The same `TransformPlan` moves a mask (nearest
neighbour, no lighting) and points, so targets always follow their pixels.

Coordinates: normalised x (columns) and y (rows) run from -1 to 1 across the pixel *edges*
(`align_corners=False`, the convention PIL uses when resizing), so resizing, flipping and
cropping map pixel centres exactly.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["get_transforms", "ResizeMethod", "points_to_unit"]


class ResizeMethod:
    """How an image reaches the target size (the lesson's semantics)."""
    CROP = "crop"      # scale to cover the target, then crop (random position on train, centre on valid)
    PAD = "pad"        # scale to fit inside the target, then pad by reflection
    SQUISH = "squish"  # resize straight to the target, changing the aspect ratio
    NO = "no"          # keep the image size (all images must then have the same size)


@dataclass(frozen=True)
class ImageTransforms:
    """Random augmentation settings for one set; all zeros means no augmentation (validation)."""
    do_flip: bool = False
    flip_vert: bool = False
    max_rotate: float = 0.0
    max_zoom: float = 1.0
    max_lighting: float = 0.0
    max_warp: float = 0.0
    p_affine: float = 0.0
    p_lighting: float = 0.0

    @property
    def is_random(self) -> bool:
        return self != ImageTransforms()

    def state(self) -> dict:
        """Plain values, for export."""
        return asdict(self)


def get_transforms(do_flip: bool = True, flip_vert: bool = False, max_rotate: float = 10.0, max_zoom: float = 1.1,
                   max_lighting: float = 0.2, max_warp: float = 0.2, p_affine: float = 0.75,
                   p_lighting: float = 0.75) -> tuple[ImageTransforms, ImageTransforms]:
    """(train, valid) transforms as in lesson 3: random flips (all 8 dihedral symmetries if `flip_vert`),
    rotation, zoom, lighting and warp for training; nothing random for validation."""
    train = ImageTransforms(do_flip, flip_vert, max_rotate, max_zoom, max_lighting, max_warp, p_affine, p_lighting)
    return train, ImageTransforms()


# --- elementary matrices (normalised x, y, homogeneous) ---------------------------------
def dihedral_matrix(k: int) -> np.ndarray:
    """One of the 8 symmetries of a square: bit 0 flips x, bit 1 flips y, bit 2 swaps x and y."""
    m = np.diag([-1.0 if k & 1 else 1.0, -1.0 if k & 2 else 1.0, 1.0])
    if k & 4:
        m = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]]) @ m
    return m


def rotation_matrix(degrees: float, out_size: tuple[int, int]) -> np.ndarray:
    """Rotation about the centre, in pixel units so non-square images are not sheared (the rotation
    conjugated by the scaling to pixels: diag(2/w, 2/h) @ R @ diag(w/2, h/2))."""
    th, tw = out_size
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s * th / tw, 0.0], [s * tw / th, c, 0.0], [0.0, 0.0, 1.0]])


def zoom_matrix(scale: float, cx: float, cy: float) -> np.ndarray:
    """Zoom in by `scale` on the point (cx, cy)."""
    return np.array([[1 / scale, 0, cx], [0, 1 / scale, cy], [0, 0, 1]])


def warp_matrix(mx: float, my: float) -> np.ndarray:
    """A perspective tilt: the homography that moves the corners by the magnitudes mx (left/right)
    and my (top/bottom)."""
    src = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    dst = [(x * (1 + my * y), y * (1 + mx * x)) for x, y in src]
    a, b = [], []
    for (x, y), (u, v) in zip(src, dst):
        a += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        b += [u, v]
    h = np.linalg.solve(np.array(a, dtype=float), np.array(b, dtype=float))
    return np.append(h, 1.0).reshape(3, 3)


def lighting_curve(v: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """Brightness and contrast in logit space, as the lesson's library did: sigmoid(logit(v) * contrast +
    logit(brightness)), broadcast over v; brightness 0.5 and contrast 1 leave v (almost: it is clamped to
    [1e-4, 1 - 1e-4] first)."""
    b = brightness.clamp(1e-6, 1 - 1e-6)
    return torch.sigmoid(torch.logit(v.clamp(1e-4, 1 - 1e-4)) * contrast + torch.log(b / (1 - b)))


# --- a sampled transform -----------------------------------------------------------------
@dataclass
class TransformPlan:
    """One draw of the random transforms for one item, applicable to its image, mask and points alike.

    `resized` is the size (h, w) the decoded image is first resized to (cheap, antialiased, by PIL);
    `offset` is where the `out_size` window sits in it; `aug` maps output to window coordinates."""
    src_size: tuple[int, int]
    resized: tuple[int, int]
    out_size: tuple[int, int]
    offset: tuple[int, int]
    aug: np.ndarray
    brightness: float | None = None
    contrast: float | None = None

    def matrix(self) -> np.ndarray:
        """Output coordinates -> input coordinates, one 3x3 matrix (all the geometry composed)."""
        (h, w), (th, tw), (oy, ox) = self.resized, self.out_size, self.offset
        window = np.array([[tw / w, 0, (tw + 2 * ox) / w - 1], [0, th / h, (th + 2 * oy) / h - 1], [0, 0, 1]])
        return window @ self.aug

    def resize(self, img: Image.Image, resample=Image.Resampling.BILINEAR) -> Image.Image:
        """Resize a decoded PIL image to `resized` (antialiased when shrinking)."""
        h, w = self.resized
        return img if img.size == (w, h) else img.resize((w, h), resample)

    @property
    def window_inside(self) -> bool:
        """True when the `out_size` window lies inside the resized image: cutting it out is a plain slice."""
        (h, w), (th, tw), (oy, ox) = self.resized, self.out_size, self.offset
        return 0 <= oy <= h - th and 0 <= ox <= w - tw

    @property
    def aug_is_identity(self) -> bool:
        """True when no random geometry was drawn (validation, or an item whose draws all missed)."""
        return bool(np.array_equal(self.aug, np.eye(3)))

    def window(self, x: torch.Tensor) -> torch.Tensor:
        """Cut the `out_size` window out of a resized image or mask (C, h, w), any dtype: a slice, or where
        the window overhangs the image (ResizeMethod.PAD) a gather of mirrored pixels. No resampling: the
        window sits at a whole-pixel offset, so pixel values are copied exactly."""
        (th, tw), (oy, ox) = self.out_size, self.offset
        if self.window_inside:
            return x[:, oy:oy + th, ox:ox + tw]
        rows = torch.from_numpy(_mirror(np.arange(th) + oy, x.shape[-2]))
        cols = torch.from_numpy(_mirror(np.arange(tw) + ox, x.shape[-1]))
        return x[:, rows][:, :, cols]

    def apply_image(self, x: torch.Tensor) -> torch.Tensor:
        """Transform one resized float image (C, h, w) in [0, 1]: the window, lighting (per pixel, so before the
        geometry), then the random geometry with one bilinear resample. The reference for `vision/batch.py`,
        which does the same for a whole batch."""
        x = self.window(x)
        if self.brightness is not None or self.contrast is not None:
            b = torch.tensor(0.5 if self.brightness is None else self.brightness)
            c = torch.tensor(1.0 if self.contrast is None else self.contrast)
            x = lighting_curve(x, b, c)  # logit space, as in the lesson
        return self._geometry(x, "bilinear")

    def apply_mask(self, m: torch.Tensor) -> torch.Tensor:
        """Transform a resized integer mask (1, h, w) with nearest-neighbour sampling: no invented class ids."""
        m = self.window(m)
        if self.aug_is_identity:
            return m
        return self._geometry(m.float(), "nearest").round().to(m.dtype)

    def apply_points(self, pts: torch.Tensor) -> torch.Tensor:
        """Move points (n, 2) given as (row, col) pixels of the source image to (row, col) pixels of the output."""
        xy = points_to_unit(pts.double(), self.src_size).flip(-1)  # the matrices work on (x, y)
        q = torch.cat([xy, torch.ones_like(xy[:, :1])], dim=1) @ torch.from_numpy(np.linalg.inv(self.matrix())).T
        return unit_to_points((q[:, :2] / q[:, 2:]).flip(-1), self.out_size).float()

    def _geometry(self, x: torch.Tensor, mode: str) -> torch.Tensor:
        """The random geometry `aug` on a window-sized image: one resample, mirrored at the edges."""
        if self.aug_is_identity:
            return x
        pts = _pixel_centres(*self.out_size) @ torch.from_numpy(self.aug).T
        grid = (pts[..., :2] / pts[..., 2:]).to(x.dtype)
        return F.grid_sample(x[None], grid[None], mode=mode, padding_mode="reflection", align_corners=False)[0]


# --- the one pixel-centre convention (align_corners=False): pixel i of n covers [i - 0.5, i + 0.5], and -1 and 1 are
# the image's outer edges, so pixel centre i sits at (2i + 1) / n - 1 ------------------------------------------------
def pixel_centres(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The [-1, 1] coordinates of the centres of n pixels in a row (as `grid_sample` places them)."""
    return (torch.arange(n, dtype=dtype, device=device) * 2 + 1) / n - 1


def points_to_unit(pts: torch.Tensor, size) -> torch.Tensor:
    """(row, col) pixels of an image of `size` (h, w) -> coordinates in [-1, 1], -1 and 1 being the image's
    outer edges (pixel centres sit at integers, so pixel 0 covers -0.5 to 0.5)."""
    hw = pts.new_tensor(tuple(size))
    return (2 * pts + 1) / hw - 1


def unit_to_points(unit: torch.Tensor, size) -> torch.Tensor:
    """The inverse of `points_to_unit`: [-1, 1] coordinates -> (row, col) pixels of an image of `size` (h, w)."""
    hw = unit.new_tensor(tuple(size))
    return ((unit + 1) * hw - 1) / 2


@functools.lru_cache(maxsize=16)
def _pixel_centres(h: int, w: int) -> torch.Tensor:
    """(h, w, 3) float64: the normalised (x, y, 1) of every pixel centre of an h x w image (cached per size)."""
    ys, xs = pixel_centres(h, torch.float64), pixel_centres(w, torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], dim=-1)


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices reflected into 0..n-1 about the image's outer edges (-1 -> 0, n -> n-1), as grid_sample's
    padding_mode='reflection' with align_corners=False does."""
    period = 2 * n
    idx = np.mod(idx, period)
    return np.where(idx < n, idx, period - 1 - idx)


def _target_size(size, src_size: tuple[int, int]) -> tuple[tuple[int, int], str]:
    """(th, tw) and the default resize method: a tuple/list squishes, an int crops to a square."""
    if size is None:
        return src_size, ResizeMethod.NO
    if isinstance(size, np.ndarray):  # CamVid's `src_size // 2`: an array is not a list, so it crops (as in the lesson)
        return (int(size[0]), int(size[1])), ResizeMethod.CROP
    if isinstance(size, (tuple, list)):
        return (int(size[0]), int(size[1])), ResizeMethod.SQUISH
    return (int(size), int(size)), ResizeMethod.CROP


class _TorchUniforms:
    """The random numbers of one plan, from torch's global generator, so that `torch.manual_seed` (and the seed
    torch gives each DataLoader worker) fixes every augmentation. It answers the three calls the plan makes of a
    NumPy Generator (`sample_plan` takes one of those too). Nothing is drawn until a number is asked for; then
    16 at once, more than any plan needs. Making a NumPy Generator per item instead cost 60 µs, more than the
    rest of the plan (AVX2, no native bf16)."""

    def __init__(self):
        self._left: list[float] = []

    def random(self) -> float:
        """One number uniform in [0, 1)."""
        if not self._left:
            self._left = torch.rand(16, dtype=torch.float64).tolist()
        return self._left.pop()

    def uniform(self, low: float, high: float, size: int | None = None):
        """One number uniform in [low, high), or an array of `size` of them."""
        if size is None:
            return low + (high - low) * self.random()
        return np.array([low + (high - low) * self.random() for _ in range(size)])

    def integers(self, n: int) -> int:
        """One of 0 .. n-1, equally likely."""
        return min(int(self.random() * n), n - 1)


def sample_plan(tfms: ImageTransforms | None, src_size: tuple[int, int], size=None, resize_method: str | None = None,
                train: bool = True, rng: np.random.Generator | None = None) -> TransformPlan:
    """Draw one random transform for an image of `src_size` (h, w) producing `size`, with `rng`'s numbers or by
    default torch's (seeded by `torch.manual_seed`, and per DataLoader worker by torch).

    Random crop positions and augmentations only apply when `train` and `tfms` are given."""
    rng = rng or _TorchUniforms()
    (th, tw), default_method = _target_size(size, src_size)
    method = resize_method or default_method
    h, w = src_size
    if method in (ResizeMethod.CROP, ResizeMethod.PAD):
        ratio = (min if method == ResizeMethod.CROP else max)(h / th, w / tw)
        resized = (max(1, round(h / ratio)), max(1, round(w / ratio)))
    elif method == ResizeMethod.SQUISH:
        resized = (th, tw)
    else:
        resized = (th, tw) = src_size
    random = train and tfms is not None and tfms.is_random
    fy, fx = (rng.random(), rng.random()) if random and method == ResizeMethod.CROP else (0.5, 0.5)
    offset = (round(fy * (resized[0] - th)), round(fx * (resized[1] - tw)))
    plan = TransformPlan(src_size, resized, (th, tw), offset, np.eye(3))
    if random:
        _sample_augmentation(plan, tfms, rng)
    return plan


def _sample_augmentation(plan: TransformPlan, t: ImageTransforms, rng: np.random.Generator) -> None:
    """Fill `plan` with one random draw of `t` (each affine step with probability p_affine)."""
    m = np.eye(3)
    if t.max_warp and rng.random() < t.p_affine:
        m = warp_matrix(*rng.uniform(-t.max_warp, t.max_warp, size=2))
    if t.flip_vert:
        m = dihedral_matrix(int(rng.integers(8))) @ m
    elif t.do_flip and rng.random() < 0.5:
        m = dihedral_matrix(1) @ m
    if t.max_rotate and rng.random() < t.p_affine:
        m = rotation_matrix(rng.uniform(-t.max_rotate, t.max_rotate), plan.out_size) @ m
    if t.max_zoom > 1 and rng.random() < t.p_affine:
        scale = rng.uniform(1, t.max_zoom)
        cx, cy = rng.uniform(-1, 1, size=2) * (1 - 1 / scale)
        m = zoom_matrix(scale, cx, cy) @ m
    plan.aug = m
    if t.max_lighting:
        lo = t.max_lighting
        if rng.random() < t.p_lighting:
            plan.brightness = rng.uniform(0.5 * (1 - lo), 0.5 * (1 + lo))
        if rng.random() < t.p_lighting:
            plan.contrast = math.exp(rng.uniform(math.log(1 - lo), -math.log(1 - lo)))
