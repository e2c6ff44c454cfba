"""Generate `biwi_head_pose_tiny`: a tiny synthetic stand-in for the BIWI Kinect head pose dataset.

BIWI (the lesson's image regression data) has numbered subject folders of 640x480 Kinect colour
frames, each with a pose file, and the colour camera's calibration in every folder. The real
download is about 6 GB, so this script paints a small look-alike in the same on-disk format:

    biwi_head_pose_tiny/<subject>/rgb.cal                 calibration: 3x3 intrinsics first, then the
                                                          distortion and the camera's rotation/translation
    biwi_head_pose_tiny/<subject>/frame_XXXXX_rgb.jpg     a 128x96 colour frame
    biwi_head_pose_tiny/<subject>/frame_XXXXX_pose.txt    head rotation (3x3), a blank line, then the
                                                          head centre X Y Z in millimetres

for subjects 01-13: 20 frames each, and twice as many for subject 13, which the lesson holds out
for validation (a steadier score). The frames are a fifth of the real size, so the intrinsics are
the real ones (fx = fy = 517.679, cx = 320, cy = 240.5) scaled by 1/5. Each subject is one person
in front of their own cluttered room (muted colours, like an office); each frame adds a few loose
objects and a change of light, and shows the person's head (a skin ellipse with hair, eyes, nose
and mouth, turned and tilted as the pose's rotation says) on shoulders. The head's 3-D centre is
written to the pose file and the head is drawn exactly where the calibration projects it, so the
course's conversion code (pose + calibration -> pixel) is what recovers each target.

Run from the repository root; it wipes and rewrites the output folder, and the same arguments
always give byte-identical files:

    python data/make_biwi_head_pose_tiny.py             # 20 frames per subject (40 for subject 13)
    python data/make_biwi_head_pose_tiny.py --frames 50 --out /tmp/biwi_head_pose_tiny
"""
import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 96, 128                      # frame size (the real frames are 480x640)
SCALE = W / 640                     # this camera's pixels per real Kinect pixel
FX = FY = 517.679 * SCALE           # intrinsics of the real folder 01, scaled to the small frames
CX, CY = 320 * SCALE, 240.5 * SCALE
SUBJECTS = [f"{i:02d}" for i in range(1, 14)]  # BIWI has 01-24; 13 is the lesson's validation subject
VALID_SUBJECT = "13"
SEED = 42
SS = 3                              # supersampling: shapes are drawn at 3x and averaged (anti-aliasing)
HEAD_MM = (80.0, 105.0)             # half width and half height of a head, millimetres
# Centres sub-sample k of pixel i at i + (k + 0.5) / SS - 0.5: pixel i covers [i - 0.5, i + 0.5].
YY, XX = np.mgrid[0:H * SS, 0:W * SS] / SS + (0.5 / SS - 0.5)
SKIN = [(0.93, 0.76, 0.62), (0.42, 0.28, 0.20)]  # the lightest and darkest skin tone; people lie in between
HAIR = [(0.10, 0.07, 0.05), (0.35, 0.22, 0.10), (0.75, 0.60, 0.30), (0.55, 0.55, 0.55), (0.45, 0.15, 0.08)]


# ---------------------------------------------------------------- the files
def calibration_text():
    """An `rgb.cal` in BIWI's layout: intrinsics, distortion, then the colour camera's rotation and translation."""
    rows = [[FX, 0, CX], [0, FY, CY], [0, 0, 1], [],
            [0, 0, 0, 0], [],
            [0.999979, 0.00307, -0.00562], [-0.00311, 0.999985, -0.00453], [0.00561, 0.00455, 0.999974], [],
            [-24.0198, 5.8896, -13.2308]]
    return "".join(" ".join(f"{v:g}" for v in r) + " \n" if r else "\n" for r in rows)


def rotation(yaw, pitch, roll):
    """The head's rotation matrix from yaw (about y), pitch (about x) and roll (about z), in radians."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return rz @ ry @ rx


def pose_text(rot, centre):
    """A pose file in BIWI's layout: three rows of the rotation, a blank line, the head centre X Y Z (mm)."""
    rows = [" ".join(f"{v:g}" for v in r) + " \n" for r in rot]
    return "".join(rows) + "\n" + " ".join(f"{v:g}" for v in centre) + " \n"


def parsed(text):
    """The numbers of the last line of a pose text, as read back (so drawing uses the written values)."""
    return np.array([float(v) for v in text.strip().splitlines()[-1].split()])


# ---------------------------------------------------------------- drawing kit
def ellipse(cx, cy, a, b, angle=0.0):
    """Supersampled mask of an ellipse centred on (cx, cy) with half axes a (across) and b, rotated by angle."""
    u, v = local(cx, cy, angle)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def local(cx, cy, angle):
    """Sub-pixel coordinates in a frame centred on (cx, cy) and rotated by angle."""
    dx, dy = XX - cx, YY - cy
    return np.cos(angle) * dx + np.sin(angle) * dy, np.cos(angle) * dy - np.sin(angle) * dx


def box(x0, y0, x1, y1):
    """Supersampled mask of an axis-aligned rectangle."""
    return (XX >= x0) & (XX <= x1) & (YY >= y0) & (YY <= y1)


def paint(img, mask, rgb):
    """Fill mask with a colour, in place."""
    img[mask] = rgb


