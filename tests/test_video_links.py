"""Links into the lesson video: each one opens the moment it shows, and each lesson notebook links its moments.

A link has one form, `[▶ 9:51](https://youtu.be/PW2HKkzdkKY?t=591)` (h:mm:ss past an hour), so a student reading
the time and a student clicking the link land in the same place. The times come from the lecture notes of the
video (the moments below); a link to any other second is a typo or a guess."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VIDEO_ID = "PW2HKkzdkKY"
VIDEO = f"https://youtu.be/{VIDEO_ID}"

# every moment of the lesson-3 video that the lecture notes time, and what happens there
MOMENTS = {
    "0:00": "web apps students built", "3:36": "it's just a page", "9:51": "Planet", "11:02": "Kaggle download",
    "14:49": "multi-label, the CSV", "17:05": "why a data block API", "18:30": "Dataset", "20:37": "DataLoader",
    "21:59": "DataBunch", "23:56": "data block examples: MNIST", "26:01": "Planet CSV", "26:38": "CamVid masks",
    "27:41": "COCO boxes", "29:35": "back to Planet", "35:59": "ResNet-50", "37:23": "metrics, argmax, data.c",
    "39:17": "partial", "42:01": "Q: learn from a wrong deployed prediction", "44:00": "Q: block order",
    "47:39": "Q: frames from video", "48:50": "choosing rates", "49:24": "discriminative learning rates",
    "50:30": "Kaggle top 10%", "51:01": "progressive resizing", "56:31": "segmentation, CamVid",
    "1:00:26": "Q: can lr_find return a number", "1:03:06": "CamVid steps", "1:04:01": "_P masks",
    "1:04:35": "open_mask", "1:05:56": "CamVid DataBunch", "1:06:13": "valid.txt", "1:07:33": "tfm_y=True",
    "1:08:11": "bs=8", "1:09:04": "U-Net", "1:34:00": "head pose", "1:36:27": "regression",
    "1:37:41": "hold out person 13", "1:38:58": "MSE loss", "1:41:08": "IMDB preview",
    "1:46:50": "Q: normalise with the pretrained statistics", "1:56:47": "Q: tokenization, unknown words",
    "1:59:09": "Q: 4 channels", "2:01:20": "wrap-up: the same steps", "2:03:00": "non-linearity, what a net is",
    "2:03:30": "homework: your own data",
}

# the moments each lesson notebook (and the README's lesson map) must link, at least
REQUIRED = {
    "nbs/lesson3-planet.ipynb": ["9:51", "11:02", "14:49", "17:05", "29:35", "35:59", "37:23", "39:17", "42:01",
                                "48:50", "50:30", "51:01"],
    "nbs/lesson3-data-block.ipynb": ["18:30", "20:37", "21:59", "23:56", "26:01", "26:38", "27:41", "44:00",
                                     "2:01:20", "2:03:00"],
    "nbs/lesson3-camvid.ipynb": ["56:31", "1:04:01", "1:04:35", "1:05:56", "1:06:13", "1:07:33", "1:08:11",
                                 "1:09:04"],
    "nbs/lesson3-head-pose.ipynb": ["1:34:00"],
    "nbs/lesson3-imdb.ipynb": ["1:41:08"],
    "README.md": ["9:51", "18:30", "29:35", "56:31", "1:34:00", "1:41:08", "2:03:00"],
}

# any link into this video that names a moment, in any spelling (youtu.be or youtube.com, ?t= or &t=)
ANY_TIMED_LINK = re.compile(rf"(?:youtu\.be/|youtube\.com/watch\?v=){VIDEO_ID}[^)\s\"'>]*?[?&]t=")
# the one form a timed link may take
LINK = re.compile(rf"\[▶ ([0-9:]+)\]\({re.escape(VIDEO)}\?t=(\d+)\)")


def display(seconds: int) -> str:
    """How a moment is written beside its link: m:ss, or h:mm:ss past an hour."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def to_seconds(shown: str) -> int:
    """The second a shown moment (m:ss or h:mm:ss) is at."""
    total = 0
    for part in shown.split(":"):
        total = total * 60 + int(part)
    return total


def text_of(path: Path) -> str:
    """The text a student reads: a notebook's cells (markdown and code), or a markdown file."""
    if path.suffix == ".ipynb":
        return "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text(encoding="utf-8"))["cells"])
    return path.read_text(encoding="utf-8")


