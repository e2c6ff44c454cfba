"""`ImageList.check()`: every unreadable image reported at once, before training."""
import pytest


def test_check_reports_every_unreadable_image_at_once(tmp_path):
    import numpy as np
    from PIL import Image

    from course_utils.vision import ImageList

    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"ok_{i}.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    good = tmp_path / "ok_0.png"
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[:40])
    items = ImageList.from_folder(tmp_path)
    problems = items.check()
    assert sorted(p.name for p, _ in problems) == ["empty.png", "text.jpg", "truncated.png"]
    with pytest.raises(ValueError, match="3 of 6 images cannot be read"):
        items.check(strict=True)
