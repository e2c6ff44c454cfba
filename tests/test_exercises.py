"""The exercise checks (course_utils/exercises/): each accepts its reference solution (solutions/, run the way
COURSE_SOLUTIONS=1 runs it in a notebook), rejects typical wrong answers with a hint naming the mistake, says
"not answered yet" for a blank answer, and never raises on a student's answer."""
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from course_utils import exercises as ex
from course_utils.learner import lr_range
from course_utils.metrics import accuracy_thresh
from course_utils.text.tokenize import SPECIAL_TOKENS, Tokenizer, Vocab
from course_utils.vision import ImageList, get_transforms

DATA = Path(__file__).resolve().parent.parent / "data"
CAMVID, BIWI = DATA / "camvid_tiny", DATA / "biwi_head_pose_tiny"
CAL = BIWI / "01" / "rgb.cal"


def run(capsys, check, ns, *args, **kwargs) -> str:
    """The line a check prints (it must print exactly one and return nothing)."""
    assert check(ns, *args, **kwargs) is None
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1, out
    return out


def assert_hint(out: str, *words: str) -> None:
    assert out.startswith("not yet:"), out
    for w in words:
        assert w in out, f"{w!r} not in {out!r}"


class FakeLearner:
    """What check_group_rates needs of a learner: its layer groups and how a slice spreads over them."""

    def __init__(self, n):
        self.layer_groups = list(range(n))

    def lr_range(self, lrs):
        return lr_range(lrs, len(self.layer_groups))


@pytest.fixture
def planet(capsys):
    g = torch.Generator().manual_seed(0)
    preds = torch.randn(20, 17, generator=g) * 2
    targs = (torch.rand(20, 17, generator=g) < 0.3).float()
    probs0, target0 = ex.show_f2_image(preds.sigmoid(), targs, [f"t{i}" for i in range(17)])
    lrs, losses, lr = ex.lr_curve()
    capsys.readouterr()  # the table show_f2_image printed
    return dict(accuracy_thresh=accuracy_thresh, preds=preds, targs=targs, probs0=probs0, target0=target0,
                lr_curve_lrs=lrs, lr_curve_losses=losses, lr_curve_stage1=lr)


@pytest.fixture
def camvid():
    codes = (CAMVID / "codes.txt").read_text().split()
    void = codes.index("Void")
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, len(codes), (2, 1, 6, 8), generator=g)
    output = torch.randn(2, len(codes), 6, 8, generator=g)
    output[:, :, :3] += 5 * torch.nn.functional.one_hot(target[:, 0, :3], len(codes)).permute(0, 3, 1, 2)
    return dict(void_code=void, path=CAMVID, output=output, target=target, learn=FakeLearner(3),
                stage2_lrs=slice(3e-3 / 400, 3e-3 / 4))


@pytest.fixture
def imdb():
    tok = Tokenizer(cache=False)
    words = ["the", "movie", "film", "was", "great", "bad", "and", "a", "it", "is"]
    vocab = Vocab(SPECIAL_TOKENS + words + [".", ","])
    return dict(tokenizer=tok, vocab=vocab, learn=FakeLearner(5))


@pytest.fixture
def solutions(monkeypatch):
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")


def blank_is_reported(capsys, check, ns, *args):
    """A blank answer: `...`, None, and the name not defined at all."""
    for value in (..., None, "undefined"):
        ns = dict(ns)
        if value == "undefined":
            ns = {k: v for k, v in ns.items() if not k.startswith("my_") and k != "MySquares"}
        else:
            ns[name_of(check)] = value
        out = run(capsys, check, ns, *args)
        assert out.startswith("not answered yet:"), out


def name_of(check) -> str:
    return {ex.check_acc_02: "my_acc_02", ex.check_f2_by_hand: "my_f2", ex.check_lr_slice: "my_slice",
            ex.check_acc_camvid: "my_acc_camvid", ex.check_camvid_split: "my_is_valid",
            ex.check_biwi_center: "my_center", ex.check_to_unit: "my_to_unit", ex.check_holdout: "my_is_valid",
            ex.check_tokens: "my_tokens", ex.check_numericalize: "my_numericalize",
            ex.check_folder_databunch: "my_databunch", ex.check_dataset: "MySquares",
            ex.check_relu_sum: "my_relu_sum"}[check]


