"""Generate `planet_tiny`: a tiny synthetic stand-in for Kaggle's Planet dataset.

Kaggle's "Planet: Understanding the Amazon from Space" has 256x256 satellite
tiles and a CSV giving each training tile a space-separated list of tags out of
17 labels. The real download is large and needs a Kaggle account, so this
script paints a small look-alike in the same on-disk format:

    planet_tiny/train_v2.csv             image_name,tags  (train_0,clear primary)
    planet_tiny/train-jpg/train_<i>.jpg  N labelled 64x64 RGB JPEG tiles
    planet_tiny/test-jpg/test_<i>.jpg    24 unlabelled tiles for a predict demo

Labels follow the real data's rules: one weather tag per tile (clear,
partly_cloudy, haze, cloudy), `cloudy` tiles carry nothing else, `primary`
rainforest is very common and every other tag is rarer but appears at least 12
times. Each tag paints one visible signature (a blue river for `water`, a thin
pale line for `road`, ...) at a random place, size and angle, so that a small
CNN trained on a CPU for a few epochs can learn them.

Run from the repository root; it wipes and rewrites the output folder, and the
same arguments always give byte-identical files:

    python data/make_planet_tiny.py             # 480 training tiles
    python data/make_planet_tiny.py --n 1000 --out /tmp/planet_tiny
"""
import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64
N_TEST = 24
SEED = 42
MIN_COUNT = 12
WEATHER = {'cloudy': 0.07, 'haze': 0.07, 'partly_cloudy': 0.18}  # the rest is 'clear'
LAND = {'primary': 0.85, 'agriculture': 0.30, 'road': 0.18, 'water': 0.20,
        'habitation': 0.12, 'cultivation': 0.12, 'bare_ground': 0.08,
        'slash_burn': 0.05, 'conventional_mine': 0.04, 'artisinal_mine': 0.05}
IN_FOREST = {'selective_logging': 0.06, 'blooming': 0.06, 'blow_down': 0.05}
YY, XX = np.mgrid[0:SIZE, 0:SIZE] + 0.5
SLOTS = np.array([(x, y) for x in (12, 32, 52) for y in (12, 32, 52)], dtype=float)


def choose(rng, pool, k):
    """Return a set of k distinct items from pool (or all of it if it is smaller)."""
    return set(rng.choice(pool, size=min(k, len(pool)), replace=False).tolist())


def sample_labels(rng, n, min_count):
    """Draw tag sets for n tiles with fixed frequencies and real-data rules."""
    count = lambda frac, total: max(min_count, round(frac * total))
    tags = [set() for _ in range(n)]
    clear = list(range(n))
    for name, frac in WEATHER.items():
        for i in choose(rng, clear, count(frac, n)):
            tags[i].add(name)
        clear = [i for i in clear if not tags[i]]
    land = [i for i in range(n) if 'cloudy' not in tags[i]]
    for i in clear:
        tags[i].add('clear')
    for name, frac in LAND.items():
        for i in choose(rng, land, count(frac, len(land))):
            tags[i].add(name)
    forest = [i for i in land if 'primary' in tags[i]]
    for name, frac in IN_FOREST.items():
        for i in choose(rng, forest, count(frac, len(forest))):
            tags[i].add(name)
    for t in tags:  # settlements usually sit on a road
        if 'habitation' in t and rng.random() < 0.8:
            t.add('road')
    return tags


# ---------------------------------------------------------------- drawing kit
def smooth_noise(rng, cells):
    """Random field in [-1, 1]: a cells x cells grid bilinearly upsampled to the tile."""
    grid = Image.fromarray(rng.uniform(-1, 1, (cells, cells)).astype(np.float32))
    return np.asarray(grid.resize((SIZE, SIZE), Image.BILINEAR))


