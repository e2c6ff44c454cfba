"""Lesson 3 (IMDB): the AWD-LSTM, its language-model decoder and classifier head, and the
WikiText-103 pretrained weights (ULMFiT).

AWD-LSTM = an embedding and three stacked LSTMs, regularised with several kinds of dropout:
whole words dropped from the embedding, one dropout mask per sequence ("locked") on the inputs
and between layers, and DropConnect on each LSTM's hidden-to-hidden weights ("weight drop").
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from ..download import DATASETS, download_dataset
from ..persist import ModelSpec, load_weights, safe_load

__all__ = ["AWD_LSTM", "awd_lstm_lm_config", "awd_lstm_clas_config"]

# The lesson's sizes and dropouts (those of the library in the lesson video); `drop_mult` scales every *_p.
awd_lstm_lm_config = dict(emb_sz=400, n_hid=1152, n_layers=3, pad_token=1, output_p=0.1, hidden_p=0.15,
                          input_p=0.25, embed_p=0.02, weight_p=0.2)
awd_lstm_clas_config = dict(emb_sz=400, n_hid=1152, n_layers=3, pad_token=1, output_p=0.4, hidden_p=0.3,
                            input_p=0.4, embed_p=0.05, weight_p=0.5)

WT103_FWD_URL = DATASETS["wt103"].sources[0].url  # the address is the registry's (course_utils/download.py)


class RNNDropout(nn.Module):
    """Locked (variational) dropout: one mask per sequence, the same at every time step."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (bs, seq_len, features)
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask


def embedding_dropout(embed: nn.Embedding, words: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Embed `words`, dropping whole words of the vocabulary (rows of the matrix) with probability p."""
    w = embed.weight
    if training and p > 0:
        w = w * (w.new_empty(w.shape[0], 1).bernoulli_(1 - p) / (1 - p))
    return F.embedding(words, w, embed.padding_idx)


class WeightDropLSTM(nn.Module):
    """A one-layer LSTM with DropConnect on its hidden-to-hidden weights.

    Each training forward draws a dropped copy of `weight_hh_l0` and runs the LSTM with it through
    `torch.func.functional_call`: the parameter itself is never overwritten, so the optimizer, the
    state dict and cuDNN see an ordinary nn.LSTM."""

    def __init__(self, n_in: int, n_hid: int, weight_p: float):
        super().__init__()
        self.module = nn.LSTM(n_in, n_hid, batch_first=True)
        self.weight_p = weight_p

    def forward(self, x: torch.Tensor, hidden):
        if not self.training or self.weight_p == 0:
            return self.module(x, hidden)
        w = F.dropout(self.module.weight_hh_l0, self.weight_p, training=True)
        return functional_call(self.module, {"weight_hh_l0": w}, (x, hidden))


class AWD_LSTM(nn.Module):
    """Embedding -> embedding dropout -> locked input dropout -> n_layers weight-dropped LSTMs with locked
    dropout between them. The last layer outputs `emb_sz` features, so a decoder can share the embedding.
    The state carries over from one batch to the next (detached); `reset()` forgets it."""

    def __init__(self, vocab_sz: int, emb_sz: int, n_hid: int, n_layers: int, pad_token: int = 1,
                 hidden_p: float = 0.2, input_p: float = 0.6, embed_p: float = 0.1, weight_p: float = 0.5):
        super().__init__()
        self.n_layers, self.embed_p = n_layers, embed_p
        self.encoder = nn.Embedding(vocab_sz, emb_sz, padding_idx=pad_token)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        with torch.no_grad():
            self.encoder.weight[pad_token].zero_()
        sizes = [emb_sz] + [n_hid] * (n_layers - 1) + [emb_sz]
        self.rnns = nn.ModuleList(WeightDropLSTM(sizes[i], sizes[i + 1], weight_p) for i in range(n_layers))
        self.input_dp = RNNDropout(input_p)
        self.hidden_dps = nn.ModuleList(RNNDropout(hidden_p) for _ in range(n_layers - 1))
        self.hidden = None
        self.last_output = None  # the last layer's output of the latest batch, for AR/TAR

    def reset(self) -> None:
        """Forget the carried state (a new text, or a batch size change)."""
        self.hidden = None

    def forward(self, words: torch.Tensor) -> torch.Tensor:  # words: (bs, seq_len) -> (bs, seq_len, emb_sz)
        if self.hidden is not None and self.hidden[0][0].shape[1] != words.shape[0]:
            self.reset()
        x = self.input_dp(embedding_dropout(self.encoder, words, self.embed_p, self.training))
        new_hidden = []
        for i, rnn in enumerate(self.rnns):
            x, h = rnn(x, None if self.hidden is None else self.hidden[i])
            new_hidden.append(tuple(t.detach() for t in h))  # truncated backprop through time
            if i < self.n_layers - 1:
                x = self.hidden_dps[i](x)
        self.hidden, self.last_output = new_hidden, x
        return x


class LinearDecoder(nn.Module):
    """Language-model head: locked dropout, then a linear layer to the vocabulary whose weight *is* the
    embedding matrix (tied: one vector per word serves for reading and for predicting it)."""

    def __init__(self, n_out: int, n_hid: int, output_p: float, tie_encoder: nn.Embedding | None = None):
        super().__init__()
        self.decoder = nn.Linear(n_hid, n_out)
        nn.init.zeros_(self.decoder.bias)
        if tie_encoder is not None:
            self.decoder.weight = tie_encoder.weight
        self.output_dp = RNNDropout(output_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.output_dp(x))


class SequentialRNN(nn.Sequential):
    """An nn.Sequential whose `reset()` resets every part that carries state."""

    def reset(self) -> None:
        """Forget the recurrent state."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset"):
                m.reset()


