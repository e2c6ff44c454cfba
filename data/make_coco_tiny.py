"""Generate `coco_tiny`: a small stand-in for the COCO_TINY sample of the lesson's data block tour.

COCO_TINY is a few thousand small COCO photos of six kinds of indoor objects, with their bounding boxes in
a COCO-format annotation file:

    coco_tiny/train/<12-digit id>.jpg   the images
    coco_tiny/train.json                {"images": [{id, file_name, width, height}],
                                         "annotations": [{id, image_id, category_id, bbox, area, iscrowd}],
                                         "categories": [{id, name}]}

`bbox` is COCO's [x, y, width, height] in pixels, (x, y) being the top-left corner. The category ids are
COCO's own, with its gaps: 62 chair, 63 couch, 72 tv, 75 remote, 84 book, 86 vase.

Here the photos are replaced by drawings of those six objects (a chair with a backrest and legs, a couch
with arms, a tv with a stand, a remote with buttons, an upright or lying book, a vase) in a room (a wall over
a floor). Each object is painted through its own mask, objects do not overlap, and each box is the exact
extent of its object's mask, so boxes are tight. A few images show an empty room and have no annotation,
which COCO also has.

Run from the repository root; it wipes and rewrites the output folder, and the same arguments always give
byte-identical files:

    python data/make_coco_tiny.py
    python data/make_coco_tiny.py --n 400 --out /tmp/coco_tiny
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 128
SCALE = 2  # objects are drawn at 2x and shrunk: anti-aliased edges
SEED = 42
CATEGORIES = {62: "chair", 63: "couch", 72: "tv", 75: "remote", 84: "book", 86: "vase"}
EMPTY_EVERY = 40  # one image in 40 is an empty room, without annotations


def colour(rng, base, jitter=0.15):
    """An RGB tuple near `base` (0-255 values)."""
    return tuple(int(np.clip(c * rng.uniform(1 - jitter, 1 + jitter), 0, 255)) for c in base)


def draw_chair(d, rng, w, h):
    wood = colour(rng, (130, 80, 40))
    seat_y = h * 0.5
    d.rectangle([0, seat_y, w, seat_y + h * 0.12], fill=wood)
    back_x = 0 if rng.random() < 0.5 else w * 0.82
    d.rectangle([back_x, 0, back_x + w * 0.18, seat_y], fill=wood)
    for x in (w * 0.04, w * 0.84):
        d.rectangle([x, seat_y, x + w * 0.12, h], fill=wood)


def draw_couch(d, rng, w, h):
    cloth = colour(rng, (90, 110, 150), 0.3)
    d.rounded_rectangle([0, h * 0.2, w, h * 0.85], radius=w * 0.06, fill=cloth)
    d.rectangle([w * 0.15, h * 0.5, w * 0.85, h * 0.7], fill=colour(rng, (200, 200, 190)))  # cushions
    for x in (0, w * 0.86):
        d.rounded_rectangle([x, h * 0.35, x + w * 0.14, h * 0.85], radius=w * 0.04, fill=cloth)
    for x in (w * 0.08, w * 0.88):
        d.rectangle([x, h * 0.85, x + w * 0.04, h], fill=(40, 30, 20))


def draw_tv(d, rng, w, h):
    d.rectangle([0, 0, w, h * 0.82], fill=(25, 25, 30))
    d.rectangle([w * 0.07, h * 0.08, w * 0.93, h * 0.74], fill=colour(rng, (60, 120, 200), 0.3))
    d.rectangle([w * 0.42, h * 0.82, w * 0.58, h * 0.92], fill=(25, 25, 30))
    d.rectangle([w * 0.25, h * 0.92, w * 0.75, h], fill=(25, 25, 30))


def draw_remote(d, rng, w, h):
    d.rounded_rectangle([0, 0, w, h], radius=min(w, h) * 0.3, fill=(35, 35, 40))
    d.ellipse([w * 0.3, h * 0.08, w * 0.7, h * 0.08 + w * 0.4], fill=(200, 40, 40))  # power button
    for k in range(3):
        y = h * (0.4 + 0.17 * k)
        d.rectangle([w * 0.3, y, w * 0.7, y + h * 0.07], fill=(150, 150, 160))


def draw_book(d, rng, w, h):
    cover = colour(rng, tuple(rng.integers(40, 230, 3)), 0.1)
    d.rectangle([0, 0, w, h], fill=cover)
    if h > w:  # upright: a band across the spine
        d.rectangle([0, h * 0.15, w, h * 0.25], fill=(235, 225, 180))
    else:  # lying: the pages along one side
        d.rectangle([w * 0.05, h * 0.6, w, h], fill=(240, 235, 220))


def draw_vase(d, rng, w, h):
    glaze = colour(rng, (180, 90, 50) if rng.random() < 0.5 else (60, 90, 170), 0.2)
    d.ellipse([0, h * 0.3, w, h], fill=glaze)
    d.rectangle([w * 0.32, h * 0.05, w * 0.68, h * 0.5], fill=glaze)
    d.rectangle([w * 0.22, 0, w * 0.78, h * 0.1], fill=glaze)  # the lip


# name -> (drawing function, (min, max) width, (min, max) height) in pixels of the final image
OBJECTS = {
    "chair": (draw_chair, (22, 34), (28, 40)),
    "couch": (draw_couch, (48, 70), (22, 32)),
    "tv": (draw_tv, (32, 48), (28, 40)),
    "remote": (draw_remote, (7, 10), (18, 26)),
    "book": (draw_book, (8, 26), (8, 30)),
    "vase": (draw_vase, (12, 20), (20, 32)),
}


def room(rng) -> np.ndarray:
    """A wall over a floor, softly shaded: float (SIZE, SIZE, 3) in 0-255."""
    horizon = int(rng.uniform(0.5, 0.7) * SIZE)
    img = np.empty((SIZE, SIZE, 3))
    img[:horizon] = colour(rng, (215, 205, 185), 0.1)
    img[horizon:] = colour(rng, (150, 115, 80), 0.2)
    shade = np.linspace(1.05, 0.9, SIZE)[None, :, None]
    return img * shade + rng.normal(0, 3, img.shape)


def render(rng, name) -> Image.Image:
    """One object as an RGBA sprite of random size; its alpha channel is its mask."""
    draw, (w0, w1), (h0, h1) = OBJECTS[name]
    if name == "book" and rng.random() < 0.5:  # a book lies flat half the time
        (w0, w1), (h0, h1) = (18, 30), (6, 10)
    w, h = int(rng.integers(w0, w1 + 1)), int(rng.integers(h0, h1 + 1))
    sprite = Image.new("RGBA", (w * SCALE, h * SCALE), (0, 0, 0, 0))
    draw(ImageDraw.Draw(sprite), rng, w * SCALE - 1, h * SCALE - 1)
    return sprite.resize((w, h), Image.Resampling.LANCZOS)


def place(rng, sprites) -> list[tuple[int, int]] | None:
    """Non-overlapping top-left positions for the sprites inside the image, or None if they do not fit."""
    taken, spots = [], []
    for s in sprites:
        for _ in range(50):
            x, y = int(rng.integers(0, SIZE - s.width + 1)), int(rng.integers(0, SIZE - s.height + 1))
            box = (x - 2, y - 2, x + s.width + 2, y + s.height + 2)
            if all(box[2] <= t[0] or t[2] <= box[0] or box[3] <= t[1] or t[3] <= box[1] for t in taken):
                taken.append(box)
                spots.append((x, y))
                break
        else:
            return None
    return spots


def make_image(rng, n_objects):
    """An image and its objects as (category name, [x, y, w, h]) with tight boxes."""
    while True:
        names = [str(n) for n in rng.choice(list(OBJECTS), size=n_objects)]
        sprites = [render(rng, n) for n in names]
        spots = place(rng, sprites)
        if spots is not None:
            break
    img = Image.fromarray(np.clip(room(rng), 0, 255).astype(np.uint8))
    objects = []
    for name, s, (x, y) in zip(names, sprites, spots):
        img.paste(s, (x, y), s)
        left, top, right, bottom = s.getchannel("A").point(lambda a: 255 * (a > 127)).getbbox()
        objects.append((name, [x + left, y + top, right - left, bottom - top]))
    return img, objects


def main(out: Path, n: int) -> None:
    rng = np.random.default_rng(SEED)
    if out.exists():
        shutil.rmtree(out)
    (out / "train").mkdir(parents=True)
    ids = {v: k for k, v in CATEGORIES.items()}
    image_ids = sorted(rng.choice(581_000, size=n, replace=False).tolist())  # COCO-like ids, unique
    images, annotations = [], []
    for k, image_id in enumerate(image_ids):
        n_objects = 0 if k % EMPTY_EVERY == EMPTY_EVERY - 1 else int(rng.choice([1, 1, 2, 2, 3, 4]))
        img, objects = make_image(rng, n_objects)
        file_name = f"{image_id:012d}.jpg"
        img.save(out / "train" / file_name, quality=85)
        images.append({"id": image_id, "file_name": file_name, "width": SIZE, "height": SIZE})
        for name, bbox in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[name],
                                "bbox": [float(v) for v in bbox], "area": float(bbox[2] * bbox[3]), "iscrowd": 0})
    categories = [{"id": i, "name": name} for i, name in CATEGORIES.items()]
    with open(out / "train.json", "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    print(f"wrote {out}: {n} images, {len(annotations)} boxes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "coco_tiny")
    parser.add_argument("--n", type=int, default=240, help="number of images")
    args = parser.parse_args()
    main(args.out, args.n)
