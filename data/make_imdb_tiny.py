"""Generate `imdb_tiny`: a tiny synthetic stand-in for the IMDB movie-review datasets of lesson 3.

The real data are 100,000 reviews (`imdb.tgz`, 144 MB) and a 1,000-review `imdb_sample`. This script writes
a small look-alike in both on-disk formats:

    imdb_tiny/texts.csv                       label,text,is_valid  (imdb_sample's format; negative/positive)
    imdb_tiny/train/{pos,neg}/<id>_<rating>.txt   labelled reviews, rating 7-10 (pos) or 1-4 (neg)
    imdb_tiny/test/{pos,neg}/<id>_<rating>.txt    labelled reviews held out for validation
    imdb_tiny/unsup/<id>_0.txt                    unlabelled reviews (for the language model only)

Each review is put together from many sentence patterns and word choices: a neutral opening, several
opinions on aspects of the film (acting, script, music, ...), sometimes a concession ("the music was nice,
but ...") and a verdict. About 85% of the opinions agree with the review's label, so the sentiment is
spread over many words and phrases (no single keyword decides it) and a model must weigh them. Reviews
also carry the quirks the tokenizer handles: `<br /><br />` paragraph breaks, CAPITALS, "sooo", "!!!!".

Run from the repository root; it wipes and rewrites the output folder, and the same arguments always
give byte-identical files:

    python data/make_imdb_tiny.py
    python data/make_imdb_tiny.py --out /tmp/imdb_tiny
"""
import argparse
import csv
import shutil
from pathlib import Path

import numpy as np

SEED = 42
N_TRAIN, N_TEST, N_UNSUP, N_SAMPLE = 150, 100, 200, 200  # per class for train/test; total for unsup/sample
P_AGREE = 0.85

FILMS = ["this movie", "this film", "the film", "this picture", "the sequel", "this thriller", "this comedy",
         "this drama", "the remake", "this western", "this romance", "this horror flick"]
PEOPLE = ["the lead actor", "the heroine", "the villain", "the supporting cast", "the young star",
          "the director", "the old detective", "the whole cast", "the main couple", "the narrator"]
ASPECTS = ["acting", "script", "plot", "direction", "soundtrack", "music", "camera work", "dialogue",
           "ending", "pacing", "special effects", "story", "editing", "humour", "score", "final act"]
PLACES = ["a small town in Maine", "1920s Paris", "a space station", "a farm in Texas", "modern Tokyo",
          "a boarding school", "a sinking ship", "a haunted house", "the streets of Naples", "a desert island"]
ROLES = ["a retired cop", "two sisters", "a struggling painter", "a young soldier", "a lonely widower",
         "a group of students", "a jazz singer", "an unlucky thief", "a country doctor", "a stubborn teenager"]
WHEN = ["last weekend", "on a rainy Sunday", "with my sister", "on late night TV", "at a festival",
        "with some friends", "on a long flight", "after reading the book", "years ago", "on DVD"]

POS_ADJ = ["brilliant", "superb", "wonderful", "moving", "gripping", "excellent", "beautiful", "clever",
           "charming", "stunning", "delightful", "powerful", "fantastic", "memorable", "touching", "hilarious",
           "outstanding", "lovely", "terrific", "great", "awesome", "amazing"]
NEG_ADJ = ["dull", "awful", "tedious", "boring", "terrible", "clumsy", "lazy", "weak", "laughable",
           "forgettable", "dreadful", "painful", "pointless", "messy", "bland", "silly", "horrible", "poor",
           "stupid", "bad", "lame", "annoying"]
INTENS = ["really", "truly", "quite", "simply", "absolutely", "very", "rather", "so"]

POS_OPINION = [
    "The {aspect} was {adj}.", "I found the {aspect} {intens} {adj}.", "{Person} gives a {adj} performance.",
    "What a {adj} {aspect}!", "The {aspect} is {intens} {adj} and it kept me hooked.",
    "{Person} was perfect in every scene.", "I loved the {aspect}.", "The {aspect} made me smile.",
    "I was never bored for a second.", "Every scene felt alive and honest.", "The {aspect} is a real treat.",
    "It is one of the best films I have seen in years.", "{Person} steals the show.",
    "The {aspect} brought tears to my eyes.", "I enjoyed every minute of it.", "It is sooo {adj}!",
    "The {aspect} works beautifully.", "Everything about the {aspect} is {adj}.",
    "I {intens} liked {film} because the {aspect} was {adj}.", "I loved {film}, it was {adj}!",
]
NEG_OPINION = [
    "The {aspect} was {adj}.", "I found the {aspect} {intens} {adj}.", "{Person} gives a {adj} performance.",
    "What a {adj} {aspect}!", "The {aspect} is {intens} {adj} and I kept checking my watch.",
    "{Person} looked lost in every scene.", "I hated the {aspect}.", "The {aspect} made me cringe.",
    "I was bored after ten minutes.", "Nothing in it felt real or honest.", "The {aspect} is a mess.",
    "It is one of the worst films I have seen in years.", "{Person} cannot act at all.",
    "The {aspect} put me to sleep.", "I regretted every minute of it.", "It is sooo {adj}!",
    "The {aspect} never works.", "Everything about the {aspect} is {adj}.",
    "I {intens} disliked {film} because the {aspect} was {adj}.", "I hated {film}, it was {adj}!",
]
POS_VERDICT = ["Highly recommended!", "I would happily watch it again.", "A must see. 10/10.",
               "Go and see it!!!!", "It deserves every award it won.", "I will buy it on DVD for sure.",
               "Do not miss it.", "Simply a MASTERPIECE.", "My family loved it too.", "Worth every penny."]
