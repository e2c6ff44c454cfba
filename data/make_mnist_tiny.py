"""Generate `mnist_tiny`: a small stand-in for the MNIST_TINY sample of the lesson's data block tour.

MNIST_TINY holds 28x28 grey PNGs of handwritten 3s and 7s (white ink on black), sorted into folders
by split and by digit, plus a CSV naming every labelled image:

    mnist_tiny/train/3/<id>.png  train/7/<id>.png   labelled training images
    mnist_tiny/valid/3/<id>.png  valid/7/<id>.png   labelled validation images
    mnist_tiny/test/<id>.png                         unlabelled images
    mnist_tiny/labels.csv                            name,label  (train/3/7463.png,3)

Nobody's handwriting is bundled here: each digit is drawn as pen strokes (a 3 is two bowls, a 7 a bar
and a slanted leg) with a random pen width, size, slant, rotation and position, at four times the size and
then shrunk (anti-aliased), so that the digits vary like handwriting and a small CNN tells them apart
after a few seconds of training.

Run from the repository root; it wipes and rewrites the output folder, and the same arguments always give
byte-identical files:

    python data/make_mnist_tiny.py
    python data/make_mnist_tiny.py --n-train 300 --out /tmp/mnist_tiny
"""
import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 28
SCALE = 4  # drawn at 4x, then shrunk: smooth, anti-aliased strokes
SEED = 42


def three(rng):
    """A 3 as a polyline in a unit box centred on 0 (y down): two bowls meeting in the middle."""
    top_r, bottom_r = rng.uniform(0.26, 0.34), rng.uniform(0.30, 0.38)
    top = [(top_r * np.cos(a), top_r * (np.sin(a) - 1)) for a in np.radians(np.linspace(200, 450, 30))]
    bottom = [(bottom_r * np.cos(a), bottom_r * np.sin(a) + 0.05) for a in np.radians(np.linspace(-90, 160, 30))]
    return [top, [(x * 0.9, y) for x, y in bottom]]


def seven(rng):
    """A 7 as polylines in a unit box centred on 0 (y down): a top bar and a leg, sometimes a crossbar."""
    left, right, y0 = -rng.uniform(0.25, 0.35), rng.uniform(0.25, 0.35), -rng.uniform(0.5, 0.6)
    foot = (rng.uniform(-0.2, 0.05), rng.uniform(0.5, 0.6))
    strokes = [[(left, y0 + rng.uniform(0, 0.08)), (right, y0), foot]]
    if rng.random() < 0.25:  # the continental crossbar
        mid = ((right + foot[0]) / 2, (y0 + foot[1]) / 2)
        strokes.append([(mid[0] - 0.15, mid[1]), (mid[0] + 0.15, mid[1])])
    return strokes


def draw_digit(rng, digit):
    """One 28x28 grey digit image (uint8, white on black) with random pen, size, slant, rotation and place."""
    strokes = (three if digit == 3 else seven)(rng)
    size, slant, angle = rng.uniform(0.65, 0.85), rng.uniform(-0.3, 0.3), rng.uniform(-0.25, 0.25)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = rng.uniform(-0.06, 0.06, 2) + 0.5
    big = SIZE * SCALE
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    width = int(rng.uniform(1.6, 3.0) * SCALE)
    for stroke in strokes:
        pts = np.array(stroke) @ np.array([[1, 0], [-slant, 1]]).T  # slant: x moves with -y
        pts = (pts @ rot.T * size + shift) * big
        draw.line([tuple(p) for p in pts], fill=255, width=width, joint="curve")
    img = img.filter(ImageFilter.GaussianBlur(SCALE * 0.3)).resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    return img


def main(out: Path, n_train: int, n_valid: int, n_test: int) -> None:
    rng = np.random.default_rng(SEED)
    if out.exists():
        shutil.rmtree(out)
    ids = iter(rng.permutation(10_000))  # unique file names like the real ones (train/3/7463.png)
    rows = []
    for split, n in (("train", n_train), ("valid", n_valid)):
        for digit in (3, 7):
            folder = out / split / str(digit)
            folder.mkdir(parents=True)
            for _ in range(n):
                name = f"{next(ids)}.png"
                draw_digit(rng, digit).save(folder / name)
                rows.append(f"{split}/{digit}/{name},{digit}")
    (out / "test").mkdir()
    for _ in range(n_test):
        draw_digit(rng, int(rng.choice([3, 7]))).save(out / "test" / f"{next(ids)}.png")
    (out / "labels.csv").write_text("name,label\n" + "\n".join(rows) + "\n")
    print(f"wrote {out}: {2 * n_train} train, {2 * n_valid} valid, {n_test} test images")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "mnist_tiny")
    parser.add_argument("--n-train", type=int, default=120, help="training images per digit")
    parser.add_argument("--n-valid", type=int, default=60, help="validation images per digit")
    parser.add_argument("--n-test", type=int, default=20)
    args = parser.parse_args()
    main(args.out, args.n_train, args.n_valid, args.n_test)
