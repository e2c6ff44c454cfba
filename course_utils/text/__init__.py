"""Text: tokenizing, the data block chain for texts, AWD-LSTM and the ULMFiT learners (lesson 3's imdb)."""
from ..data_block import load_data
from .data import Text, TextClasDataBunch, TextDataBunch, TextList, TextLMDataBunch
from .learner import LanguageLearner, RNNLearner, language_model_learner, text_classifier_learner
from .models import AWD_LSTM, awd_lstm_clas_config, awd_lstm_lm_config
from .tokenize import SPECIAL_TOKENS, Tokenizer, Vocab
from .v1_names import TextFileList, TextFilesList, TextSplitData

__all__ = ["TextList", "Text", "TextDataBunch", "TextClasDataBunch", "TextLMDataBunch", "load_data",
           "LanguageLearner", "RNNLearner", "language_model_learner", "text_classifier_learner",
           "AWD_LSTM", "awd_lstm_clas_config", "awd_lstm_lm_config", "SPECIAL_TOKENS", "Tokenizer", "Vocab",
           "TextFileList", "TextFilesList", "TextSplitData"]