def room(rng):
    """A subject's room: a wall with a gradient and the furniture (shelves, posters, a window, a desk)."""
    wall = rng.uniform(0.2, 0.45) * rng.uniform(0.8, 1.2, 3)
    img = wall * (1 + 0.25 * (YY / H - 0.5))[..., None]
    for _ in range(rng.integers(6, 10)):
        x0, y0 = rng.uniform(-10, W), rng.uniform(-10, H)
        x1, y1 = x0 + rng.uniform(8, 45), y0 + rng.uniform(6, 40)
        paint(img, box(x0, y0, x1, y1), rng.uniform(0.05, 0.55, 3))
        if rng.random() < 0.5:  # shelves or blinds: stripes inside the box
            stripes = box(x0, y0, x1, y1) & (np.sin(YY * rng.uniform(0.8, 2.0)) > 0.6)
            paint(img, stripes, rng.uniform(0.05, 0.55, 3))
    paint(img, YY > H - rng.uniform(8, 20), rng.uniform(0.2, 0.7, 3))  # the desk
    return img


def clutter(img, rng):
    """Things that differ from frame to frame: a few round and square objects, a cable, lighting."""
    for _ in range(rng.integers(3, 7)):
        x, y, r = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(2, 9)
        shape = ellipse(x, y, r, r * rng.uniform(0.5, 1.5)) if rng.random() < 0.5 else box(x, y, x + 2 * r, y + r)
        paint(img, shape, rng.uniform(0.0, 0.6, 3))
    u, v = local(rng.uniform(0, W), rng.uniform(0, H), rng.uniform(0, np.pi))
    paint(img, (abs(v) < 0.6) & (abs(u) < 40), rng.uniform(0, 0.4, 3))
    return img * rng.uniform(0.85, 1.15)


def person(img, row, col, z, yaw, pitch, roll, look):
    """Shoulders, neck and a head centred exactly on pixel (row, col), sized for a distance of z mm."""
    a, b = HEAD_MM[0] * FX / z, HEAD_MM[1] * FY / z
    paint(img, ellipse(col, row + 2.9 * b, 2.8 * a, 1.6 * b), look["shirt"])
    paint(img, box(col - 0.45 * a, row + 0.5 * b, col + 0.45 * a, row + 1.5 * b), np.multiply(look["skin"], 0.85))
    paint(img, ellipse(col, row, a, b, roll), look["skin"])
    u, v = local(col, row, roll)
    paint(img, ellipse(col, row, 1.06 * a, 1.06 * b, roll) & (v < -0.45 * b + 0.3 * b * np.sin(pitch)), look["hair"])
    du, dv = 0.5 * a * np.sin(yaw), 0.35 * b * np.sin(pitch)  # the face turns with yaw, tips with pitch
    for side in (-1, 1):
        eye = ((u - du - side * 0.38 * a) / (0.17 * a)) ** 2 + ((v - dv + 0.12 * b) / (0.1 * b)) ** 2 <= 1
        paint(img, eye, (0.05, 0.05, 0.08))
    paint(img, ((u - 1.3 * du) / (0.1 * a)) ** 2 + ((v - dv - 0.15 * b) / (0.18 * b)) ** 2 <= 1,
          np.multiply(look["skin"], 0.7))
    paint(img, ((u - du) / (0.3 * a)) ** 2 + ((v - dv - 0.5 * b) / (0.07 * b)) ** 2 <= 1, (0.55, 0.1, 0.12))


def frame(rng, background, look, rot_angles, centre):
    """One 128x96 uint8 RGB frame: room, clutter, then the person whose head centre projects to the pose's point."""
    row, col = centre[1] * FY / centre[2] + CY, centre[0] * FX / centre[2] + CX
    img = clutter(background.copy(), rng)
    person(img, row, col, centre[2], *rot_angles, look)
    img = img.reshape(H, SS, W, SS, 3).mean(axis=(1, 3)) + rng.normal(0, 0.02, (H, W, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


# ---------------------------------------------------------------- the dataset
def write_subject(folder, rng, n_frames):
    """One subject folder: rgb.cal, then n_frames pose files and frames (numbered with gaps, as in BIWI)."""
    folder.mkdir(parents=True)
    (folder / "rgb.cal").write_text(calibration_text())
    background = room(rng)
    tone = rng.uniform()
    look = {"skin": (1 - tone) * np.array(SKIN[0]) + tone * np.array(SKIN[1]),
            "hair": HAIR[rng.integers(len(HAIR))], "shirt": rng.uniform(0.05, 0.5, 3)}
    number = int(rng.integers(3, 8))
    for _ in range(n_frames):
        z = rng.uniform(600, 950)
        row, col = rng.uniform(20, H - 26), rng.uniform(22, W - 22)  # where the head centre will appear
        centre = np.array([(col - CX) * z / FX, (row - CY) * z / FY, z])
        angles = np.radians(rng.uniform(-1, 1, 3) * (45, 30, 20))  # yaw, pitch, roll
        text = pose_text(rotation(*angles), centre)
        (folder / f"frame_{number:05d}_pose.txt").write_text(text)
        img = frame(rng, background, look, angles, parsed(text))
        Image.fromarray(img).save(folder / f"frame_{number:05d}_rgb.jpg", quality=85)
        number += int(rng.integers(1, 4))


def main():
    """Parse the command line and (re)write the whole dataset folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20, help="frames per subject (twice as many for subject 13)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "biwi_head_pose_tiny")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    for k, subject in enumerate(SUBJECTS):
        n_frames = 2 * args.frames if subject == VALID_SUBJECT else args.frames
        write_subject(args.out / subject, np.random.default_rng([SEED, k]), n_frames)
    print(f"wrote {len(SUBJECTS)} subjects, {args.frames} frames each ({2 * args.frames} for {VALID_SUBJECT}), "
          f"to {args.out}")


if __name__ == "__main__":
    main()
