"""Reference answers for the exercises at the end of nbs/lesson3-imdb.ipynb (for teachers; students: try first).

Each `# %% name` section is what a student would type into the answer cell of exercise `name`; with
COURSE_SOLUTIONS=1 the notebook's checks run these sections in the notebook's namespace instead of the student's
cells (course_utils/exercises/). `learn` is the notebook's classifier."""
# ruff: noqa: F821  (the names are the notebook's)

# %% my_tokens
# "I LOVED this movie!!!! Really."
my_tokens = ["xxbos", "i", "xxup", "loved", "this", "movie", "xxrep", "4", "!", "xxmaj", "really", "."]


# %% my_numericalize
def my_numericalize(tokens, vocab):
    return [vocab.stoi.get(t, 0) for t in tokens]  # 0 is xxunk


# %% my_rates
n = len(learn.layer_groups)
my_rates = [1e-2 / 2.6 ** (n - 1 - i) for i in range(n)]  # each group 2.6x less than the next
