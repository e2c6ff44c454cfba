"""Lesson 3, CamVid (segmentation): our paraphrase of course-v3 `nbs/dl1/lesson3-camvid.ipynb` as the video ran it
(commit 50a49ec, November 2018: `Learner.create_unet`, `lr_find(learn)`), with the later cells of HEAD the video
also shows in its notes (`learn.destroy()`, `gpu_mem_get_free_no_cache`). Changes: the import line, speed settings
(resnet18, pretrained=False, 1 epoch; the tiny images are 64x48, so "half size" is 32x24)."""
from video_cells import Skip  # noqa: F401  (the format's marker; no cell here is skipped)

TITLE = "lesson3-camvid"
SETUP = "import numpy as _np\n_np.random.seed(0)"

CELLS = [
    "from course_utils.all import *",
    "path = untar_data(URLs.CAMVID)\npath.ls()",
    "path_lbl = path/'labels'\npath_img = path/'images'",
    "fnames = get_image_files(path_img)\nfnames[:3]",
    "lbl_names = get_image_files(path_lbl)\nlbl_names[:3]",
    "img_f = fnames[0]\nimg = open_image(img_f)\nimg.show(figsize=(5,5))",
    "get_y_fn = lambda x: path_lbl/f'{x.stem}_P{x.suffix}'",
    "mask = open_mask(get_y_fn(img_f))\nmask.show(figsize=(5,5), alpha=1)",
    "src_size = np.array(mask.shape[1:])\nsrc_size, mask.data",
    "codes = np.loadtxt(path/'codes.txt', dtype=str); codes",
    "size = src_size//2\nbs = 8",
    "src = (SegmentationItemList.from_folder(path_img)\n"
    "       .split_by_fname_file('../valid.txt')\n"
    "       .label_from_func(get_y_fn, classes=codes))",
    "data = (src.transform(get_transforms(), size=size, tfm_y=True)\n"
    "        .databunch(bs=bs)\n        .normalize(imagenet_stats))",
    "data.show_batch(2, figsize=(10,7))",
    "data.show_batch(2, figsize=(10,7), ds_type=DatasetType.Valid)",
    "name2id = {v: k for k, v in enumerate(codes)}\nvoid_code = name2id['Void']\n\n"
    "def acc_camvid(input, target):\n    target = target.squeeze(1)\n    mask = target != void_code\n"
    "    return (input.argmax(dim=1)[mask] == target[mask]).float().mean()",
    "metrics = acc_camvid\nwd = 1e-2",
    "learn = Learner.create_unet(data, models.resnet18, metrics=metrics, wd=wd, pretrained=False)",
    "lr_find(learn)\nlearn.recorder.plot()",
    "lr = 1e-2",
    "learn.fit_one_cycle(1, slice(lr), pct_start=0.9)",
    "learn.save('stage-1')",
    "learn.load('stage-1');",
    "learn.show_results(rows=3, figsize=(8,9))",
    "learn.unfreeze()",
    "lrs = slice(lr/400, lr/4)",
    "learn.fit_one_cycle(1, lrs, pct_start=0.8)",
    "learn.save('stage-2');",
    "learn.destroy()",
    "size = src_size\n\nfree = gpu_mem_get_free_no_cache()\n"
    "if free > 8200: bs = 3\nelse: bs = 2\nprint(f'using bs={bs}, have {free}MB of GPU RAM free')",
    "data = (src.transform(get_transforms(), size=size, tfm_y=True)\n"
    "        .databunch(bs=bs)\n        .normalize(imagenet_stats))",
    "learn = Learner.create_unet(data, models.resnet18, metrics=metrics, wd=wd, pretrained=False).load('stage-2');",
    "lr_find(learn)\nlearn.recorder.plot()",
    "lr = 1e-3",
    "learn.fit_one_cycle(1, slice(lr), pct_start=0.8)",
    "learn.save('stage-1-big')",
    "learn.load('stage-1-big');",
    "learn.unfreeze()",
    "lrs = slice(1e-6, lr/10)",
    "learn.fit_one_cycle(1, lrs)",
    "learn.save('stage-2-big')",
    "learn.load('stage-2-big');",
    "learn.show_results(rows=3, figsize=(10,10))",
]