NEG_VERDICT = ["Avoid it.", "I want my two hours back.", "A total waste of time. 1/10.",
               "Stay away!!!!", "It deserves to be forgotten.", "I nearly walked out.",
               "Do not bother.", "Simply AWFUL.", "My family hated it too.", "Not worth a penny."]
NEUTRAL = ["I saw {film} {when}.", "The story follows {role} in {place}.", "It runs a bit over two hours.",
           "It was made in {year}.", "I had heard a lot about {film} before watching it.",
           "The trailer gives away most of the plot.", "It is based on a novel.", "My expectations were average.",
           "{Person} also wrote the screenplay.", "It is set in {place}."]
POS_BUT = "The {aspect} was a little {neg}, but it hardly matters."
NEG_BUT = "The {aspect} was {pos}, but it could not save the film."


def _pick(rng, xs):
    return xs[int(rng.integers(len(xs)))]


def _fill(rng, template: str, pos: bool) -> str:
    adj = POS_ADJ if pos else NEG_ADJ
    s = template.format(aspect=_pick(rng, ASPECTS), adj=_pick(rng, adj), intens=_pick(rng, INTENS),
                        Person=_pick(rng, PEOPLE).capitalize(), film=_pick(rng, FILMS), when=_pick(rng, WHEN),
                        role=_pick(rng, ROLES), place=_pick(rng, PLACES), year=int(rng.integers(1950, 2020)),
                        neg=_pick(rng, NEG_ADJ), pos=_pick(rng, POS_ADJ))
    return s[0].upper() + s[1:]


def review(rng, pos: bool) -> str:
    """One review: neutral sentences, 3-6 opinions (most agreeing with `pos`), maybe a concession and a verdict;
    one in seven is a short one: an opinion or two and a verdict."""
    if rng.random() < 1 / 7:
        opinions = POS_OPINION if pos else NEG_OPINION
        sents = [_fill(rng, _pick(rng, opinions), pos) for _ in range(int(rng.integers(1, 3)))]
        return " ".join(sents + [_pick(rng, POS_VERDICT if pos else NEG_VERDICT)])
    sents = [_fill(rng, _pick(rng, NEUTRAL), pos) for _ in range(int(rng.integers(1, 3)))]
    for _ in range(int(rng.integers(3, 7))):
        agree = rng.random() < P_AGREE
        sents.append(_fill(rng, _pick(rng, POS_OPINION if agree == pos else NEG_OPINION), agree == pos))
    if rng.random() < 0.4:
        sents.insert(int(rng.integers(1, len(sents))), _fill(rng, POS_BUT if pos else NEG_BUT, pos))
    if rng.random() < 0.7:
        sents.append(_pick(rng, POS_VERDICT if pos else NEG_VERDICT))
    cut = int(rng.integers(2, len(sents)))
    sep = "<br /><br />" if rng.random() < 0.5 else " "
    return " ".join(sents[:cut]) + sep + " ".join(sents[cut:])


def rating(rng, pos: bool) -> int:
    return int(rng.integers(7, 11)) if pos else int(rng.integers(1, 5))


def write_folder(out: Path, rng) -> None:
    """train/ and test/ with pos/ and neg/, and unsup/, named <id>_<rating>.txt like IMDB."""
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        for label in ("neg", "pos"):
            folder = out / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                pos = label == "pos"
                (folder / f"{i}_{rating(rng, pos)}.txt").write_text(review(rng, pos), encoding="utf-8")
    (out / "unsup").mkdir()
    for i in range(N_UNSUP):
        (out / "unsup" / f"{i}_0.txt").write_text(review(rng, rng.random() < 0.5), encoding="utf-8")


def write_sample(out: Path, rng) -> None:
    """texts.csv as in imdb_sample: label (negative/positive), text, is_valid (the last 20%)."""
    with open(out / "texts.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["label", "text", "is_valid"])
        for i in range(N_SAMPLE):
            pos = rng.random() < 0.5
            w.writerow(["positive" if pos else "negative", review(rng, pos), i >= 0.8 * N_SAMPLE])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "imdb_tiny"))
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    write_folder(out, rng)
    write_sample(out, rng)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