def rotated(cx, cy, angle):
    """Pixel coordinates (u, v) in a frame centred on (cx, cy), rotated by angle."""
    dx, dy = XX - cx, YY - cy
    return np.cos(angle) * dx + np.sin(angle) * dy, np.cos(angle) * dy - np.sin(angle) * dx


def blob(rng, cx, cy, r, wobble=0.15):
    """Anti-aliased mask of a disc of radius r with a wavy, irregular outline."""
    theta = np.arctan2(YY - cy, XX - cx)
    radius = r * (1 + wobble * np.sin(rng.integers(2, 4) * theta + rng.uniform(0, 6.3)))
    return np.clip(radius - np.hypot(XX - cx, YY - cy) + 0.5, 0, 1)


def soft_blob(cx, cy, r):
    """Gaussian-edged mask (1 at the centre, fading out around radius r): smoke, clouds."""
    return np.clip(1.5 * np.exp(-((XX - cx) ** 2 + (YY - cy) ** 2) / r ** 2), 0, 1)


def band(cx, cy, angle, width, bend=0.0):
    """Mask of a line of the given width through (cx, cy), gently meandering by bend px."""
    u, v = rotated(cx, cy, angle)
    return np.clip(width / 2 - abs(v - bend * np.sin(u / 9)) + 0.5, 0, 1)


def paint(img, mask, rgb, rng, alpha=1.0, jitter=0.08):
    """Blend a (slightly colour-jittered) colour into img in place, weighted by mask."""
    m = alpha * mask[..., None]
    img[:] = img * (1 - m) + m * np.asarray(rgb) * rng.uniform(1 - jitter, 1 + jitter, 3)


def dots(img, rng, cx, cy, spread, n, px, colours):
    """Paint n small px x px squares, each in one of colours, scattered around (cx, cy)."""
    for x, y in rng.normal((cx, cy), spread, (n, 2)).clip(0, SIZE - px).astype(int):
        img[y:y + px, x:x + px] = colours[rng.integers(len(colours))]


# ----------------------------------------------------------- tag signatures
def background(rng, forest):
    """Textured dark-green rainforest canopy, or dull olive-brown ground."""
    texture = 0.6 * smooth_noise(rng, 6) + 0.4 * smooth_noise(rng, 21)
    base, amp = ((0.12, 0.27, 0.10), 0.45) if forest else ((0.47, 0.42, 0.28), 0.15)
    return np.asarray(base) * rng.uniform(0.9, 1.1, 3) * (1 + amp * texture[..., None])


def draw_agriculture(img, rng, cx, cy):
    """A large light-green/yellow field with parallel stripes."""
    u, v = rotated(cx, cy, rng.uniform(0, np.pi))
    w, h, period = rng.uniform(24, 38), rng.uniform(18, 30), rng.uniform(5, 7)
    field = np.clip(w / 2 - abs(u) + 0.5, 0, 1) * np.clip(h / 2 - abs(v) + 0.5, 0, 1)
    paint(img, field, (0.62, 0.72, 0.32), rng)
    paint(img, field * (np.sin(u * 2 * np.pi / period) > 0.3), (0.82, 0.80, 0.45), rng)


def draw_bare_ground(img, rng, cx, cy):
    """One sizeable ochre-brown patch of exposed soil."""
    paint(img, blob(rng, cx, cy, rng.uniform(8, 12)), (0.78, 0.55, 0.22), rng)


def draw_cultivation(img, rng, cx, cy):
    """A few small irregular light-brown plots."""
    for x, y in rng.normal((cx, cy), 7, (rng.integers(3, 6), 2)):
        paint(img, blob(rng, x, y, rng.uniform(2.5, 4.5)), (0.74, 0.60, 0.46), rng)


def draw_conventional_mine(img, rng, cx, cy):
    """A big grey-turquoise open pit with concentric terraces and a pool."""
    r = rng.uniform(11, 15)
    for k, colour in enumerate([(0.64, 0.68, 0.66), (0.48, 0.55, 0.56)] * 2):
        paint(img, blob(rng, cx, cy, r * (1 - k / 5), 0.08), colour, rng)
    paint(img, blob(rng, cx, cy, r * 0.25, 0.1), (0.22, 0.58, 0.60), rng)


