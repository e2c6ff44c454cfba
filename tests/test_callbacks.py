"""course_utils/callbacks.py: the callback protocol's conventions, and the loop state callbacks share."""
import importlib
import inspect
import pkgutil

import course_utils
from course_utils.callbacks import CALLBACK_ORDER, Callback
from course_utils.learner import Learner, ValidSums


def _callback_classes():
    for info in pkgutil.walk_packages(course_utils.__path__, "course_utils."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Callback) and cls.__module__ == module.__name__:
                yield cls


def test_every_callback_of_the_package_takes_its_order_from_the_one_table():
    """A callback's place among the others is read in one table (CALLBACK_ORDER), not in seven files."""
    classes = list(_callback_classes())
    assert len(classes) >= 10
    for cls in classes:
        key = cls.__name__.lstrip("_")
        assert key in CALLBACK_ORDER, f"{cls.__module__}.{cls.__name__} is missing from CALLBACK_ORDER"
        assert cls.order == CALLBACK_ORDER[key], f"{cls.__name__}.order is not CALLBACK_ORDER[{key!r}]"
    assert not set(CALLBACK_ORDER) - {c.__name__.lstrip("_") for c in classes}, "CALLBACK_ORDER names a class " \
        "that no longer exists"


def test_the_loop_state_is_declared_and_set_before_the_first_fit(tiny_learner):
    """Every attribute the loop and its callbacks share is annotated on Learner and exists right after
    construction, so a callback can read any of them at any event."""
    declared = inspect.get_annotations(Learner)
    assert {"xb", "yb", "pred", "loss", "loss_to_backward", "valid_sums", "epoch", "n_epochs", "training",
            "amp_dtype", "skipped_steps", "fit_callbacks", "epoch_result"} <= set(declared)
    for name in declared:
        assert name in vars(tiny_learner), f"Learner.{name} is declared but not set in __init__"


def test_a_fit_and_a_validation_create_no_undeclared_attribute(tiny_learner):
    """Nothing the loop or the learner's callbacks write is outside the declared state (or `__init__`'s)."""
    before = set(vars(tiny_learner))
    tiny_learner.fit(1, 1e-3)
    tiny_learner.validate()
    tiny_learner.get_preds()
    assert set(vars(tiny_learner)) == before


def test_valid_sums_round_trip_through_the_list_a_collective_sum_takes():
    sums = ValidSums(10.0, 5.0, [3.0, 4.0])
    assert ValidSums.from_list(sums.as_list()) == sums
    assert ValidSums.from_list([a + b for a, b in zip(sums.as_list(), sums.as_list())]) == ValidSums(20, 10, [6, 8])


def test_validate_outside_a_fit_uses_the_learners_own_callbacks_not_the_last_fits(tiny_learner):
    """The LR finder of the last fit must not see a later validation (it would stop it as a divergence)."""
    seen = []

    class Spy(Callback):
        def after_batch(self):
            seen.append(self.learn.training)

    spy = Spy()
    tiny_learner.fit(1, 1e-3, callbacks=[spy])
    n = len(seen)
    tiny_learner.validate()
    assert len(seen) == n and spy in tiny_learner.fit_callbacks


def test_a_dropped_learner_frees_its_model_at_once_not_at_the_next_garbage_collection(colour_data):
    """Callbacks point back to their learner weakly: after `del learn` (or `learn = ...` again in a notebook) the
    model, its gradients and the optimizer state are freed right away, even with the cyclic collector off."""
    import gc
    import weakref

    from course_utils.vision import cnn_learner
    learn = cnn_learner(colour_data, "resnet18", pretrained=False, metrics=[])
    learn.fit(1, 1e-3, progress=False)
    learn.lr_find(num_it=2)
    model, opt = weakref.ref(learn.model), weakref.ref(learn.opt)
    assert all(cb.learn is learn for cb in learn.callbacks)
    gc.disable()
    try:
        del learn
        assert model() is None and opt() is None
    finally:
        gc.enable()
