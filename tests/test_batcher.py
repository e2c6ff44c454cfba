"""course_utils/serve/batcher.py: concurrent inputs share model passes, each caller gets its own rows."""
import threading
import time

import pytest
import torch

from course_utils.serve.batcher import Batcher


def _model():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5))
    return m.eval()


def _in_threads(n, target):
    results, errors = [None] * n, []
    start = threading.Barrier(n)

    def work(i):
        start.wait()
        try:
            results[i] = target(i)
        except Exception as e:  # noqa: BLE001  (collected and asserted on)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results, errors


def test_concurrent_inputs_are_batched_and_each_caller_gets_its_own_output():
    model, sizes = _model(), []

    def run(x):
        sizes.append(len(x))
        time.sleep(0.02)  # a model pass long enough for the others to queue behind it
        return model(x)

    batcher = Batcher(run, max_batch=32, wait_ms=20)
    xs = [torch.randn(1, 3, 16, 16) for _ in range(16)]

    def one(i):
        with batcher.request() as ticket:
            return batcher(xs[i], ticket)

    results, errors = _in_threads(16, one)
    batcher.close()
    assert not errors
    with torch.no_grad():
        for x, out in zip(xs, results):
            torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-5)
    assert sum(sizes) == 16 and max(sizes) > 1, sizes
    assert batcher.batches == len(sizes) < 16 and batcher.mean_batch > 1


def test_a_lone_request_does_not_wait_for_companions():
    """Nobody else on the way: straight through, whatever `wait_ms` says."""
    batcher = Batcher(lambda x: x * 2, wait_ms=3000)
    with batcher.request() as ticket:
        start = time.perf_counter()
        out = batcher(torch.ones(1, 2), ticket)
        took = time.perf_counter() - start
    batcher.close()
    assert torch.equal(out, torch.full((1, 2), 2.0))
    assert took < 1.5, f"a lone request waited {took:.2f} s"


def test_the_worker_waits_for_a_request_still_preparing_its_input():
    """A request counted on its way (its photo still decoding) joins the batch of one that arrived first."""
    sizes = []
    batcher = Batcher(lambda x: sizes.append(len(x)) or x, wait_ms=2000)

    def one(i):
        with batcher.request() as ticket:
            time.sleep(0.3 * i)  # the second one takes 0.3 s to prepare
            return batcher(torch.full((1, 1), float(i)), ticket)

    results, errors = _in_threads(2, one)
    batcher.close()
    assert not errors and sizes == [2]
    assert [float(r) for r in results] == [0.0, 1.0]


def test_inputs_of_different_shapes_are_run_apart_and_max_batch_is_kept():
    sizes = []

    def run(x):
        sizes.append(tuple(x.shape))
        time.sleep(0.01)
        return x.sum(dim=tuple(range(1, x.dim())))

    batcher = Batcher(run, max_batch=3, wait_ms=200)

    def one(i):
        with batcher.request() as ticket:
            return batcher(torch.ones(1, 2 + i % 2), ticket)

    results, errors = _in_threads(12, one)
    batcher.close()
    assert not errors
    assert [float(r) for r in results] == [2.0 + i % 2 for i in range(12)]
    assert all(s[0] <= 3 for s in sizes) and {s[1] for s in sizes} == {2, 3}


def test_an_error_reaches_every_caller_of_that_batch_and_the_next_batch_runs():
    calls = []

    def run(x):
        calls.append(len(x))
        if len(calls) == 1:
            raise ValueError("the model's output is not finite")
        return x

    batcher = Batcher(run)
    with pytest.raises(ValueError, match="not finite"):
        batcher(torch.ones(1, 1))
    assert torch.equal(batcher(torch.ones(1, 1)), torch.ones(1, 1))
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher(torch.ones(1, 1))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(lambda x: x, max_batch=0)
    with pytest.raises(ValueError, match="wait_ms"):
        Batcher(lambda x: x, wait_ms=float("nan"))