# --------------------------------------------------------------------------- planet
def test_acc_02(capsys, monkeypatch, planet):
    p = planet
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    assert run(capsys, ex.check_acc_02, dict(p), p["preds"], p["targs"]).startswith("correct (the reference")
    monkeypatch.delenv("COURSE_SOLUTIONS")
    blank_is_reported(capsys, ex.check_acc_02, p, p["preds"], p["targs"])
    wrong = {
        "thresh=0.3": (lambda i, t: accuracy_thresh(i, t, thresh=0.3), ["thresh=0.3"]),
        "default 0.5": (lambda i, t: accuracy_thresh(i, t), ["thresh=0.5"]),
        "no sigmoid": (lambda i, t: ((i > 0.2) == t.bool()).float().mean(), ["sigmoid"]),
        "per image": (lambda i, t: ((i.sigmoid() > 0.2) == t.bool()).float().mean(1), ["not one number"]),
        "raises": (lambda i, t: i.nonexistent, ["raised AttributeError"]),
        "body left as ...": (lambda i, t: None, None),
    }
    for name, (fn, words) in wrong.items():
        out = run(capsys, ex.check_acc_02, {"my_acc_02": fn}, p["preds"], p["targs"])
        if words is None:
            assert out.startswith("not answered yet:") and "`return`" in out, out
        else:
            assert_hint(out, *words)


def test_f2_by_hand(capsys, solutions, planet):
    out = run(capsys, ex.check_f2_by_hand, dict(planet), planet["probs0"], planet["target0"])
    assert out.startswith("correct"), out


def test_f2_wrong_answers(capsys, planet):
    p, t = planet["probs0"], planet["target0"]
    blank_is_reported(capsys, ex.check_f2_by_hand, planet, p, t)
    pred = (p > 0.2).float()
    tp = (pred * t).sum()
    prec, rec = tp / pred.sum(), tp / t.sum()
    for value, words in ((2 * prec * rec / (prec + rec), ["F1"]), (5 * rec * prec / (4 * rec + prec), ["swapped"]),
                         (0.123, ["Count first"]), ("0.8", ["one number"])):
        assert_hint(run(capsys, ex.check_f2_by_hand, {"my_f2": value}, p, t), *words)


def test_f2_example_when_no_image_fits(capsys):
    probs, target = ex.show_f2_image(torch.ones(3, 5) * 0.9, torch.ones(3, 5), list("abcde"))
    assert "made-up" in capsys.readouterr().out
    assert ex.pick_f2_image(probs[None], target[None]) == 0  # the made-up image is a good example


def test_lr_slice(capsys, monkeypatch, planet):
    lrs, losses, lr = planet["lr_curve_lrs"], planet["lr_curve_losses"], planet["lr_curve_stage1"]
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    assert run(capsys, ex.check_lr_slice, dict(planet), lrs, losses, lr).startswith("correct")
    monkeypatch.delenv("COURSE_SOLUTIONS")
    blank_is_reported(capsys, ex.check_lr_slice, planet, lrs, losses, lr)
    ok = run(capsys, ex.check_lr_slice, {"my_slice": slice(lr / 100, lr / 10)}, lrs, losses, lr)
    assert ok.startswith("correct"), ok  # lr/10 for the right end is the lesson's rule too
    wrong = [
        (slice(2e-1, lr / 5), ["shoots up"]),                 # the edge itself, not 10x before
        (slice(2e-2, lr / 5), ["tenth of the right end"]),    # the reading, above the cap
        (slice(lr / 5, lr / 50), ["not below"]),              # swapped ends
        (slice(lr / 50, lr), ["stage-1 rate itself"]),        # the right end not divided
        (slice(lr / 5), ["both ends"]),
        (slice(1e-6, lr / 5), ["too low"]),
        ((1e-3, 5e-3), ["should be a slice"]),
    ]
    for value, words in wrong:
        assert_hint(run(capsys, ex.check_lr_slice, {"my_slice": value}, lrs, losses, lr), *words)


