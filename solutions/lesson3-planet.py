"""Reference answers for the exercises at the end of nbs/lesson3-planet.ipynb (for teachers; students: try first).

Each `# %% name` section is what a student would type into the answer cell of exercise `name`; with
COURSE_SOLUTIONS=1 the notebook's checks run these sections in the notebook's namespace instead of the student's
cells (course_utils/exercises/). Names such as `accuracy_thresh`, `probs0` and `lr_curve_lrs` come from the
notebook."""
# ruff: noqa: F821  (the names are the notebook's)

# %% my_acc_02
def my_acc_02(inp, targ):
    return accuracy_thresh(inp, targ, thresh=0.2)


# %% my_f2
pred = probs0 > 0.2                       # the tags predicted at the lesson's threshold
tp = (pred & target0.bool()).sum().item()  # predicted and true
precision = tp / pred.sum().item()          # of the predicted tags, the share that are true
recall = tp / target0.sum().item()          # of the true tags, the share that were predicted
my_f2 = 5 * precision * recall / (4 * precision + recall)

# %% my_slice
# The loss climbs for good from about 2e-1 on (read off the plot); 10x before is about 2e-2. The right end is
# stage 1's rate divided by 5, 5e-3, and the left end may be at most a tenth of it: 2e-2 is far above, so the
# first layers get a tenth of the right end.
right = lr_curve_stage1 / 5
my_slice = slice(min(2e-2, right / 10), right)
