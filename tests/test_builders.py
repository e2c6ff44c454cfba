"""The four learner builders share one signature: (data, arch, *, pretrained, metrics, wd, ...), the same names
with the same defaults for the same things, and a CNN head built from a list of hidden sizes like the text one."""
import inspect

import pytest
import torch.nn as nn

from course_utils.text import language_model_learner, text_classifier_learner
from course_utils.vision import cnn_learner, models, unet_learner

BUILDERS = [cnn_learner, unet_learner, language_model_learner, text_classifier_learner]
SHARED = {"pretrained": True, "metrics": None, "wd": 1e-2}


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_every_builder_takes_data_and_arch_then_keywords_only(builder):
    params = list(inspect.signature(builder).parameters.values())
    assert [p.name for p in params[:2]] == ["data", "arch"]
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:2]) and params[0].default is params[0].empty
    # `arch` is required, except for text, whose one architecture is the default so that the video's
    # `text_classifier_learner(data_clas, drop_mult=0.5)` (typed before `arch` existed) still runs
    assert params[1].default is params[1].empty or params[1].default.__name__ == "AWD_LSTM"
    rest = [p for p in params[2:] if p.kind is not p.VAR_KEYWORD]
    assert rest and all(p.kind is p.KEYWORD_ONLY for p in rest), [p.name for p in rest if p.kind is not p.KEYWORD_ONLY]
    defaults = {p.name: p.default for p in rest}
    assert {k: defaults.get(k, "missing") for k in SHARED} == SHARED


def test_the_head_options_have_one_type_in_both_builders_that_take_them():
    cnn, clas = (inspect.signature(b).parameters for b in (cnn_learner, text_classifier_learner))
    for name in ("lin_ftrs", "ps"):
        assert cnn[name].annotation == clas[name].annotation and cnn[name].default is clas[name].default is None


def test_a_builder_refuses_a_positional_option(planet_data):
    with pytest.raises(TypeError):
        cnn_learner(planet_data, models.resnet18, False)


def test_cnn_head_takes_a_list_of_hidden_sizes_and_one_dropout_per_layer(planet_data):
    learn = cnn_learner(planet_data, models.resnet18, pretrained=False, lin_ftrs=[64, 32], ps=[0.1, 0.2, 0.3])
    head = learn.model[1]
    assert [m.out_features for m in head if isinstance(m, nn.Linear)] == [64, 32, planet_data.c]
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.1, 0.2, 0.3]
    default = cnn_learner(planet_data, models.resnet18, pretrained=False).model[1]
    assert [m.out_features for m in default if isinstance(m, nn.Linear)] == [512, planet_data.c]
    assert [m.p for m in default if isinstance(m, nn.Dropout)] == [0.25, 0.5]  # the lesson's head


def test_a_dropout_list_of_the_wrong_length_is_refused_before_training(planet_data):
    with pytest.raises(ValueError, match="ps lists 1 dropout"):
        cnn_learner(planet_data, models.resnet18, pretrained=False, lin_ftrs=[64], ps=[0.1])