# --------------------------------------------------------------------------- camvid
def test_acc_camvid(capsys, monkeypatch, camvid):
    c = camvid
    args = (c["output"], c["target"], c["void_code"])
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    assert run(capsys, ex.check_acc_camvid, dict(c), *args).startswith("correct")
    monkeypatch.delenv("COURSE_SOLUTIONS")
    blank_is_reported(capsys, ex.check_acc_camvid, c, *args)
    v = c["void_code"]

    def forgets_void(i, t):
        return (i.argmax(1) == t.squeeze(1)).float().mean()

    def all_pixels_denominator(i, t):
        t = t.squeeze(1)
        return ((i.argmax(1) == t) & (t != v)).float().sum() / t.numel()

    def zero_when_empty(i, t):
        t = t.squeeze(1)
        keep = t != v
        return (i.argmax(1)[keep] == t[keep]).float().mean() if keep.any() else torch.tensor(0.0)

    def wrong_dim(i, t):
        return (i.argmax(-1) == t.squeeze(1)).float().mean()

    for fn, words in ((forgets_void, ["counts the Void pixels"]), (all_pixels_denominator, ["divides by all"]),
                      (zero_when_empty, ["all Void", "nan"]), (wrong_dim, ["argmax(dim=1)"])):
        assert_hint(run(capsys, ex.check_acc_camvid, {"my_acc_camvid": fn}, *args), *words)


def test_camvid_split(capsys, monkeypatch, camvid):
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    assert run(capsys, ex.check_camvid_split, dict(camvid), CAMVID).startswith("correct")
    monkeypatch.delenv("COURSE_SOLUTIONS")
    blank_is_reported(capsys, ex.check_camvid_split, camvid, CAMVID)
    names = set((CAMVID / "valid.txt").read_text().split())
    for fn, words in ((lambda x: str(x) in names, ["x.name"]), (lambda x: True, ["True for every image"]),
                      (lambda x: hash(x.name) % 5 == 0, ["valid.txt names"]),
                      (lambda x: x.name in names and x.name != sorted(names)[0], ["not picked"])):
        assert_hint(run(capsys, ex.check_camvid_split, {"my_is_valid": fn}, CAMVID), *words)


@pytest.mark.parametrize("nb, n, lrs", [("lesson3-camvid", 3, slice(3e-3 / 400, 3e-3 / 4)),
                                        ("lesson3-imdb", 5, slice(1e-2 / 2.6 ** 4, 1e-2))])
def test_group_rates(capsys, monkeypatch, camvid, nb, n, lrs):
    learn = FakeLearner(n)
    ns = dict(camvid, learn=learn)
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    assert run(capsys, ex.check_group_rates, ns, learn, lrs, nb).startswith("correct")
    monkeypatch.delenv("COURSE_SOLUTIONS")
    for blank in (..., None):
        assert run(capsys, ex.check_group_rates, {"my_rates": blank}, learn, lrs, nb).startswith("not answered")
    want = lr_range(lrs, n)
    linear = [lrs.start + (lrs.stop - lrs.start) * i / (n - 1) for i in range(n)]
    for value, words in ((want[::-1], ["reversed"]), (linear, ["evenly spaced"]), ([lrs.stop] * n, ["same rate"]),
                         (want[:-1], [f"{n} layer groups"]), (0.01, ["list of numbers"])):
        assert_hint(run(capsys, ex.check_group_rates, {"my_rates": value}, learn, lrs, nb), *words)


