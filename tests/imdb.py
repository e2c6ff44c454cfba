"""A tiny IMDB-like folder (the lesson's layout) and the language-model and classifier DataBunches built on it,
for the text tests."""
from __future__ import annotations

from pathlib import Path

import torch

from course_utils.text import TextList

CPU = torch.device("cpu")
POS = ["A wonderful film, the acting was great.", "I loved it. Superb music and a clever plot!",
       "Great fun, I would watch it again and again."]
NEG = ["A boring film, the acting was awful.", "I hated it. Dull music and a silly plot!",
       "Terrible, I want my two hours back."]


def make_imdb_like(root: Path) -> Path:
    """IMDB's layout: train/{pos,neg}, test/{pos,neg}, unsup/ with <id>_<rating>.txt files of varied lengths."""
    for split, n in (("train", 8), ("test", 3)):
        for label, texts in (("pos", POS), ("neg", NEG)):
            (root / split / label).mkdir(parents=True)
            for i in range(n):
                words = " ".join([texts[i % 3]] * (1 + i % 4))  # 1-4 repeats: lengths vary
                (root / split / label / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(words)
    (root / "unsup").mkdir()
    for i in range(3):
        (root / "unsup" / f"{i}_0.txt").write_text(POS[i] + " " + NEG[i])
    (root / "other").mkdir()
    (root / "other" / "readme.txt").write_text("not a review")
    return root


def lm_data(path, bs=4, bptt=5):
    return (TextList.from_folder(path, min_freq=1).filter_by_folder(include=["train", "test", "unsup"])
            .split_by_rand_pct(0.2, seed=1).label_for_lm().databunch(bs=bs, bptt=bptt, device=CPU))


def clas_data(path, vocab, bs=4):
    return (TextList.from_folder(path, vocab=vocab).split_by_folder(valid="test")
            .label_from_folder(classes=["neg", "pos"]).databunch(bs=bs, device=CPU))
