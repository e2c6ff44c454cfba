"""What a notebook shows: every figure drawn once and readable, and training progress that saves cleanly."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from course_utils import progress
from course_utils.vision.image import image_grid, wrap_title


# --- titles ----------------------------------------------------------------------------------------------
def test_wrap_title_breaks_multi_label_titles_after_a_separator():
    title = "pred: clear;primary;road;water;agriculture\ntrue: clear;primary\nloss 0.45"
    lines = wrap_title(title, 20).split("\n")
    assert all(len(line) <= 20 for line in lines)
    assert "".join(lines).replace(" ", "") == title.replace("\n", "").replace(" ", ""), "no tag is lost"
    assert wrap_title("clear;primary", 20) == "clear;primary", "short titles stay on one line"


def _title_boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]


def test_show_batch_titles_of_neighbouring_images_do_not_overlap(planet_data):
    """Multi-label titles are long; in a small figure they used to run into each other."""
    planet_data.show_batch(rows=2, figsize=(3.5, 3.5))
    boxes = _title_boxes(plt.gcf())
    assert len(boxes) >= 2
    overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    assert not overlaps, f"{len(overlaps)} pairs of titles overlap"


@pytest.mark.parametrize("n, kwargs, shape, size", [
    (5, {}, (3, 3), (7.5, 6.0)),  # show_batch: a square grid, the unused cells hidden
    (9, {}, (3, 3), (7.5, 6.0)),
    (5, {"fit_rows": True, "extra_height": 0.5}, (2, 3), (7.5, 4.5)),  # segmentation: only the rows used
    (4, {"cols": 3, "fit_rows": True}, (2, 3), (7.5, 4.0)),  # plot_top_losses: three columns
])
def test_image_grid_gives_the_first_n_axes_and_hides_the_rest(n, kwargs, shape, size):
    fig, axes = image_grid(n, (2.5, 2.0), **kwargs)
    try:
        assert len(axes) == n and len(fig.axes) == shape[0] * shape[1]
        assert axes[0].get_subplotspec().get_geometry()[:2] == shape
        assert [ax.axison for ax in fig.axes] == [True] * n + [False] * (len(fig.axes) - n)
        assert tuple(fig.get_size_inches()) == pytest.approx(size)
        assert tuple(image_grid(n, (2.5, 2.0), figsize=(4, 3), **kwargs)[0].get_size_inches()) == (4, 3)
    finally:
        plt.close("all")


# --- progress --------------------------------------------------------------------------------------------
class _FakeHandle:
    """Stands in for IPython's DisplayHandle: keeps what the output would show now."""

    def __init__(self):
        self.text, self.updates = "", 0

    def update(self, data, raw=False):
        self.text, self.updates = data["text/plain"], self.updates + 1


@pytest.fixture
def in_fake_notebook(monkeypatch):
    handles = []

    def fake_display(data, raw=False, display_id=False):
        handles.append(_FakeHandle())
        return handles[-1]

    import IPython.display
    monkeypatch.setattr(IPython.display, "display", fake_display)
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    return handles


def test_in_a_notebook_the_table_is_one_output_and_nothing_goes_to_stderr(tiny_learner, in_fake_notebook, capsys):
    tiny_learner.fit_one_cycle(2, 1e-2)
    out, err = capsys.readouterr()
    assert err == "", "a bar on stderr is saved in the notebook as stray lines between the table rows"
    assert "train_loss" not in out
    (handle,) = in_fake_notebook
    lines = handle.text.split("\n")
    assert lines[0].split()[:3] == ["epoch", "train_loss", "valid_loss"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2"], "the finished table, with the bar gone"
    assert handle.updates > 3, "the bar was drawn while training"


def test_in_a_terminal_the_table_is_printed(tiny_learner, capsys):
    tiny_learner.fit_one_cycle(2, 1e-2)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["epoch", "train_loss"]
    assert [line.split()[0] for line in out[1:3]] == ["1", "2"]