# --------------------------------------------------------------------------- head pose
def test_biwi_center(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    assert run(capsys, ex.check_biwi_center, {}, BIWI, CAL).startswith("correct")
    monkeypatch.delenv("COURSE_SOLUTIONS")
    blank_is_reported(capsys, ex.check_biwi_center, {}, BIWI, CAL)
    from course_utils.vision.biwi import read_calibration, read_pose

    def make(formula):
        def fn(pose_path, cal_path):
            (x, y, z), c = read_pose(pose_path)[1], read_calibration(cal_path)
            return formula(x, y, z, c[0, 0], c[1, 1], c[0, 2], c[1, 2])
        return fn

    wrong = {"swapped": (make(lambda x, y, z, fx, fy, cx, cy: (x * fx / z + cx, y * fy / z + cy)), ["swapped"]),
             "no z": (make(lambda x, y, z, fx, fy, cx, cy: (y * fy + cy, x * fx + cx)), ["divide by Z"]),
             "cx cy": (make(lambda x, y, z, fx, fy, cx, cy: (y * fy / z + cx, x * fx / z + cy)), ["cx and cy"]),
             "one number": (make(lambda x, y, z, fx, fy, cx, cy: y * fy / z + cy), ["two numbers"]),
             "error": (lambda p, c: open(p).read().split()[99], ["raised IndexError"])}
    for fn, words in wrong.values():
        assert_hint(run(capsys, ex.check_biwi_center, {"my_center": fn}, BIWI, CAL), *words)


def test_to_unit(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    assert run(capsys, ex.check_to_unit, {}).startswith("correct")
    monkeypatch.delenv("COURSE_SOLUTIONS")
    blank_is_reported(capsys, ex.check_to_unit, {})
    hw = lambda s: torch.tensor(s, dtype=torch.float32)  # noqa: E731
    for fn, words in ((lambda p, s: 2 * p / hw(s) - 1, ["half a pixel"]),
                      (lambda p, s: (2 * p + 1) / hw(s[::-1]) - 1, ["swapped"]),
                      (lambda p, s: (2 * p + 1) / hw(s) / 2, ["[0, 1]"])):
        assert_hint(run(capsys, ex.check_to_unit, {"my_to_unit": fn}), *words)


def test_holdout(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    assert run(capsys, ex.check_holdout, {}, BIWI).startswith("correct")
    monkeypatch.delenv("COURSE_SOLUTIONS")
    blank_is_reported(capsys, ex.check_holdout, {}, BIWI)
    for fn, words in ((lambda o: o.name == "13", ["o.parent.name"]), (lambda o: o.parent.name == "12", ["subject 12"]),
                      (lambda o: hash(o.name) % 5 == 0, ["one whole person"])):
        assert_hint(run(capsys, ex.check_holdout, {"my_is_valid": fn}, BIWI), *words)


# --------------------------------------------------------------------------- imdb
def test_tokens(capsys, monkeypatch, imdb):
    tok = imdb["tokenizer"]
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    assert run(capsys, ex.check_tokens, {}, tok).startswith("correct")
    monkeypatch.delenv("COURSE_SOLUTIONS")
    blank_is_reported(capsys, ex.check_tokens, {}, tok)
    right = tok.process_text(ex.EXERCISE_REVIEW)
    no_rep = [t for t in right if t not in ("xxrep", "4")]
    no_rep[no_rep.index("!")] = "!!!!"
    for value, words in ((right[1:], ["beginning of a text"]),
                         ([t for t in right if t != "xxup"], ["CAPITALS"]),
                         (no_rep, ["repeated 4 or more times"]),
                         (["xxbos", "I", "LOVED"] + right[3:], ["lower case"]),
                         ([t for t in right if t != "xxmaj"], ["capital first letter"]),
                         ("xxbos i xxup loved", ["list of strings"])):
        assert_hint(run(capsys, ex.check_tokens, {"my_tokens": value}, tok), *words)


def test_numericalize(capsys, monkeypatch, imdb):
    vocab = imdb["vocab"]
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    assert run(capsys, ex.check_numericalize, {}, vocab).startswith("correct")
    monkeypatch.delenv("COURSE_SOLUTIONS")
    blank_is_reported(capsys, ex.check_numericalize, {}, vocab)
    for fn, words in ((lambda ts, v: [v.stoi[t] for t in ts], ["KeyError", "xxunk"]),
                      (lambda ts, v: [v.stoi[t] for t in ts if t in v.stoi], ["not dropped"]),
                      (lambda ts, v: [v.stoi.get(t, -1) + 1 for t in ts], ["one too high"])):
        assert_hint(run(capsys, ex.check_numericalize, {"my_numericalize": fn}, vocab), *words)


# --------------------------------------------------------------------------- the data block tour
def test_folder_databunch(capsys, monkeypatch):
    ns = dict(ImageList=ImageList, get_transforms=get_transforms)
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    assert run(capsys, ex.check_folder_databunch, dict(ns)).startswith("correct")
    monkeypatch.delenv("COURSE_SOLUTIONS")
    blank_is_reported(capsys, ex.check_folder_databunch, ns)
    tfms = get_transforms(do_flip=False)

    def random_split(f):
        return ImageList.from_folder(f).split_by_rand_pct(0.5, seed=0).label_from_folder() \
            .transform(tfms, size=16).databunch(bs=4)

    def wrong_size(f):
        return ImageList.from_folder(f).split_by_folder().label_from_folder().transform(tfms, size=32).databunch(bs=4)

    def no_databunch(f):
        return ImageList.from_folder(f).split_by_folder().label_from_folder()

    for fn, words in ((random_split, ["split_by_folder"]), (wrong_size, ["size=16"]),
                      (no_databunch, [".databunch(bs=4)"])):
        assert_hint(run(capsys, ex.check_folder_databunch, {"my_databunch": fn}), *words)


def test_dataset(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    assert run(capsys, ex.check_dataset, dict(Dataset=Dataset, torch=torch)).startswith("correct")
    monkeypatch.delenv("COURSE_SOLUTIONS")
    blank_is_reported(capsys, ex.check_dataset, {})

    class NoLen(Dataset):
        def __init__(self, n):
            self.n = n

        def __getitem__(self, i):
            return torch.tensor([float(i)]), torch.tensor([float(i * i)])

    class OffByOne(NoLen):
        def __len__(self):
            return self.n + 1

    class Swapped(OffByOne):
        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return torch.tensor([float(i * i)]), torch.tensor([float(i)])

    class NotAPair(Swapped):
        def __getitem__(self, i):
            return float(i)

    for cls, words in ((NoLen, ["__len__"]), (OffByOne, ["not 10"]), (Swapped, ["swapped"]), (NotAPair, ["a pair"]),
                       (NoLen(3), ["should be a class"])):
        assert_hint(run(capsys, ex.check_dataset, {"MySquares": cls}), *words)


def test_relu_sum(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    assert run(capsys, ex.check_relu_sum, dict(torch=torch)).startswith("correct")
    monkeypatch.delenv("COURSE_SOLUTIONS")
    blank_is_reported(capsys, ex.check_relu_sum, {})
    for fn, words in ((lambda x, w, b, a, c: c + (a * (w * x[:, None] + b)).sum(1), ["no ReLU"]),
                      (lambda x, w, b, a, c: (c + (a * (w * x[:, None] + b)).sum(1)).clamp(min=0), ["after the sum"]),
                      (lambda x, w, b, a, c: c + (a * torch.relu(w * x[:, None] + b)), ["one per x"])):
        assert_hint(run(capsys, ex.check_relu_sum, {"my_relu_sum": fn}), *words)


# --------------------------------------------------------------------------- solutions mode
def test_a_rejected_or_missing_solution_fails_loudly(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("COURSE_SOLUTIONS", "1")
    monkeypatch.setattr(ex.core, "solutions_dir", lambda: tmp_path)  # where solution_code looks it up
    with pytest.raises(ex.SolutionRejected, match="no reference solution file"):
        ex.check_relu_sum({})
    (tmp_path / "lesson3-data-block.py").write_text("# %% my_relu_sum\nmy_relu_sum = lambda x, w, b, a, c: x\n"
                                                    "# %% MySquares\nMySquares = None\n")
    with pytest.raises(ex.SolutionRejected, match="rejected"):
        ex.check_relu_sum({})
    with pytest.raises(ex.SolutionRejected, match="did not define MySquares"):
        ex.check_dataset({})
    with pytest.raises(ex.SolutionRejected, match="no section `# %% my_databunch`"):
        ex.check_folder_databunch({})


def test_every_check_has_a_solution_and_a_docstring_naming_its_exercise():
    checks = [getattr(ex, n) for n in ex.__all__ if n.startswith("check_")]
    assert len(checks) == 14
    for check in checks:
        assert check.__doc__ and "exercise" in check.__doc__, check.__name__
    for nb in ("lesson3-planet", "lesson3-camvid", "lesson3-head-pose", "lesson3-imdb", "lesson3-data-block"):
        text = (ex.solutions_dir() / f"{nb}.py").read_text()
        assert text.count("# %% ") >= 3, nb


def test_valid_outputs_reads_one_batch_in_a_smoke_run(tiny_learner, monkeypatch):
    """A smoke run's exercise cells must not run the model over a whole full-size validation set."""
    monkeypatch.delenv("COURSE_SMOKE", raising=False)
    outs, targs = ex.valid_outputs(tiny_learner)
    assert len(outs) == len(targs) == len(tiny_learner.data.valid_ds) > tiny_learner.data.bs
    monkeypatch.setenv("COURSE_SMOKE", "1")
    outs, targs = ex.valid_outputs(tiny_learner)
    assert len(outs) == len(targs) == tiny_learner.data.bs