def draw_blow_down(img, rng, cx, cy):
    """A pale, irregular patch of flattened trees, streaked in one diagonal direction."""
    region = blob(rng, cx, cy, rng.uniform(9, 13))
    paint(img, region, (0.66, 0.68, 0.58), rng)
    _, v = rotated(cx, cy, np.pi / 4 + rng.uniform(-0.4, 0.4))
    paint(img, region * (np.sin(v * 2 * np.pi / 3.5) > 0.4), (0.50, 0.52, 0.44), rng)


def draw_selective_logging(img, rng, cx, cy):
    """A grid of thin brown logging tracks cut into the forest."""
    u, v = rotated(cx, cy, rng.uniform(0, np.pi))
    s = rng.uniform(7, 9)
    on_grid = lambda t: np.clip(1.5 - abs(t - s * np.round(t / s)), 0, 1)
    region = (abs(u) < rng.uniform(12, 16)) & (abs(v) < rng.uniform(12, 16))
    paint(img, region * np.maximum(on_grid(u), on_grid(v)), (0.60, 0.45, 0.30), rng)


def draw_slash_burn(img, rng, cx, cy):
    """A charcoal-black burn scar with a plume of grey smoke drifting off it."""
    r, angle = rng.uniform(6, 9), rng.uniform(0, 2 * np.pi)
    paint(img, blob(rng, cx, cy, r + 2), (0.45, 0.42, 0.38), rng)  # rim of grey ash
    paint(img, blob(rng, cx, cy, r), (0.06, 0.05, 0.04), rng)
    sx, sy = cx + (r + 3) * np.cos(angle), cy + (r + 3) * np.sin(angle)
    paint(img, soft_blob(sx, sy, rng.uniform(5, 7)), (0.72, 0.72, 0.72), rng, alpha=0.75)


def draw_water(img, rng, cx, cy):
    """A dark-blue meandering river or a lake."""
    if rng.random() < 0.6:
        mask = band(cx, cy, rng.uniform(0, np.pi), rng.uniform(4, 7), rng.uniform(2, 6))
    else:
        mask = blob(rng, cx, cy, rng.uniform(7, 11))
    paint(img, mask, (0.12, 0.24, 0.46), rng)


def draw_artisinal_mine(img, rng, cx, cy):
    """A small orange-brown mud blob with bright cyan tailing pools beside it."""
    r = rng.uniform(4, 7)
    paint(img, blob(rng, cx, cy, r), (0.74, 0.44, 0.18), rng)
    for angle in rng.uniform(0, 2 * np.pi, rng.integers(2, 4)):
        x, y = cx + (r + 2) * np.cos(angle), cy + (r + 2) * np.sin(angle)
        paint(img, blob(rng, x, y, rng.uniform(1.8, 2.8), 0.1), (0.35, 0.82, 0.84), rng)


def draw_road(img, rng, cx, cy):
    """A thin light grey-tan line right across the tile."""
    width, bend = rng.uniform(2, 3), rng.uniform(0, 2)
    paint(img, band(cx, cy, rng.uniform(0, np.pi), width, bend), (0.80, 0.76, 0.66), rng)


def draw_habitation(img, rng, cx, cy):
    """A cluster of small white and red-roofed buildings."""
    dots(img, rng, cx, cy, 5, rng.integers(6, 12), 3, [(0.95, 0.95, 0.92), (0.82, 0.30, 0.24)])


def draw_blooming(img, rng, cx, cy):
    """Bright magenta/pink flowering tree crowns scattered through the canopy."""
    dots(img, rng, cx, cy, 10, rng.integers(14, 24), 2, [(0.95, 0.35, 0.78), (0.98, 0.55, 0.85)])


