"""databunch: turning labelled, transformed items into batches."""
from __future__ import annotations

import pytest
from helpers import CPU, labelled_images

# --- batches ------------------------------------------------------------------------------------------------

def test_fewer_training_items_than_a_batch_is_an_error(tmp_path):
    ll = labelled_images(tmp_path, ["a", "b", "a"]).split_none().label_from_df("label").transform(size=8)
    with pytest.raises(ValueError, match="fewer than one batch"):
        ll.databunch(bs=8, num_workers=0, device=CPU)
