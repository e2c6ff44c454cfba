"""Generate `camvid_tiny`: a tiny synthetic stand-in for the CamVid street-scene dataset.

CamVid (lesson 3) has 701 960x720 video frames of streets, each with a mask that gives every
pixel one of 32 class ids. The real download is ~600 MB, so this script paints small
look-alike street scenes in the same on-disk format (fastai's layout):

    camvid_tiny/images/street_<i>.png          RGB scenes, 64 wide x 48 high
    camvid_tiny/labels/street_<i>_P.png        single-channel uint8 class ids (same size)
    camvid_tiny/codes.txt                      the 32 CamVid class names, line number = id (Void = 30)
    camvid_tiny/valid.txt                      the file names of the validation images

Each scene has sky on top, buildings with windows along the horizon, a road in perspective
with lane markings, sidewalks, and sometimes trees, cars, poles with signs, pedestrians and
unlabelled clutter (Void), each with its own colour family, texture and noise, so that a small
U-Net trained on a CPU for a minute tells the regions apart.

Run from anywhere; it wipes and rewrites the output folder, and the same arguments always
give byte-identical files:

    python data/make_camvid_tiny.py                     # 80 scenes, 16 of them for validation
    python data/make_camvid_tiny.py --n 200 --out /tmp/camvid_tiny
"""
import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CODES = ["Animal", "Archway", "Bicyclist", "Bridge", "Building", "Car", "CartLuggagePram", "Child", "Column_Pole",
         "Fence", "LaneMkgsDriv", "LaneMkgsNonDriv", "Misc_Text", "MotorcycleScooter", "OtherMoving", "ParkingBlock",
         "Pedestrian", "Road", "RoadShoulder", "Sidewalk", "SignSymbol", "Sky", "SUVPickupTruck", "TrafficCone",
         "TrafficLight", "Train", "Tree", "Truck_Bus", "Tunnel", "VegetationMisc", "Void", "Wall"]
ID = {name: i for i, name in enumerate(CODES)}
H, W = 48, 64
SEED = 42
N_VALID = 16
YY, XX = np.mgrid[0:H, 0:W] + 0.5  # pixel centres

BUILDING_COLOURS = [(0.55, 0.27, 0.20), (0.80, 0.72, 0.55), (0.55, 0.55, 0.58), (0.88, 0.85, 0.76),
                    (0.62, 0.45, 0.32)]
CAR_COLOURS = [(0.75, 0.10, 0.10), (0.12, 0.22, 0.60), (0.92, 0.92, 0.92), (0.12, 0.12, 0.13),
               (0.62, 0.64, 0.66), (0.85, 0.65, 0.10)]


class Scene:
    """An RGB canvas and its label mask, painted together so every pixel's colour and class agree."""

    def __init__(self, rng):
        self.rng = rng
        self.rgb = np.zeros((H, W, 3))
        self.label = np.zeros((H, W), dtype=np.uint8)

    def paint(self, mask, colour, name, texture=0.06, jitter=0.08):
        """Fill `mask` with a colour-jittered, textured `colour` and the class `name`."""
        colour = np.asarray(colour) * self.rng.uniform(1 - jitter, 1 + jitter, 3)
        shade = 1 + texture * smooth_noise(self.rng, 8)[..., None]
        self.rgb[mask] = (colour * shade)[mask]
        self.label[mask] = ID[name]