def link_problems(text: str) -> list[str]:
    """Every timed link into the video that is not `[▶ shown](VIDEO?t=seconds)` with `shown` equal to
    `seconds`, written the canonical way, and one of the lecture notes' moments."""
    problems = []
    good_spans = []
    for m in LINK.finditer(text):
        shown, seconds = m.group(1), int(m.group(2))
        good_spans.append(m.span())
        if display(seconds) != shown:
            problems.append(f"{m.group(0)} shows {shown} but opens the video at {display(seconds)} "
                            f"(t={seconds}): make the time shown and t= agree (t={to_seconds(shown)} is "
                            f"{display(to_seconds(shown))}; times are written m:ss, or h:mm:ss past an hour)")
        elif shown not in MOMENTS:
            problems.append(f"{m.group(0)}: {shown} is not a moment of the lecture notes (MOMENTS in this test); "
                            "link only timed moments, never a guessed one")
    for m in ANY_TIMED_LINK.finditer(text):
        if not any(start <= m.start() < end for start, end in good_spans):
            line = text[text.rfind("\n", 0, m.start()) + 1: text.find("\n", m.end())]
            problems.append(f"a timed video link not in the form [▶ m:ss]({VIDEO}?t=SECONDS): {line.strip()[:160]}")
    return problems


def linked_moments(text: str) -> set[str]:
    """The moments (as shown) that `text` links."""
    return {m.group(1) for m in LINK.finditer(text)}


DOCUMENTS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "nbs").glob("*.ipynb")) + ["README.md"]


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_every_video_link_opens_the_moment_it_shows(doc):
    problems = link_problems(text_of(ROOT / doc))
    assert not problems, f"{doc}:\n" + "\n".join(problems)


@pytest.mark.parametrize("doc", sorted(REQUIRED))
def test_each_lesson_links_its_moments(doc):
    text = text_of(ROOT / doc)
    missing = [t for t in REQUIRED[doc] if t not in linked_moments(text)]
    assert not missing, (f"{doc} has no link to the video at {', '.join(missing)}: add "
                         + ", ".join(f"[▶ {t}]({VIDEO}?t={to_seconds(t)})" for t in missing)
                         + " to the section the video covers there")


@pytest.mark.parametrize("doc", ["nbs/lesson3-planet.ipynb", "nbs/lesson3-data-block.ipynb"])
def test_notebook_opens_with_the_video_address(doc):
    first = json.loads((ROOT / doc).read_text(encoding="utf-8"))["cells"][0]
    assert first["cell_type"] == "markdown" and VIDEO in "".join(first["source"]), (
        f"{doc}: the first cell should give the video's address, {VIDEO}")


def test_the_moments_table_is_written_canonically():
    assert all(display(to_seconds(t)) == t for t in MOMENTS)


@pytest.mark.parametrize("text, problem", [
    (f"[▶ 9:51]({VIDEO}?t=592)", "shows 9:51 but opens the video at 9:52"),
    (f"[▶ 1:00:26]({VIDEO}?t=3620)", "shows 1:00:26 but opens the video at 1:00:20"),
    (f"[▶ 60:26]({VIDEO}?t=3626)", "shows 60:26 but opens the video at 1:00:26"),
    (f"[▶ 09:51]({VIDEO}?t=591)", "shows 09:51"),
    (f"[▶ 9:52]({VIDEO}?t=592)", "9:52 is not a moment of the lecture notes"),
    (f"see {VIDEO}?t=591 for this", "not in the form"),
    (f"[at 9:51]({VIDEO}?t=591)", "not in the form"),
    (f"[▶ 9:51](https://www.youtube.com/watch?v={VIDEO_ID}&t=591)", "not in the form"),
])
def test_a_wrong_link_is_caught(text, problem):
    problems = link_problems(text)
    assert len(problems) == 1 and problem in problems[0], problems


def test_right_links_pass():
    text = f"[▶ 9:51]({VIDEO}?t=591) and [▶ 1:00:26]({VIDEO}?t=3626), and the video itself: {VIDEO}"
    assert link_problems(text) == []
    assert linked_moments(text) == {"9:51", "1:00:26"}
