"""Lesson 3, BIWI head pose (image regression): our paraphrase of course-v3 `nbs/dl1/lesson3-head-pose.ipynb` as
the video ran it (commit 5ae95c5, November 2018: `create_cnn`, `MSELossFlat`, `ImagePoints(FlowField(...))`,
`plot_multi`). Changes: the import line, the example frame (the tiny set's `09/frame_00003`; the lesson's
`frame_00667` is not in it), speed settings (resnet18, pretrained=False, 1 epoch, size (48, 64))."""
from video_cells import Skip  # noqa: F401  (no cell of this lesson is skipped)

TITLE = "lesson3-head-pose"
SETUP = "import numpy as _np\n_np.random.seed(0)"

CELLS = [
    "from course_utils.all import *",
    "path = untar_data(URLs.BIWI_HEAD_POSE)",
    "cal = np.genfromtxt(path/'01'/'rgb.cal', skip_footer=6); cal",
    "fname = '09/frame_00003_rgb.jpg'",
    "def img2txt_name(f): return path/f'{str(f)[:-7]}pose.txt'",
    "img = open_image(path/fname)\nimg.show()",
    "ctr = np.genfromtxt(img2txt_name(fname), skip_header=3); ctr",
    "def convert_biwi(coords):\n"
    "    c1 = coords[0] * cal[0][0]/coords[2] + cal[0][2]\n"
    "    c2 = coords[1] * cal[1][1]/coords[2] + cal[1][2]\n"
    "    return tensor([c2, c1])\n\n"
    "def get_ctr(f):\n    ctr = np.genfromtxt(img2txt_name(f), skip_header=3)\n    return convert_biwi(ctr)\n\n"
    "def get_ip(img, pts): return ImagePoints(FlowField(img.size, pts), scale=True)",
    "get_ctr(fname)",
    "ctr = get_ctr(fname)\nimg.show(y=get_ip(img, ctr), figsize=(6, 6))",
    "data = (PointsItemList.from_folder(path)\n"
    "        .split_by_valid_func(lambda o: o.parent.name == '13')\n"
    "        .label_from_func(get_ctr)\n"
    "        .transform(get_transforms(), tfm_y=True, size=(48, 64))\n"
    "        .databunch().normalize(imagenet_stats))",
    "data.show_batch(3, figsize=(9,6))",
    "learn = create_cnn(data, models.resnet18, pretrained=False)\nlearn.loss_func = MSELossFlat()",
    "learn.lr_find()\nlearn.recorder.plot()",
    "lr = 2e-2",
    "learn.fit_one_cycle(1, slice(lr))",
    "learn.save('stage-1')",
    "learn.load('stage-1');",
    "learn.show_results();",
    "tfms = get_transforms(max_rotate=20, max_zoom=1.5, max_lighting=0.5, max_warp=0.4, p_affine=1., p_lighting=1.)\n\n"
    "data = (PointsItemList.from_folder(path)\n"
    "        .split_by_valid_func(lambda o: o.parent.name == '13')\n"
    "        .label_from_func(get_ctr)\n"
    "        .transform(tfms, tfm_y=True, size=(48, 64), padding_mode='zeros')\n"
    "        .databunch().normalize(imagenet_stats))",
    ("def _plot(i, j, ax):\n    x, y = data.train_ds[0]\n    x.show(ax, y=y)\n\n"
     "plot_multi(_plot, 3, 3, figsize=(8,6))",
     "def _plot(i, j, ax):\n    x, y = data.train_ds[0]\n    show_points(data.denorm(x[None])[0], "
     "unit_to_points(y.reshape(-1, 2), x.shape[-2:]), ax=ax)\n\n"
     "from course_utils.vision.points import unit_to_points\nplot_multi(_plot, 3, 3, figsize=(8,6))"),
]
