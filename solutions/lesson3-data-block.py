"""Reference answers for the exercises at the end of nbs/lesson3-data-block.ipynb (for teachers; students: try
first).

Each `# %% name` section is what a student would type into the answer cell of exercise `name`; with
COURSE_SOLUTIONS=1 the notebook's checks run these sections in the notebook's namespace instead of the student's
cells (course_utils/exercises/). `ImageList`, `get_transforms`, `Dataset` and `torch` come from the notebook."""
# ruff: noqa: F821  (the names are the notebook's)

# %% my_databunch
def my_databunch(folder):
    return (ImageList.from_folder(folder)
            .split_by_folder()
            .label_from_folder()
            .transform(get_transforms(do_flip=False), size=16)
            .databunch(bs=4))


# %% MySquares
class MySquares(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i >= self.n:
            raise IndexError(i)
        return torch.tensor([float(i)]), torch.tensor([float(i * i)])


# %% my_relu_sum
def my_relu_sum(x, w, b, a, c):
    return c + (a * torch.relu(w * x[:, None] + b)).sum(dim=1)
