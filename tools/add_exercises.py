"""Append "Check your understanding" to each lesson notebook: a questionnaire (answers in answers/<notebook>.md)
and exercises whose answers course_utils/exercises/ checks (reference answers in solutions/<notebook>.py);
the own-data notebook gets a checklist instead.

Idempotent: every cell this tool wrote before (tagged `questionnaire` or `exercise`) is removed, then the current
cells are appended, with no outputs. Each question names the notebook section where the answer is; the tool
refuses to write a question whose section heading is not in the notebook. Video links are made here from the
time, so `?t=` always equals the time shown.

    .venv/bin/python tools/add_exercises.py            # all notebooks
    .venv/bin/python tools/add_exercises.py --check    # only say whether every notebook is up to date
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VIDEO = "https://youtu.be/PW2HKkzdkKY"
TAGS = ("questionnaire", "exercise")


def video(t: str) -> str:
    """A link to moment `t` ("37:23" or "1:06:13") of the lesson video, shown as ▶ t."""
    secs = 0
    for part in t.split(":"):
        secs = secs * 60 + int(part)
    return f"[▶ {t}]({VIDEO}?t={secs})"


# notebook -> [(question, section heading where the answer is, video time or None)]
QUESTIONS = {
    "lesson3-planet": [
        ("What makes Planet a *multi-label* problem, and what does one image's label look like after "
         "`label_from_df(label_delim=' ')`?", "The data", "14:49"),
        ("Why does the lesson add `flip_vert=True` and set `max_warp=0` for satellite tiles, when the pets of "
         "lesson 1 had neither?", "Back to Planet: augmentation", "29:35"),
        ("Name the three objects under the hood of the data: which one has `__getitem__` and `__len__`, which one "
         "makes mini-batches, and what does the third add?", "What is inside a DataBunch", "18:30"),
        ("Why can the plain `accuracy` metric (an `argmax`) not be used when an image can have several labels?",
         "The metrics", "37:23"),
        ("What does the threshold 0.2 decide, where did the lesson get it from, and does changing it change the "
         "trained model?", "The metrics", "37:23"),
        ("What does `partial(accuracy_thresh, thresh=0.2)` return? Write the same thing with `def`.",
         "`partial`", "39:17"),
        ("F2 weighs recall more than precision. Why does that make it pay to predict a tag you are unsure about?",
         "The metrics", "37:23"),
        ("Why is the loss binary cross entropy on a sigmoid per tag, and not the softmax of single-label "
         "classification?", "The model", None),
        ("On the `lr_find` plot of a fresh model, which rate do you pick, and why not the one where the loss is "
         "lowest?", "Finding a learning rate", "48:50"),
        ("After `unfreeze()`, how does the lesson choose the two ends of `slice(left, right)`?",
         "Stage 2: unfreeze, find the learning rate again, and fine-tune everything", "48:50"),
        ("What does `slice(a, b)` give each layer group, and why should the first layers learn more slowly "
         "than the head?", "Stage 2: unfreeze, find the learning rate again, and fine-tune everything", "49:24"),
        ("What does progressive resizing (128 → 256 in full mode) buy, and why does the lesson say the overfitting "
         "is gone after it?", "Progressive resizing: the same model on twice the image size", "51:01"),
        ("A deployed model gets an image wrong and the user tells you. What does the lesson suggest doing with "
         "that?", "Export and predict", "42:01"),
    ],
    "lesson3-camvid": [
        ("What does a segmentation model predict, compared with Planet's classifier? Why are such labels "
         "expensive to make?", "Lesson 3: segmentation of street scenes with a U-Net (CamVid)", "56:31"),
        ("How does `get_y_fn` find an image's mask, and what does the data block API do with that function?",
         "The data", "1:04:01"),
        ("A mask is a PNG. What does one of its pixel values mean, and where do the class names come from?",
         "The data", "1:04:35"),
        ("Why does the validation set come from `valid.txt` and not from a random 20% of the frames?",
         "Datasets", "1:06:13"),
        ("What does `tfm_y=True` do to a mask, and why must masks be resampled with the nearest pixel rather "
         "than smoothly?", "Datasets", "1:07:33"),
        ("What is `Void`, why does `acc_camvid` leave those pixels out, and does the loss leave them out too?",
         "The metric: accuracy on the labelled pixels", None),
        ("What is the trivial baseline printed here, and why must a real model beat it by far?",
         "The metric: accuracy on the labelled pixels", None),
        ("How does a U-Net get back to full resolution, and what do its skip connections carry?",
         "The model: a U-Net", "1:09:04"),
        ("What does `to_fp16()` do on a GPU, and what does it do on your laptop's CPU (look at the line it "
         "printed)?", "The model: a U-Net", None),
        ("What does `pct_start=0.9` change in the one-cycle schedule, and why was it chosen for the U-Net?",
         "Settings, and the two recipes", None),
        ("After unfreezing, the later course notebook uses `slice(lr/400, lr/4)` and the lesson `slice(1e-5, lr/5)`. "
         "Which layers get which end, and how do both follow the rule for rates after unfreezing?",
         "Settings, and the two recipes", "48:50"),
        ("Going big, why can the weights trained at half size be loaded into a U-Net for full-size images, and "
         "why is the batch smaller?", "Go big", None),
    ],
    "lesson3-head-pose": [
        ("What makes this *regression* rather than classification? What does the model output for one image?",
         "Lesson 3: image regression, finding the centre of a head (BIWI head pose)", "1:36:27"),
        ("What does a `pose.txt` file hold, and why is it not yet a point on the picture?",
         "The camera's calibration", "1:34:00"),
        ("Which four numbers of `rgb.cal` are used, and what does each one mean?", "The camera's calibration",
         None),
        ("Write the formula from the head centre (X, Y, Z) in millimetres to the pixel (row, col). Why divide "
         "by Z?", "From a pose to a point on the image", None),
        ("In which order are points given in this course, and why that order?",
         "From a pose to a point on the image", None),
        ("Why is the validation set one whole person (subject 13) and not a random share of the frames?",
         "The data block API", "1:37:41"),
        ("What happens to the point when the image is flipped or rotated during training, and which argument "
         "makes it happen?", "The data block API", None),
        ("In which coordinates does the model see the point, and what are -1 and 1?", "The data block API",
         None),
        ("What is the trivial baseline here, and which number must the model beat?", "A trivial baseline", None),
        ("Which loss does the learner use for points, and how many outputs does its head have?", "The model",
         "1:38:58"),
        ("Why does the regression head start with its last layer at zero and without dropout?", "The model",
         None),
        ("In which coordinates does `predict` answer, and what does it do to get there?", "Results", None),
    ],
    "lesson3-imdb": [
        ("What are tokenization and numericalization, and in which order do they happen?",
         "A first look: the IMDB sample", "1:41:08"),
        ("What do `xxbos`, `xxmaj`, `xxup` and `xxrep` stand for, and why lower-case every word but keep these?",
         "A first look: the IMDB sample", "1:56:47"),
        ("Which words become `xxunk`, and which ids do `xxunk` and `xxpad` always have?",
         "A first look: the IMDB sample", "1:56:47"),
        ("What does a language model predict, and why fine-tune the Wikipedia one on movie reviews before "
         "classifying?", "Fine-tuning the language model", "1:41:08"),
        ("Why may the language model learn from the test reviews and the unlabelled ones?",
         "Fine-tuning the language model", None),
        ("How is a language model's batch cut from the texts, what is its target, and what does `bptt` set?",
         "Fine-tuning the language model", None),
        ("What does `drop_mult=0.3` scale, and why less dropout when fine-tuning?",
         "Fine-tuning the language model", None),
        ("What is the unigram baseline, and what does perplexity measure?", "Fine-tuning the language model",
         None),
        ("Why does the classifier keep only the language model's encoder?", "Fine-tuning the language model",
         None),
        ("Why must the classifier's data be built with `vocab=data_lm.vocab`?", "The classifier", None),
        ("What are gradual unfreezing and `slice(lr/(2.6**4), lr)`: which groups train at each stage, and with "
         "which rates?", "The classifier", None),
        ("Why is the tiny model wrong on the lesson's one-sentence review while the full model is sure of it?",
         "Predict a new review", None),
    ],
    "lesson3-data-block": [
        ("Why did the library get a data block API instead of one factory method per dataset layout?",
         "Lesson 3: the data block tour, and what a neural net is", "17:05"),
        ("Which two methods make a PyTorch `Dataset`, and what does each return?",
         "Dataset, DataLoader, DataBunch", "18:30"),
        ("What does a `DataLoader` do with a `Dataset` (shuffling, collating)?", "Dataset, DataLoader, DataBunch",
         "20:37"),
        ("What does a `DataBunch` hold beyond two DataLoaders?", "Dataset, DataLoader, DataBunch", "21:59"),
        ("For MNIST's folders, which call gives the items, the split and the labels?", "MNIST: folders", "23:56"),
        ("Why `do_flip=False` for digits, while satellite tiles may be flipped every way?", "MNIST: folders",
         None),
        ("What kind of object does each step return (`ImageList`, `ItemLists`, `LabelLists`), and when are the "
         "images actually opened?", "MNIST: folders", None),
        ("In Planet's chain, what does `label_delim=' '` change about the labels?",
         "Planet: a CSV with several tags per image", "26:01"),
        ("In CamVid's chain, how is the label found, and what would go wrong without `tfm_y=True`?",
         "CamVid: a mask per image", "26:38"),
        ("How are COCO's boxes stored, and why do they need `bb_pad_collate` to make a batch?",
         "COCO: bounding boxes", "27:41"),
        ("What is a neural net, in the lesson's words, and what part does the ReLU play?",
         "What is a neural net?", "2:03:00"),
        ("Why do 30 ReLUs fit the curve better than 3? What does the universal approximation theorem say?",
         "What is a neural net?", "2:03:00"),
    ],
}

# notebook -> [(exercise title, what to do (markdown), the setup code or None, the answer cell, the check call)]
EXERCISES = {
    "lesson3-planet": [
        ("`acc_02` with `def`", "Write `acc_02` as a function, without `partial`: it takes the model's outputs (raw "
         "activations, before the sigmoid) and the multi-hot targets and returns the thresholded accuracy at 0.2. "
         "The check compares it with `accuracy_thresh` on this model's validation predictions.",
         "from course_utils import exercises\n\n"
         "preds, targs = exercises.valid_outputs(learn, data)  # raw outputs and targets on the validation set\n"
         "preds.shape, targs.shape",
         "def my_acc_02(inp, targ):\n    ...  # your code",
         "exercises.check_acc_02(globals(), preds, targs)"),
        ("F2 of one image, by hand", "Below are one validation image's probabilities and its true tags. Using the "
         "threshold 0.2, count the predicted tags and the true positives, then compute precision, recall and "
         "F2 = 5·P·R / (4·P + R). Code or pencil, put the number in `my_f2`.",
         "probs0, target0 = exercises.show_f2_image(preds.sigmoid(), targs, data.classes)",
         "my_f2 = ...  # a number",
         "exercises.check_f2_by_hand(globals(), probs0, target0)"),
        ("Reading `lr_find` after unfreezing", "Here is a curve recorded by `lr_find` right after `unfreeze()` "
         "(tiny Planet), and the rate stage 1 was trained with. Choose the slice for stage 2 by the lesson's "
         "rule, as a `slice(left, right)`. The check accepts a range, not one number.",
         "lr_curve_lrs, lr_curve_losses, lr_curve_stage1 = exercises.show_lr_curve()\n"
         "print(f\"stage 1 was trained at lr = {lr_curve_stage1}\")",
         "my_slice = ...  # slice(left, right)",
         "exercises.check_lr_slice(globals(), lr_curve_lrs, lr_curve_losses, lr_curve_stage1)"),
    ],
    "lesson3-camvid": [
        ("Masked pixel accuracy", "Write `acc_camvid` yourself, without `masked_accuracy`: the share of "
         "correctly predicted pixels among those whose target is not `void_code`. `input` is the U-Net's output "
         "(batch, classes, height, width), `target` the masks. The check compares with the metric on a validation "
         "batch, on masks half Void, and on a mask that is all Void.",
         "from course_utils import exercises\n\n"
         "output, target = exercises.valid_outputs(learn, max_batches=1)  # one validation batch\n"
         "output.shape, target.shape, void_code",
         "def my_acc_camvid(input, target):\n    ...  # your code",
         "exercises.check_acc_camvid(globals(), output, target, void_code)"),
        ("The validation set from `valid.txt`", "Write the function that `split_by_valid_func` would need to make "
         "CamVid's split: `my_is_valid(x)` gets an image's path and answers True for the images listed in "
         "`valid.txt`.",
         None,
         "def my_is_valid(x):\n    ...  # your code",
         "exercises.check_camvid_split(globals(), path)"),
        ("The rate of each layer group", "The later course notebook's stage 2 trains with "
         "`slice(3e-3 / 400, 3e-3 / 4)`. Which rate does each layer group of this U-Net get from it? Give "
         "`my_rates`, a list with one rate per group (`len(learn.layer_groups)` "
         "of them), first group first.",
         "stage2_lrs = slice(3e-3 / 400, 3e-3 / 4)\nlen(learn.layer_groups)",
         "my_rates = ...  # [rate of group 0, rate of group 1, ...]",
         "exercises.check_group_rates(globals(), learn, stage2_lrs, \"lesson3-camvid\")"),
    ],
    "lesson3-head-pose": [
        ("From `pose.txt` and `rgb.cal` to the pixel", "Write `my_center(pose_path, cal_path)`: read the head "
         "centre (X, Y, Z) from the pose file and fx, fy, cx, cy from the calibration, and return the pixel "
         "(row, col). You may read the files yourself or use `read_pose` and `read_calibration`.",
         "from course_utils import exercises\nfrom course_utils.vision.biwi import read_pose  # noqa: F401",
         "def my_center(pose_path, cal_path):\n    ...  # your code",
         "exercises.check_biwi_center(globals(), path, cal_path)"),
        ("Pixels to the model's coordinates", "Write `my_to_unit(point, size)`: a (row, col) point in pixels of an "
         "image of `size` = (height, width) to the [-1, 1] coordinates the model sees, -1 and 1 being the outer "
         "edges of the image and pixel *centres* sitting at whole numbers.",
         None,
         "def my_to_unit(point, size):\n    ...  # your code",
         "exercises.check_to_unit(globals())"),
        ("Hold out one person", "Write `my_is_valid(o)` for `split_by_valid_func`: `o` is a frame's path; "
         "answer True for the frames of the person held out for validation.",
         None,
         "def my_is_valid(o):\n    ...  # your code",
         "exercises.check_holdout(globals(), path)"),
    ],
    "lesson3-imdb": [
        ("Tokenize by hand", "Without running the tokenizer, write the list of tokens it makes of the review "
         "below, special tokens included.",
         "from course_utils import exercises\n\nprint(exercises.EXERCISE_REVIEW)",
         "my_tokens = ...  # ['xxbos', ...]",
         "exercises.check_tokens(globals(), tokenizer)"),
        ("Numericalize by hand", "Write `my_numericalize(tokens, vocab)`: each token's id in `vocab.itos`, and the "
         "id of `xxunk` for a token the vocabulary does not have. Do not call `vocab.numericalize`.",
         None,
         "def my_numericalize(tokens, vocab):\n    ...  # your code",
         "exercises.check_numericalize(globals(), data_lm.vocab)"),
        ("Discriminative rates in gradual unfreezing", "The second classifier stage trained with "
         "`slice(1e-2 / (2.6 ** 4), 1e-2)`. Which rate does each layer group of the classifier get? Give "
         "`my_rates`, one rate per group (`len(learn.layer_groups)`), first group first.",
         "len(learn.layer_groups)",
         "my_rates = ...  # [rate of group 0, rate of group 1, ...]",
         "exercises.check_group_rates(globals(), learn, slice(1e-2 / (2.6 ** 4), 1e-2), \"lesson3-imdb\")"),
    ],
    "lesson3-data-block": [
        ("A DataBunch for a new folder layout", "`shapes` is a new folder in MNIST's layout: `train/` and "
         "`valid/`, each with one sub-folder per shape. Write `my_databunch(folder)`: the data block chain for such "
         "a folder, split by the train/valid folders, labelled by the shape's folder, images of 16×16 "
         "(`size=16`), batches of 4. The check runs it on two more folders of this layout that it makes itself.",
         "from course_utils import exercises\n\nshapes = exercises.make_shapes_folder()\n"
         "sorted(str(p.relative_to(shapes)) for p in shapes.glob('*/*'))",
         "def my_databunch(folder):\n    ...  # your code",
         "exercises.check_folder_databunch(globals())"),
        ("A Dataset of your own", "Write a class `MySquares(Dataset)`: `MySquares(n)` has n items, and item i is "
         "the pair (i, i²), each as a float tensor of one element.",
         None,
         "MySquares = ...  # replace with: class MySquares(Dataset): ...",
         "exercises.check_dataset(globals())"),
        ("A sum of ReLUs by hand", "Write `my_relu_sum(x, w, b, a, c)`: for every number in the 1-d tensor `x`, "
         "c + Σᵢ aᵢ·max(0, wᵢ·x + bᵢ), where w, b and a are 1-d tensors of n numbers. It must equal the "
         "`Linear(1, n)`, ReLU, `Linear(n, 1)` model with those weights.",
         None,
         "def my_relu_sum(x, w, b, a, c):\n    ...  # your code",
         "exercises.check_relu_sum(globals())"),
    ],
}

OWN_DATA_CHECKLIST = f"""## Check your understanding: a checklist for your own data