class MultiBatchEncoder(nn.Module):
    """Runs the encoder over a long text `bptt` tokens at a time (the state carries from piece to piece)
    and keeps the outputs of the pieces in the last `max_len` tokens (earlier pieces run without gradient).
    Returns (outputs, mask), mask being True at padding."""

    def __init__(self, bptt: int, max_len: int, module: AWD_LSTM, pad_idx: int = 1):
        super().__init__()
        self.bptt, self.max_len, self.module, self.pad_idx = bptt, max_len, module, pad_idx

    def reset(self) -> None:
        self.module.reset()

    def forward(self, words: torch.Tensor):
        self.module.reset()
        sl, outs = words.shape[1], []
        for i in range(0, sl, self.bptt):
            keep = i + self.bptt > sl - self.max_len
            with torch.set_grad_enabled(keep and torch.is_grad_enabled()):
                out = self.module(words[:, i:i + self.bptt])
            if keep:
                outs.append(out)
        out = torch.cat(outs, dim=1)
        return out, words[:, -out.shape[1]:] == self.pad_idx


class PoolingLinearClassifier(nn.Module):
    """Classifier head: concat pooling [last step, max, mean] over the real (not padding) positions,
    then BN -> dropout -> linear blocks, ReLU between them."""

    def __init__(self, sizes: list[int], drops: list[float]):
        super().__init__()
        layers = []
        for i, (n_in, n_out, p) in enumerate(zip(sizes[:-1], sizes[1:], drops)):
            layers += [nn.BatchNorm1d(n_in), nn.Dropout(p), nn.Linear(n_in, n_out)]
            if i < len(sizes) - 2:
                layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, inp) -> torch.Tensor:
        out, mask = inp
        keep = (~mask).unsqueeze(-1)
        last = out[:, -1]  # front padding: the last position is always a real token
        mx = out.masked_fill(~keep, float("-inf")).max(dim=1).values
        mean = (out * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)
        return self.layers(torch.cat([last, mx, mean], dim=1))


def _config(base: dict, config: dict | None, drop_mult: float) -> dict:
    """The default config updated with `config`, every dropout multiplied by `drop_mult`."""
    unknown = set(config or {}) - set(base)
    if unknown:
        raise ValueError(f"Unknown AWD_LSTM settings {sorted(unknown)}; the settings are {sorted(base)}.")
    cfg = {**base, **(config or {})}
    return {k: v * drop_mult if k.endswith("_p") else v for k, v in cfg.items()}


def get_language_model(vocab_sz: int, config: dict | None = None, drop_mult: float = 1.0) -> SequentialRNN:
    """AWD-LSTM + tied linear decoder over `vocab_sz` tokens."""
    cfg = _config(awd_lstm_lm_config, config, drop_mult)
    output_p = cfg.pop("output_p")
    encoder = AWD_LSTM(vocab_sz, **cfg)
    return SequentialRNN(encoder, LinearDecoder(vocab_sz, cfg["emb_sz"], output_p, tie_encoder=encoder.encoder))


def get_text_classifier(vocab_sz: int, n_class: int, config: dict | None = None, drop_mult: float = 1.0,
                        bptt: int = 70, max_len: int = 20 * 70, lin_ftrs: list[int] | None = None,
                        ps: float | list[float] | None = None) -> SequentialRNN:
    """AWD-LSTM read in `bptt` pieces + the concat-pooling head (3*emb_sz -> 50 -> n_class). `ps` are the
    dropouts before the head's later linear layers (one value: the same for each); the first is the config's
    `output_p`."""
    cfg = _config(awd_lstm_clas_config, config, drop_mult)
    output_p = cfg.pop("output_p")
    lin_ftrs = lin_ftrs or [50]
    ps = [ps] * len(lin_ftrs) if isinstance(ps, (int, float)) else ps or [0.1]
    encoder = MultiBatchEncoder(bptt, max_len, AWD_LSTM(vocab_sz, **cfg), pad_idx=cfg["pad_token"])
    head = PoolingLinearClassifier([3 * cfg["emb_sz"]] + lin_ftrs + [n_class], [output_p] + ps)
    return SequentialRNN(encoder, head)