def draw_haze(img, rng):
    """A semi-transparent whitish-grey veil that washes out the whole tile."""
    alpha = rng.uniform(0.45, 0.6) + 0.08 * smooth_noise(rng, 3)
    paint(img, alpha, (0.78, 0.78, 0.82), rng, jitter=0.02)


def draw_partly_cloudy(img, rng):
    """One or two bright white soft clouds drifting in from the edge of the tile."""
    for _ in range(rng.integers(1, 3)):
        edge, along = rng.integers(4), rng.uniform(0, SIZE)
        cx, cy = [(along, 0), (along, SIZE), (0, along), (SIZE, along)][edge]
        cloud = soft_blob(cx, cy, rng.uniform(12, 20)) * (0.9 + 0.1 * smooth_noise(rng, 8))
        paint(img, cloud, (0.95, 0.95, 0.96), rng, jitter=0.02)


def draw_cloudy(img, rng):
    """Thick white-grey cloud cover over nearly all of the tile."""
    cover = np.clip(0.92 + 0.1 * smooth_noise(rng, 4), 0, 1)
    shade = (0.86, 0.86, 0.88) * (1 + 0.06 * smooth_noise(rng, 8))[..., None]
    paint(img, cover, shade, rng, jitter=0.02)


LAND_DRAWERS = {  # in painting order: big areas first, small details on top
    'agriculture': draw_agriculture, 'bare_ground': draw_bare_ground,
    'cultivation': draw_cultivation, 'conventional_mine': draw_conventional_mine,
    'blow_down': draw_blow_down, 'selective_logging': draw_selective_logging,
    'slash_burn': draw_slash_burn, 'water': draw_water, 'artisinal_mine': draw_artisinal_mine,
    'road': draw_road, 'habitation': draw_habitation, 'blooming': draw_blooming}
WEATHER_DRAWERS = {'haze': draw_haze, 'partly_cloudy': draw_partly_cloudy, 'cloudy': draw_cloudy}


def render(rng, tags):
    """Paint one 64x64 uint8 RGB tile showing the signature of every tag in tags."""
    img = background(rng, 'primary' in tags)
    slots = rng.permutation(SLOTS)  # spread the features over a 3x3 grid of places
    for k, tag in enumerate(t for t in LAND_DRAWERS if t in tags):
        cx, cy = slots[k % len(slots)] + rng.uniform(-4, 4, 2)
        LAND_DRAWERS[tag](img, rng, cx, cy)
    for tag in WEATHER_DRAWERS.keys() & tags:
        WEATHER_DRAWERS[tag](img, rng)
    img += rng.normal(0, 0.015, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def write_split(folder, prefix, rng, tags):
    """Render and save one JPEG per tag set as folder/<prefix>_<i>.jpg."""
    folder.mkdir(parents=True)
    for i, t in enumerate(tags):
        Image.fromarray(render(rng, t)).save(folder / f'{prefix}_{i}.jpg', quality=90)


def main():
    """Parse the command line and (re)write the whole dataset folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=int, default=480, help='number of training tiles')
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'planet_tiny')
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)

    train_rng, test_rng = np.random.default_rng([SEED, 0]), np.random.default_rng([SEED, 1])
    train_tags = sample_labels(train_rng, args.n, MIN_COUNT)
    write_split(args.out / 'train-jpg', 'train', train_rng, train_tags)
    rows = [f'train_{i},{" ".join(sorted(t))}' for i, t in enumerate(train_tags)]
    (args.out / 'train_v2.csv').write_text('\n'.join(['image_name,tags'] + rows) + '\n')
    write_split(args.out / 'test-jpg', 'test', test_rng, sample_labels(test_rng, N_TEST, 1))
    print(f'wrote {args.n} training and {N_TEST} test tiles to {args.out}')


if __name__ == '__main__':
    main()