The lesson's homework {video("2:03:30")} is to do all this on a dataset of your own. Before you call it done:

- [ ] The layout is one of the three (a CSV of labels, one folder per class, or masks), and the settings cell
      points at it; `check()` under *1. Label the data with the data block API, and check it* lists no problems
      (or you fixed them).
- [ ] The split makes sense for your data: if near-copies exist (frames of one video, photos of one person), they
      are all on one side, as CamVid's `valid.txt` and head pose's subject 13 do.
- [ ] `show_batch` shows the right labels on the right images, and the augmentations suit your images (no
      vertical flips for photos that have an up; every flip for images seen from above).
- [ ] You know the trivial baseline for your data (the commonest class, the tag frequencies) and the final
      metrics beat it clearly.
- [ ] You read each `lr_find` plot yourself before using its suggestion, and after `unfreeze()` chose the slice by
      the lesson's rule {video("48:50")}.
- [ ] The validation loss did not climb while the training loss fell (over-fitting), and the training loss is not
      far above the validation loss (under-fitting: train longer).
- [ ] You looked at the top losses and the per-class scores or the confusion matrix, and know which mistakes the
      model makes and whether some labels are wrong.
- [ ] For several labels per image, you tuned the threshold on the validation set.
- [ ] You exported the model, loaded it with `load_learner` and predicted an image it never saw.
- [ ] Optional: you put it on a page {video("3:36")} (`python -m course_utils serve`) and kept the corrections
      people gave it, to fine-tune on later {video("42:01")}.
