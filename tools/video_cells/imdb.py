"""Lesson 3, IMDB (ULMFiT: a language model fine-tuned, then a sentiment classifier on its encoder): our
paraphrase of the code cells of course-v3 `nbs/dl1/lesson3-imdb.ipynb` at HEAD (349c604), the same API calls in
the same order, the notebook's comments left out. Changes: the import line; the Jupyter magics cell left out;
`untar_data` gives the bundled `data/imdb_tiny` for both URLs.IMDB_SAMPLE and URLs.IMDB (tiny mode); speed
settings: `pretrained=False` on both learners (no WikiText-103 weights can be downloaded here), a small AWD-LSTM
(`config=SMALL`, defined in SETUP as the notebook's tiny mode does: the lesson's 1152-wide one takes minutes per
epoch on a CPU) and 1 epoch where the lesson trains 10 or 2. SETUP also runs torch on one thread, as the
notebook's tiny mode does (a small LSTM is many times faster so on a busy CPU).

The video itself (November 2018, course-v3 at 73c15fe) typed a few older names at the same places; what each
does here is checked in tests/test_text_names.py:
  * `data = TextDataBunch.load(path)`, `TextClasDataBunch.load(path)`, `data_lm.save('tmp_lm')` then
    `TextLMDataBunch.load(path, 'tmp_lm', bs=bs)`: work (`.load` is an alias of `load_data`);
  * `random_split_by_pct(0.1)`: an error naming `split_by_rand_pct`;
  * `language_model_learner(data_lm, pretrained_model=URLs.WT103, drop_mult=0.3)`: an error saying to type
    `language_model_learner(data_lm, AWD_LSTM, drop_mult=0.3)` (`pretrained=True` loads WikiText-103);
  * `text_classifier_learner(data_clas, drop_mult=0.5)` (no arch): works, AWD_LSTM being the default;
  * `TextFilesList.from_folder(path)` (course-v3 of October 2018): an error saying to type `TextList.from_folder`.
"""
from video_cells import Skip  # noqa: F401  (the format's import; this lesson skips no cell)

TITLE = "lesson3-imdb"
SETUP = ("import numpy as _np\nimport torch as _torch\n_np.random.seed(0)\n_torch.set_num_threads(1)\n"
         "SMALL = dict(emb_sz=64, n_hid=128, n_layers=3)  # speed setting: a small AWD-LSTM")

CELLS = [
    "from course_utils.all import *",
    # the sample: one CSV of labelled reviews
    "path = untar_data(URLs.IMDB_SAMPLE)\npath.ls()",
    "df = pd.read_csv(path/'texts.csv')\ndf.head()",
    "df['text'][1]",
    "data_lm = TextDataBunch.from_csv(path, 'texts.csv')",
    "data_lm.save()",
    "data = load_data(path)",
    # tokenization and numericalization
    "data = TextClasDataBunch.from_csv(path, 'texts.csv')\ndata.show_batch()",
    "data.vocab.itos[:10]",
    "data.train_ds[0][0]",
    "data.train_ds[0][0].data[:10]",
    # the same with the data block API
    "data = (TextList.from_csv(path, 'texts.csv', cols='text')\n"
    "        .split_from_df(col=2)\n"
    "        .label_from_df(cols=0)\n"
    "        .databunch())",
    # the language model, on every review of the full dataset
    "bs=48",
    "path = untar_data(URLs.IMDB)\npath.ls()",
    "(path/'train').ls()",
    "data_lm = (TextList.from_folder(path)\n"
    "           .filter_by_folder(include=['train', 'test', 'unsup'])\n"
    "           .split_by_rand_pct(0.1)\n"
    "           .label_for_lm()\n"
    "           .databunch(bs=bs))\n"
    "data_lm.save('data_lm.pkl')",
    "data_lm = load_data(path, 'data_lm.pkl', bs=bs)",
    "data_lm.show_batch()",
    "learn = language_model_learner(data_lm, AWD_LSTM, drop_mult=0.3, pretrained=False, config=SMALL)",
    "learn.lr_find()",
    "learn.recorder.plot(skip_end=15)",
    "learn.fit_one_cycle(1, 1e-2, moms=(0.8,0.7))",
    "learn.save('fit_head')",
    "learn.load('fit_head');",
    "learn.unfreeze()",
    "learn.fit_one_cycle(1, 1e-3, moms=(0.8,0.7))",
    "learn.save('fine_tuned')",
    "learn.load('fine_tuned');",
    "TEXT = \"I liked this movie because\"\nN_WORDS = 40\nN_SENTENCES = 2",
    "print(\"\\n\".join(learn.predict(TEXT, N_WORDS, temperature=0.75) for _ in range(N_SENTENCES)))",
    "learn.save_encoder('fine_tuned_enc')",
    # the classifier, on the labelled reviews, with the language model's vocabulary
    "path = untar_data(URLs.IMDB)",
    "data_clas = (TextList.from_folder(path, vocab=data_lm.vocab)\n"
    "             .split_by_folder(valid='test')\n"
    "             .label_from_folder(classes=['neg', 'pos'])\n"
    "             .databunch(bs=bs))\n"
    "\n"
    "data_clas.save('data_clas.pkl')",
    "data_clas = load_data(path, 'data_clas.pkl', bs=bs)",
    "data_clas.show_batch()",
    "learn = text_classifier_learner(data_clas, AWD_LSTM, drop_mult=0.5, pretrained=False, config=SMALL)\n"
    "learn.load_encoder('fine_tuned_enc')",
    "learn.lr_find()",
    "learn.recorder.plot()",
    "learn.fit_one_cycle(1, 2e-2, moms=(0.8,0.7))",
    "learn.save('first')",
    "learn.load('first');",
    "learn.freeze_to(-2)\nlearn.fit_one_cycle(1, slice(1e-2/(2.6**4),1e-2), moms=(0.8,0.7))",
    "learn.save('second')",
    "learn.load('second');",
    "learn.freeze_to(-3)\nlearn.fit_one_cycle(1, slice(5e-3/(2.6**4),5e-3), moms=(0.8,0.7))",
    "learn.save('third')",
    "learn.load('third');",
    "learn.unfreeze()\nlearn.fit_one_cycle(1, slice(1e-3/(2.6**4),1e-3), moms=(0.8,0.7))",
    "learn.predict(\"I really loved that movie, it was awesome!\")",
]
