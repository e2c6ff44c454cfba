"""Lesson 3, Planet (multi-label satellite tiles): our paraphrase of course-v3 `nbs/dl1/lesson3-planet.ipynb`
(HEAD; the video's November 2018 names `create_cnn` and `random_split_by_pct` are kept where the video typed
them). Changes: the import line, the data path (the bundled `data/planet_tiny`), the Kaggle download cells and the
submission upload (skipped), speed settings (resnet18, pretrained=False, 1 epoch, sizes 32 and 48)."""
from video_cells import Skip

TITLE = "lesson3-planet"
SETUP = "import numpy as _np\n_np.random.seed(0)"

CELLS = [
    "from course_utils.all import *",
    Skip("pip install kaggle, ~/.kaggle/kaggle.json: shell commands"),
    "path = Path('data/planet_tiny')\npath.mkdir(parents=True, exist_ok=True)\npath",
    Skip("kaggle competitions download: no network"),
    Skip("7za x train-jpg.tar.7z: shell command"),
    "df = pd.read_csv(path/'train_v2.csv')\ndf.head()",
    "tfms = get_transforms(flip_vert=True, max_lighting=0.1, max_zoom=1.05, max_warp=0.)",
    "np.random.seed(42)\n"
    "src = (ImageItemList.from_csv(path, 'train_v2.csv', folder='train-jpg', suffix='.jpg')\n"
    "       .split_by_rand_pct(0.2)\n"
    "       .label_from_df(label_delim=' '))",
    "data = (src.transform(tfms, size=32)\n        .databunch().normalize(imagenet_stats))",
    "data.show_batch(rows=3, figsize=(12,9))",
    "arch = models.resnet18",
    "acc_02 = partial(accuracy_thresh, thresh=0.2)\nf_score = partial(fbeta, thresh=0.2)\n"
    "learn = create_cnn(data, arch, metrics=[acc_02, f_score], pretrained=False)",
    "learn.lr_find()",
    "learn.recorder.plot()",
    "lr = 0.01",
    "learn.fit_one_cycle(1, slice(lr))",
    "learn.save('stage-1-rn18')",
    "learn.unfreeze()",
    "learn.lr_find()\nlearn.recorder.plot()",
    "learn.fit_one_cycle(1, slice(1e-5, lr/5))",
    "learn.save('stage-2-rn18')",
    "data = (src.transform(tfms, size=48)\n        .databunch().normalize(imagenet_stats))\nlearn.data = data\n"
    "data.train_ds[0][0].shape",
    "learn.freeze()",
    "learn.lr_find()\nlearn.recorder.plot()",
    "lr = 1e-2/2",
    "learn.fit_one_cycle(1, slice(lr))",
    "learn.save('stage-1-48-rn18')",
    "learn.unfreeze()",
    "learn.fit_one_cycle(1, slice(1e-5, lr/5))",
    "learn.recorder.plot_losses()",
    "learn.save('stage-2-48-rn18')",
    "learn.export()",
    Skip("kaggle download of test-jpg.tar.7z: no network"),
    Skip("7za x test-jpg.tar.7z: shell command"),
    "test = ImageList.from_folder(path/'test-jpg').add(ImageList.from_folder(path/'test-jpg'))\nlen(test)",
    "learn = load_learner(path, test=test)\npreds, _ = learn.get_preds(ds_type=DatasetType.Test)",
    "thresh = 0.2\n"
    "labelled_preds = [' '.join([learn.data.classes[i] for i, p in enumerate(pred) if p > thresh]) for pred in preds]",
    "labelled_preds[:5]",
    "fnames = [f.name[:-4] for f in learn.data.test_ds.items]",
    "df = pd.DataFrame({'image_name': fnames, 'tags': labelled_preds}, columns=['image_name', 'tags'])",
    Skip("df.to_csv(path/'submission.csv') then kaggle competitions submit: writes into data/, no network"),
]