"""


def _source(text: str) -> list[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def _cell(kind: str, text: str, tag: str) -> dict:
    """A cell as the repository stores them: keys sorted, code cells without outputs (the id is set later)."""
    if kind == "code":
        return {"cell_type": kind, "execution_count": None, "id": "", "metadata": {"tags": [tag]}, "outputs": [],
                "source": _source(text)}
    return {"cell_type": kind, "id": "", "metadata": {"tags": [tag]}, "source": _source(text)}


def _headings(nb: dict) -> set[str]:
    found = set()
    for c in nb["cells"]:
        if c["cell_type"] == "markdown":
            for m in re.finditer(r"^#+ +(.+)$", "".join(c["source"]), re.M):  # a heading, without its video links
                found.add(re.sub(r"\s*\[▶[^\]]*\]\([^)]*\)", "", m.group(1)).strip())
    return found


def questionnaire(name: str, nb: dict) -> str:
    """The questionnaire's markdown for notebook `name`; raises if a question names a section the notebook lacks."""
    headings = _headings(nb)
    lines = ["## Check your understanding", "", "### Questionnaire", "",
             "Answer in your own words first; then compare with "
             f"[`answers/{name}.md`](../answers/{name}.md). After each question: the section of this notebook "
             "where the answer is, and where the lesson video talks about it, when the lecture notes give a time.",
             ""]
    for i, (q, section, t) in enumerate(QUESTIONS[name], start=1):
        if section not in headings:
            raise SystemExit(f"{name}.ipynb has no section {section!r} (question {i}): fix the heading in "
                             f"tools/add_exercises.py's QUESTIONS. The notebook's sections: {sorted(headings)}")
        where = f"*{section}*" + (f", {video(t)}" if t else "")
        lines.append(f"{i}. {q} ({where})")
    return "\n".join(lines)


