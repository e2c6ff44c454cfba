"""Lesson 3 (IMDB): learners for a language model and a text classifier (ULMFiT).

`language_model_learner` fine-tunes an AWD-LSTM to predict the next word of our texts, generates text
with `predict`, and saves its encoder; `text_classifier_learner` loads that encoder under a new head
and is trained with gradual unfreezing.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..callbacks import CALLBACK_ORDER, Callback
from ..learner import Learner
from ..metrics import accuracy
from ..persist import ModelSpec, atomic_save, load_weights, safe_load
from .data import TextClasDataBunch, TextLMDataBunch
from .models import AWD_LSTM, clas_layer_groups, language_model, lm_layer_groups, load_wt103, text_classifier_model
from .tokenize import BOS, TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK

__all__ = ["RNNLearner", "LanguageLearner", "language_model_learner", "text_classifier_learner"]


class RNNRegularizer(Callback):
    """Resets the recurrent state at each epoch and before validation, and adds activation regularisation
    (AR, alpha * mean(h^2): keep activations small) and temporal AR (TAR, beta * mean((h_t - h_{t-1})^2):
    keep them smooth over time) of the last LSTM's output to the loss that is backpropagated."""
    order = CALLBACK_ORDER["RNNRegularizer"]

    def __init__(self, alpha: float = 2.0, beta: float = 1.0):
        self.alpha, self.beta = alpha, beta

    def before_epoch(self):
        self.learn.model.reset()

    def before_validate(self):
        self.learn.model.reset()

    def before_backward(self):
        h = self.learn.encoder.last_output
        if h is None:
            return
        extra = self.alpha * h.float().pow(2).mean()
        if h.shape[1] > 1:
            extra = extra + self.beta * (h[:, 1:] - h[:, :-1]).float().pow(2).mean()
        self.learn.loss_to_backward = self.learn.loss_to_backward + extra


class RNNLearner(Learner):
    """A Learner for an AWD-LSTM model: encoder save/load, and state resets when freezing changes."""

    @property
    def encoder(self) -> AWD_LSTM:
        """The AWD-LSTM inside the model (what `save_encoder` saves)."""
        return next(m for m in self.model.modules() if isinstance(m, AWD_LSTM))

    def freeze_to(self, n: int) -> None:
        """Train only layer groups n onwards (a new optimizer, a fresh recurrent state)."""
        super().freeze_to(n)
        self.model.reset()

    def save_encoder(self, name: str) -> Path:
        """Save the AWD-LSTM encoder's weights to `path/models/name.pth` (for `load_encoder`)."""
        f = self.path / self.model_dir / f"{name}.pth"
        atomic_save({k: v.cpu() for k, v in self.encoder.state_dict().items()}, f)
        return f

    def load_encoder(self, name: str) -> "RNNLearner":
        """Load an encoder saved by `save_encoder` (e.g. the fine-tuned language model's), then `freeze()`."""
        f = self.path / self.model_dir / f"{name}.pth"
        if not f.is_file():
            raise FileNotFoundError(f"No saved encoder {f}; call save_encoder('{name}') on the language model first.")
        state = safe_load(f, map_location=self.data.device)
        load_weights(self.encoder, state, f, "Build the classifier data with the language model's vocabulary "
                     "(`vocab=data_lm.vocab`) and the same AWD_LSTM config.", what="encoder weights")
        self.freeze()
        return self


class LanguageLearner(RNNLearner):
    """A language-model Learner; `predict` writes text."""

    def predict(self, text: str, n_words: int = 1, temperature: float = 1.0, min_p: float | None = None,
                no_unk: bool = True) -> str:
        """`text` followed by `n_words` sampled tokens. Each next token is drawn from the model's probabilities
        raised to the power 1/temperature (below 1: safer, more repetitive text; above 1: wilder)."""
        self.model.eval()
        self.model.reset()
        ids = self.data.numericalize_text(text)
        new = []
        with torch.no_grad():
            x = ids
            for _ in range(n_words):
                probs = self.model(x)[0, -1].float().softmax(-1)
                if no_unk:
                    probs[self.data.vocab.stoi[UNK]] = 0.0
                if min_p is not None and (probs >= min_p).any():
                    probs[probs < min_p] = 0.0
                probs = probs.pow(1 / temperature)
                nxt = int(torch.multinomial(probs / probs.sum(), 1))
                new.append(nxt)
                x = ids.new_tensor([[nxt]])
        self.model.reset()
        return decode_spec_tokens(self.data.vocab.textify(ids[0].tolist() + new).split(" "))


