"""databunch: turning labelled, transformed items into batches."""
from __future__ import annotations

import pytest
import torch
from helpers import CPU, labelled_images

# --- batches ------------------------------------------------------------------------------------------------

def test_fewer_training_items_than_a_batch_is_an_error(tmp_path):
    ll = labelled_images(tmp_path, ["a", "b", "a"]).split_none().label_from_df("label").transform(size=8)
    with pytest.raises(ValueError, match="fewer than one batch"):
        ll.databunch(bs=8, num_workers=0, device=CPU)


def test_a_loader_batch_is_normalised_in_place_to_exactly_what_encode_gives(planet_src):
    """Batches straight from a loader are normalised in place (no second batch in memory); any other batch given
    to `process_batch` is left as it was."""
    from course_utils.vision import get_transforms, imagenet_stats
    for workers in (0, 2):
        data = planet_src.transform(get_transforms(), size=16).databunch(bs=4, num_workers=workers, device=CPU)
        raw = [x.clone() for x, _ in data.valid_dl]
        data.normalize(imagenet_stats)
        for x, (normed, _) in zip(raw, data.valid_dl):
            assert torch.equal(normed, data.norm.encode(x))
    x = raw[0].clone()
    out, _ = data.process_batch(x, torch.zeros(len(x)))
    assert torch.equal(x, raw[0]) and not torch.equal(out, x)  # not from a loader: x untouched
    ints = torch.ones(2, 3, 4, 4, dtype=torch.uint8)
    out, _ = data.process_batch(ints, torch.zeros(2), fresh=True)  # not a float batch: a new one, not in place
    assert out.is_floating_point() and torch.equal(ints, torch.ones_like(ints))