def new_cells(name: str, nb: dict) -> list[dict]:
    """The cells to append to notebook `name`."""
    if name == "lesson3-your-own-data":
        cell = _cell("markdown", OWN_DATA_CHECKLIST.strip(), "questionnaire")
        cell["id"] = "check-understanding-00"
        return [cell]
    cells = [_cell("markdown", questionnaire(name, nb), "questionnaire"),
             _cell("markdown", "### Exercises\n\nEach exercise has a cell marked *your answer*: replace the `...` "
                   "with your code or value, run it, then run the check under it. A check says `correct`, or gives "
                   "a hint about what is wrong, or `not answered yet`; it never stops the notebook. Reference "
                   "answers are in `solutions/` (`COURSE_SOLUTIONS=1` makes every check run them: see the README).",
                   "exercise")]
    for i, (title, task, setup, answer, check) in enumerate(EXERCISES[name], start=1):
        cells.append(_cell("markdown", f"#### Exercise {i}: {title}\n\n{task}", "exercise"))
        if setup:
            cells.append(_cell("code", setup, "exercise"))
        cells.append(_cell("code", f"# Exercise {i}, your answer:\n{answer}", "exercise"))
        cells.append(_cell("code", check, "exercise"))
    for i, c in enumerate(cells):  # ids that stay the same each time the tool runs, so diffs show only real changes
        c["id"] = f"check-understanding-{i:02d}"
    return cells


def updated(path: Path) -> tuple[str, str]:
    """(the notebook's text now, its text with the current cells appended in place of the old ones)."""
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    nb["cells"] = [c for c in nb["cells"] if not set(c.get("metadata", {}).get("tags", [])) & set(TAGS)]
    nb["cells"] += new_cells(path.stem, nb)
    return text, json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is out of date")
    parser.add_argument("notebooks", nargs="*", help="default: every lesson notebook in nbs/")
    args = parser.parse_args()
    names = list(QUESTIONS) + ["lesson3-your-own-data"]
    paths = [Path(p) for p in args.notebooks] or [ROOT / "nbs" / f"{n}.ipynb" for n in names]
    stale = []
    for path in paths:
        old, new = updated(path)
        if old != new:
            stale.append(path.name)
            if not args.check:
                path.write_text(new, encoding="utf-8")
        print(f"{'out of date' if args.check and old != new else 'updated' if old != new else 'up to date'}: "
              f"{path.name}")
    if args.check and stale:
        print("Run `.venv/bin/python tools/add_exercises.py` to append the current exercise cells.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