def language_model(spec: ModelSpec) -> SequentialRNN:
    """The language model `language_model_learner` built, from its spec (outputs: the vocabulary); what
    `load_learner` rebuilds."""
    return get_language_model(spec.n_out, spec.options["config"], spec.options["drop_mult"])


def text_classifier_model(spec: ModelSpec) -> SequentialRNN:
    """The classifier `text_classifier_learner` built, from its spec (outputs: the classes); what `load_learner`
    rebuilds."""
    o = spec.options
    return get_text_classifier(o["vocab_sz"], spec.n_out, o["config"], o["drop_mult"], o["bptt"], o["max_len"],
                               o["lin_ftrs"], o["ps"])


def lm_layer_groups(model: SequentialRNN) -> list[nn.Module]:
    """One group per LSTM, then embedding + decoder (4 groups for 3 layers): `freeze()` trains only the
    last group, i.e. the embedding, which must learn the words WikiText-103 never saw."""
    enc, dec = model[0], model[1]
    return [*enc.rnns, nn.ModuleList([enc.encoder, dec])]


def clas_layer_groups(model: SequentialRNN) -> list[nn.Module]:
    """Embedding, each LSTM, then the head (5 groups for 3 layers): gradual unfreezing goes head first."""
    enc = model[0].module
    return [enc.encoder, *enc.rnns, model[1]]


# --- WikiText-103 pretrained weights ------------------------------------------------------------------
def wt103_files(folder: Path | None = None) -> tuple[Path, Path]:
    """(weights .pth, itos .pkl) of the WikiText-103 forward model (`WT103_FWD_URL`) in `folder`; by default
    the registry's `wt103` entry, downloaded and extracted into `models_dir()/wt103-fwd/` the first time."""
    folder = Path(folder) if folder is not None else download_dataset("wt103")
    pths, pkls = sorted(folder.rglob("*.pth")), sorted(folder.rglob("*.pkl"))
    if not (pths and pkls):
        raise FileNotFoundError(f"{folder} should hold the WT103 weights (a .pth file) and vocabulary (a .pkl file); "
                                f"delete the folder and run again to download {WT103_FWD_URL} afresh.")
    return pths[0], pkls[0]


class _ListOfStringsUnpickler(pickle.Unpickler):
    """The WT103 vocabulary is a pickled list of strings: refuse anything else (a pickle can run code)."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a vocabulary file")


def read_itos(f: Path) -> list[str]:
    """The token list of a WT103 `.pkl` vocabulary file."""
    with open(f, "rb") as fh:
        itos = _ListOfStringsUnpickler(fh).load()
    if not (isinstance(itos, list) and all(isinstance(w, str) for w in itos)):
        raise ValueError(f"{f} is not a vocabulary (a pickled list of strings).")
    return itos


def convert_weights(wgts: dict, old_itos: list[str], new_itos: list[str]) -> dict:
    """WT103 weights as a state dict of our language model, over our vocabulary.

    Each of our tokens takes its WT103 embedding row and decoder bias; tokens WT103 never saw take the mean
    row and mean bias. The dropped copy of each hidden-to-hidden weight (and of the embedding) is dropped:
    the raw weight is the real parameter."""
    if "model" in wgts and isinstance(wgts["model"], dict):
        wgts = wgts["model"]
    enc, bias = wgts["0.encoder.weight"], wgts["1.decoder.bias"]
    old = {w: i for i, w in enumerate(old_itos)}
    rows = torch.tensor([old.get(w, -1) for w in new_itos])
    found = rows >= 0
    new_enc = enc.mean(0).repeat(len(new_itos), 1)
    new_bias = bias.mean().repeat(len(new_itos))
    new_enc[found], new_bias[found] = enc[rows[found]], bias[rows[found]]
    res = {}
    for k, v in wgts.items():
        if k.endswith("encoder_dp.emb.weight") or k.endswith(".module.weight_hh_l0"):
            continue
        res[k.replace("weight_hh_l0_raw", "module.weight_hh_l0")] = v
    res["0.encoder.weight"], res["1.decoder.weight"], res["1.decoder.bias"] = new_enc, new_enc.clone(), new_bias
    return res


def load_wt103(model: SequentialRNN, itos: list[str], fnames: tuple[Path, Path] | None = None) -> None:
    """Load the WikiText-103 language model into `model` (a language model, or a classifier: then only its
    encoder), remapped to our vocabulary `itos`."""
    wf, vf = fnames or wt103_files()
    sd = convert_weights(safe_load(wf, map_location="cpu"), read_itos(vf), itos)
    target = model
    if isinstance(model[0], MultiBatchEncoder):  # a classifier: only the encoder is pretrained
        target, sd = model[0], {f"module.{k[2:]}": v for k, v in sd.items() if k.startswith("0.")}
    load_weights(target, sd, wf, "They need the lesson's AWD_LSTM sizes ("
                 f"{awd_lstm_lm_config['emb_sz']}/{awd_lstm_lm_config['n_hid']}/{awd_lstm_lm_config['n_layers']}): "
                 "remove `config=` or use pretrained=False.", what="WT103 weights")