def decode_spec_tokens(tokens: list[str]) -> str:
    """Tokens back to readable text: `xxmaj w` -> `W`, `xxup w` -> `W`, `xxrep n c` -> `ccc..`, `xxwrep n w`
    -> `w w ..`; `xxbos` is dropped."""
    res, i = [], 0
    while i < len(tokens):
        t = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if t in (TK_REP, TK_WREP) and i + 2 < len(tokens) and nxt.isdigit():
            w = tokens[i + 2]
            res.append(w * int(nxt) if t == TK_REP else " ".join([w] * int(nxt)))
            i += 3
        elif t in (TK_MAJ, TK_UP):
            if nxt:  # a marker at the very end has no word to apply to
                res.append(nxt.capitalize() if t == TK_MAJ else nxt.upper())
            i += 2
        else:
            if t != BOS:
                res.append(t)
            i += 1
    return " ".join(res)


def _arch_check(arch, pretrained_model, builder: str) -> None:
    """Only AWD_LSTM; and `pretrained_model=` (the video's fastai, v1.0.2x) is refused with what to type instead."""
    if pretrained_model is not None:
        example = "language_model_learner(data_lm, AWD_LSTM, drop_mult=0.3)" if builder == "lm" else \
            "text_classifier_learner(data_clas, AWD_LSTM, drop_mult=0.5)"
        raise TypeError("`pretrained_model=` (e.g. URLs.WT103) is an argument of the video's fastai (v1.0.2x); "
                        f"here the WikiText-103 weights are loaded by `pretrained=True`, the default: type "
                        f"`{example}` (or pretrained=False to start from random weights).")
    if arch is not AWD_LSTM:
        raise ValueError(f"Only AWD_LSTM is available as a text architecture, not {arch!r}.")


def language_model_learner(data: TextLMDataBunch, arch: type = AWD_LSTM, *, pretrained: bool = True, metrics=None,
                           wd: float = 1e-2, config: dict | None = None, drop_mult: float = 1.0,
                           pretrained_fnames: tuple[Path, Path] | None = None, pretrained_model=None,
                           **kwargs) -> LanguageLearner:
    """An AWD-LSTM language model for `data` (lesson 3: `drop_mult=0.3`). With `pretrained`, it starts from the
    WikiText-103 model (downloaded once), its embedding remapped to our vocabulary, and is frozen to the
    last layer group (the embedding and decoder). `arch` may be left out, as in the video (AWD_LSTM is the
    only one); the video's `pretrained_model=URLs.WT103` is refused with what to type instead."""
    _arch_check(arch, pretrained_model, "lm")
    spec = ModelSpec("language_model", len(data.vocab), {"config": dict(config) if config else None,
                                                         "drop_mult": drop_mult}, learner="LanguageLearner")
    model = language_model(spec)
    return _awd_lstm_learner(LanguageLearner, data, model, lm_layer_groups(model), pretrained, pretrained_fnames,
                             metrics, wd=wd, model_spec=spec, **kwargs)


def text_classifier_learner(data: TextClasDataBunch, arch: type = AWD_LSTM, *, pretrained: bool = True,
                            metrics=None, wd: float = 1e-2, config: dict | None = None, drop_mult: float = 1.0,
                            pretrained_fnames: tuple[Path, Path] | None = None, bptt: int = 70,
                            max_len: int = 20 * 70, lin_ftrs: list[int] | None = None,
                            ps: float | list[float] | None = None, pretrained_model=None, **kwargs) -> RNNLearner:
    """An AWD-LSTM classifier for `data` (lesson 3: `drop_mult=0.5`), read `bptt` tokens at a time, with the
    concat-pooling head. Load the fine-tuned language model's encoder with `load_encoder`. `arch` may be left
    out, as in the video (AWD_LSTM is the only one)."""
    _arch_check(arch, pretrained_model, "clas")
    spec = ModelSpec("text_classifier", data.c, {"vocab_sz": len(data.vocab),
                                                 "config": dict(config) if config else None, "drop_mult": drop_mult,
                                                 "bptt": bptt, "max_len": max_len, "lin_ftrs": lin_ftrs, "ps": ps})
    model = text_classifier_model(spec)
    return _awd_lstm_learner(RNNLearner, data, model, clas_layer_groups(model), pretrained, pretrained_fnames,
                             metrics, wd=wd, model_spec=spec, **kwargs)


def _awd_lstm_learner(cls: type, data, model, layer_groups, pretrained: bool, pretrained_fnames, metrics,
                      **kwargs) -> RNNLearner:
    """What both builders share: WT103 weights if `pretrained` (then frozen to the last group), accuracy by
    default, the AR/TAR regulariser."""
    if pretrained:
        load_wt103(model, data.vocab.itos, pretrained_fnames)
    learn = cls(data, model, metrics=[accuracy] if metrics is None else metrics, layer_groups=layer_groups,
                callbacks=[RNNRegularizer()], **kwargs)
    if pretrained:
        learn.freeze()
    return learn

