"""Batched serving: concurrent requests share one pass through the model.

The web app answers each request in a thread of its own. Each thread prepares its input (decoding, resizing and
normalising the photo happen in parallel), then hands its batch of one to the `Batcher`, whose single worker
thread owns the model: it takes every input waiting, stacks those of the same shape into one batch, runs the
model once and gives each thread its own row back. A model is not thread-safe, so one thread running it is
also what keeps it correct.

When nobody else is waiting, a request goes straight through: the worker waits for companions only while other
requests are known to be on their way (counted from the moment they arrive, before their photo is decoded),
and never longer than `wait_ms`. So a lone request pays nothing, and under load a batch forms on its own: while
the model runs one batch, the next requests queue up for the following one.

    batcher = Batcher(run, max_batch=32, wait_ms=5)
    with batcher.request() as ticket:   # counts this request as on its way
        x = prepare(item)               # (1, ...) tensor
        out = batcher(x, ticket)        # (1, ...) output row, computed in a batch
    batcher.close()
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import torch

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name

_STOP = object()


class Batcher:
    """Runs `run(batch) -> outputs` for inputs sent from many threads, gathered into batches (see the module)."""

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], max_batch: int = 32, wait_ms: float = 5.0):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}.")
        if not wait_ms >= 0:
            raise ValueError(f"wait_ms must be 0 or more milliseconds, not {wait_ms}.")
        self.run, self.max_batch, self.wait = run, max_batch, wait_ms / 1000
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0  # requests on their way (inside `request()`), whether or not queued yet
        self._count = threading.Lock()
        self.batches = self.items = 0  # how many model passes, and inputs through them (for the load test)
        self._worker = threading.Thread(target=self._serve, name="model-batcher", daemon=True)
        self._worker.start()

    @contextlib.contextmanager
    def request(self) -> Iterator["_Ticket"]:
        """Count one request as on its way, from now until its output is ready (pass the ticket to the call), so
        the worker knows a companion is coming while its input is prepared, and waits for it (at most `wait_ms`)."""
        ticket = _Ticket()
        self._add(1)
        try:
            yield ticket
        finally:
            self._settle(ticket)

    def __call__(self, x: torch.Tensor, ticket: "_Ticket | None" = None) -> torch.Tensor:
        """The model's output for `x` (a batch of one or a few), computed together with other threads' inputs."""
        if not self._worker.is_alive():
            raise RuntimeError("The batcher was closed; the app is shutting down.")
        done: Future = Future()
        self._queue.put((x, done, ticket))
        return done.result()

    def close(self) -> None:
        """Stop the worker after the inputs already queued."""
        self._queue.put(_STOP)
        self._worker.join(timeout=10)

    def _add(self, n: int) -> None:
        with self._count:
            self._pending += n

    def _settle(self, ticket: "_Ticket | None") -> None:
        """This request is no longer on its way (answered, or failed before it reached the model)."""
        if ticket is None:
            return
        with self._count:
            if ticket.counted:
                ticket.counted = False
                self._pending -= 1

    @property
    def mean_batch(self) -> float:
        """Inputs per model pass so far (1.0 = no batching happened)."""
        return self.items / self.batches if self.batches else 0.0

    # --- the worker ---------------------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._gather([first])
            for group in _same_shape(batch):
                self._run(group)
            if stop:
                return

    def _gather(self, batch: list) -> tuple[list, bool]:
        """`batch` plus every input queued now, and more while companions are on their way (up to `wait_ms`)."""
        deadline = time.monotonic() + self.wait
        while len(batch) < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                with self._count:
                    expected = self._pending
                left = deadline - time.monotonic()
                if len(batch) >= expected or left <= 0:
                    break
                try:
                    nxt = self._queue.get(timeout=min(left, 0.001))
                except queue.Empty:
                    continue
            if nxt is _STOP:
                return batch, True
            batch.append(nxt)
        return batch, False

    def _run(self, group: list) -> None:
        xs = [x for x, _, _ in group]
        try:
            with torch.no_grad():  # grad mode is per thread: this worker's own
                out = self.run(torch.cat(xs) if len(xs) > 1 else xs[0])
        except BaseException as e:  # every waiting request gets the error, none hangs
            for _, done, ticket in group:
                self._settle(ticket)
                done.set_exception(e)
            return
        self.batches += 1
        self.items += len(xs)
        start = 0
        for x, done, ticket in group:
            self._settle(ticket)
            done.set_result(out[start:start + len(x)])
            start += len(x)


def _same_shape(batch: list) -> list[list]:
    """The inputs grouped by shape (beyond the batch dimension), in arrival order: only equal shapes stack."""
    groups: dict[tuple, list] = {}
    for entry in batch:
        x = entry[0]
        groups.setdefault((tuple(x.shape[1:]), x.dtype), []).append(entry)
    return list(groups.values())


class _Ticket:
    """One request's place in the count of requests on their way."""
    counted = True