def smooth_noise(rng, cells):
    """A random field in [-1, 1]: a coarse grid of `cells` columns, bilinearly upsampled to the image."""
    grid = rng.uniform(-1, 1, (max(2, cells * H // W), cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((W, H), Image.BILINEAR))


def rect(x0, y0, x1, y1):
    """Mask of the axis-aligned rectangle [x0, x1) x [y0, y1) (pixel units, centres inside)."""
    return (XX >= x0) & (XX < x1) & (YY >= y0) & (YY < y1)


def ellipse(cx, cy, rx, ry, rng=None, wobble=0.0):
    """Mask of an ellipse, its outline made irregular by `wobble` (leafy crowns, bushes)."""
    r = np.hypot((XX - cx) / rx, (YY - cy) / ry)
    if rng is not None and wobble:
        theta = np.arctan2(YY - cy, XX - cx)
        r = r * (1 + wobble * np.sin(rng.integers(3, 7) * theta + rng.uniform(0, 6.3)))
    return r < 1


def draw_sky(s):
    """Blue fading to pale near the horizon, with soft white clouds."""
    fade = (YY / H)[..., None]
    s.rgb[:] = (1 - fade) * np.array([0.35, 0.55, 0.85]) + fade * np.array([0.75, 0.85, 0.95])
    s.rgb += 0.12 * np.clip(smooth_noise(s.rng, 5), 0, 1)[..., None]
    s.label[:] = ID["Sky"]


def draw_buildings(s, horizon):
    """A row of facades of varied height and colour standing on the horizon, with darker window grids."""
    x = s.rng.uniform(-6, 0)
    while x < W:
        width = s.rng.uniform(0.18, 0.4) * W
        if s.rng.random() < 0.15:  # a gap between buildings shows the sky
            x += width / 2
            continue
        top = horizon - s.rng.uniform(0.2, 0.42) * H
        base = horizon + 0.04 * H
        facade = rect(x, top, x + width, base)
        s.paint(facade, BUILDING_COLOURS[s.rng.integers(len(BUILDING_COLOURS))], "Building")
        step, size = s.rng.uniform(4, 6), s.rng.uniform(1.5, 2.5)
        windows = facade & ((XX - x) % step < size) & ((YY - top) % step < size) & (YY < horizon - 1)
        s.paint(windows, (0.16, 0.2, 0.26), "Building", texture=0.15)
        x += width


def draw_street(s, horizon, vp):
    """Sidewalk below the horizon, the road as a perspective trapezoid from the vanishing point, dashed lanes."""
    below = YY > horizon
    s.paint(below, (0.70, 0.68, 0.62), "Sidewalk", texture=0.08)
    depth = np.clip((YY - horizon) / (H - horizon), 0, 1)  # 0 at the horizon, 1 at the bottom row
    spread = s.rng.uniform(0.45, 0.7)
    road = below & (np.abs(XX - vp) < road_half(depth, spread))
    s.paint(road, (0.32, 0.32, 0.34), "Road", texture=0.1)
    dashes = road & (np.abs(XX - vp) < 0.2 + 0.9 * depth) & (np.sin(14 * np.log(depth + 0.05)) > 0)
    s.paint(dashes, (0.95, 0.93, 0.80), "LaneMkgsDriv", texture=0.02)
    return spread


def road_half(depth, spread):
    """Half the road's width at `depth` (0 at the horizon, 1 at the bottom row)."""
    return 0.02 * W + depth * spread * W


def draw_tree(s, horizon):
    """A brown trunk on the sidewalk and a leafy green crown (the crown hides whatever is behind it)."""
    cx = s.rng.choice([s.rng.uniform(0, 0.25), s.rng.uniform(0.75, 1)]) * W
    ground = horizon + s.rng.uniform(0.06, 0.16) * H
    height = s.rng.uniform(0.3, 0.5) * H
    s.paint(rect(cx - 1, ground - height / 2, cx + 1, ground), (0.36, 0.25, 0.15), "Tree")
    crown = ellipse(cx, ground - height * 0.7, s.rng.uniform(0.08, 0.14) * W, height * 0.35, s.rng, wobble=0.15)
    s.paint(crown, (0.18, 0.45, 0.16), "Tree", texture=0.3)


def draw_car(s, horizon, vp, spread, depth):
    """A car on the road at `depth`, sized by its distance: body, dark windows, wheels; a Void fringe around it."""
    y = horizon + depth * (H - horizon)
    scale = 0.12 + depth
    w, h = 0.22 * W * scale, 0.13 * H * scale
    cx = vp + s.rng.uniform(-0.7, 0.7) * road_half(depth, spread)
    body = rect(cx - w / 2, y - h, cx + w / 2, y)
    fringe = rect(cx - w / 2 - 1, y - h - 1, cx + w / 2 + 1, y + 1) & ~body
    s.paint(fringe & (s.label != ID["Sky"]), (0.3, 0.3, 0.3), "Void", texture=0.2)  # unlabelled edge, as in CamVid
    s.paint(body, CAR_COLOURS[s.rng.integers(len(CAR_COLOURS))], "Car", texture=0.04)
    s.paint(rect(cx - w * 0.35, y - h, cx + w * 0.35, y - h * 0.55), (0.10, 0.14, 0.20), "Car")
    for wx in (cx - w * 0.3, cx + w * 0.3):
        s.paint(ellipse(wx, y - 0.5, max(1.0, w * 0.1), max(1.0, h * 0.2)), (0.05, 0.05, 0.05), "Car")


def draw_pole(s, horizon):
    """A thin dark pole on the sidewalk, sometimes carrying a sign."""
    x = s.rng.choice([s.rng.uniform(0.02, 0.2), s.rng.uniform(0.8, 0.98)]) * W
    ground = horizon + s.rng.uniform(0.1, 0.3) * H
    top = horizon - s.rng.uniform(0.15, 0.35) * H
    s.paint(rect(x, top, x + 1, ground), (0.22, 0.22, 0.24), "Column_Pole", texture=0.05)
    if s.rng.random() < 0.6:
        s.paint(rect(x - 2, top, x + 3, top + 4), (0.85, 0.15, 0.12), "SignSymbol", texture=0.05)


def draw_pedestrian(s, horizon):
    """A small upright figure on the sidewalk: clothes and a head."""
    x = s.rng.choice([s.rng.uniform(0.05, 0.2), s.rng.uniform(0.8, 0.95)]) * W
    ground = horizon + s.rng.uniform(0.15, 0.35) * H
    s.paint(ellipse(x, ground - 4, 1.5, 4), CAR_COLOURS[s.rng.integers(len(CAR_COLOURS))], "Pedestrian")
    s.paint(ellipse(x, ground - 9, 1.2, 1.2), (0.85, 0.65, 0.5), "Pedestrian")


def draw_clutter(s):
    """An unidentifiable object in a random colour: CamVid labels such things Void."""
    mask = ellipse(s.rng.uniform(0, W), s.rng.uniform(0.5, 1) * H, s.rng.uniform(2, 5), s.rng.uniform(2, 4),
                   s.rng, wobble=0.3)
    s.paint(mask, s.rng.uniform(0.1, 0.9, 3), "Void", texture=0.3)


def render(rng):
    """Paint one street scene; returns (uint8 RGB image, uint8 class-id mask)."""
    s = Scene(rng)
    horizon, vp = rng.uniform(0.38, 0.5) * H, rng.uniform(0.35, 0.65) * W
    draw_sky(s)
    draw_buildings(s, horizon)
    spread = draw_street(s, horizon, vp)
    for _ in range(rng.integers(0, 3)):
        draw_tree(s, horizon)
    for _ in range(rng.integers(0, 3)):
        draw_pole(s, horizon)
    for _ in range(rng.integers(0, 3)):
        draw_pedestrian(s, horizon)
    for depth in sorted(rng.uniform(0.25, 0.95, size=rng.integers(0, 4))):  # far cars first: near ones hide them
        draw_car(s, horizon, vp, spread, depth)
    for _ in range(rng.integers(0, 3)):
        draw_clutter(s)
    light = rng.uniform(0.85, 1.15)  # sunny or dull day
    img = np.clip(s.rgb * light + rng.normal(0, 0.02, s.rgb.shape), 0, 1)
    return (img * 255).round().astype(np.uint8), s.label


def main():
    """Parse the command line and (re)write the whole dataset folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=80, help="number of scenes (the last 16 are for validation)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "camvid_tiny")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    (args.out / "images").mkdir(parents=True)
    (args.out / "labels").mkdir()
    rng = np.random.default_rng(SEED)
    names = [f"street_{i:03d}.png" for i in range(args.n)]
    for name in names:
        img, mask = render(rng)
        Image.fromarray(img).save(args.out / "images" / name)
        Image.fromarray(mask).save(args.out / "labels" / name.replace(".png", "_P.png"))
    (args.out / "codes.txt").write_text("\n".join(CODES) + "\n")
    (args.out / "valid.txt").write_text("\n".join(names[-N_VALID:]) + "\n")
    print(f"wrote {args.n} scenes ({N_VALID} for validation) to {args.out}")


if __name__ == "__main__":
    main()
