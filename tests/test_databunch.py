"""databunch: turning labelled, transformed items into batches."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from PIL import Image

from course_utils.vision import ImageList

# --- batches ------------------------------------------------------------------------------------------------
CPU = torch.device("cpu")


def _images(tmp_path, n: int = 6, folder: str = "img"):
    (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / folder / f"{i}.png")
    return tmp_path


def _from(tmp_path, labels, **kw):
    df = pd.DataFrame({"name": [str(i) for i in range(len(labels))], "label": labels})
    return ImageList.from_df(df, _images(tmp_path, len(labels)), folder="img", suffix=".png", **kw)


def test_fewer_training_items_than_a_batch_is_an_error(tmp_path):
    ll = _from(tmp_path, ["a", "b", "a"]).split_none().label_from_df("label").transform(size=8)
    with pytest.raises(ValueError, match="fewer than one batch"):
        ll.databunch(bs=8, num_workers=0, device=CPU)
