"""Reference answers for the exercises at the end of nbs/lesson3-camvid.ipynb (for teachers; students: try first).

Each `# %% name` section is what a student would type into the answer cell of exercise `name`; with
COURSE_SOLUTIONS=1 the notebook's checks run these sections in the notebook's namespace instead of the student's
cells (course_utils/exercises/). Names such as `void_code`, `path` and `stage2_lrs` come from the notebook."""
# ruff: noqa: F821  (the names are the notebook's)

# %% my_acc_camvid
def my_acc_camvid(input, target):
    target = target.squeeze(1)        # (bs, 1, h, w) -> (bs, h, w)
    keep = target != void_code        # the labelled pixels only
    return (input.argmax(dim=1)[keep] == target[keep]).float().mean()


# %% my_is_valid
valid_names = set((path / "valid.txt").read_text().split())


def my_is_valid(x):
    return x.name in valid_names


# %% my_rates
n = len(learn.layer_groups)
first, last = stage2_lrs.start, stage2_lrs.stop  # 3e-3 / 400 and 3e-3 / 4
my_rates = [first * (last / first) ** (i / (n - 1)) for i in range(n)]
