"""The metric points of one run on their way into the store, written asynchronously.

`RunTracker` buffers points and, every few seconds, calls `MetricWriter.send`, which hands
them to MLflow's asynchronous logging (``MlflowClient.log_batch(..., synchronous=False)``)
and returns at once: MLflow's worker threads write them, so the learner thread never waits
on a locked SQLite store.  Each batch stays held here until its future reports it written; a
batch MLflow could not write (``database is locked`` past SQLite's 20 s busy timeout, a
server restarting) goes back into the buffer and is handed over again at the next send.
`flush` waits until everything is written, retrying transient failures with backoff for its
timeout (the `with_retry` rule), and keeps the points when it gives up.  So no point is
lost: the run's end flushes before it terminates the run, and `settle_stores` (``atexit``
and `core.ipc.procutil.exit_now`) writes what a writer that was never closed still holds before
settling the store.  A point is durable once `flush` returned; what a SIGKILL takes is what
was logged since the last send (as with synchronous writes) plus the batch in flight.

Fork (``os.fork``, multiprocessing's fork context; not `subprocess`, whose children exec at
once) needs two things.  The fork waits until no batch is in flight (`_quiesce_before_fork`):
a child forked while an MLflow worker thread is inside a SQLite write inherits SQLite's
in-process lock bookkeeping of a connection that does not exist there, and every write of
the child then fails with "database is locked" (seen in the fork test).  And MLflow's async
queue belongs to its store object, which MLflow caches per URI and the child inherits with
the queue's threads gone: the child gets fresh queues (`_reset_async_queues`), and writes
synchronously should that ever fail.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401 - registers its fork hook before ours (end of module)
import logging
import os
import random
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dqt.core.tracking.retry import TrackingError, first_line, is_transient, with_retry
from dqt.core.tracking.store import SETTLE_TIMEOUT_S, before_settle

if TYPE_CHECKING:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

MAX_METRICS_PER_BATCH = 1000  # mlflow.utils.validation: points per log_batch request
FORK_WAIT_S = 60.0  # how long a fork waits for batches in flight

_OPEN: weakref.WeakSet[MetricWriter] = weakref.WeakSet()  # writers not yet closed
_ASYNC_URIS: set[str] = set()  # stores whose MLflow async queue this process started
_ASYNC_BROKEN = False  # a forked child whose inherited queues could not be replaced: write synchronously


@dataclass
class _Batch:
    """Points handed to MLflow's async queue, held until their futures say written."""

    metrics: list[Metric]
    futures: list[Future]

    def error(self) -> BaseException | None:
        return next((f.exception() for f in self.futures if f.exception() is not None), None)


class MetricWriter:
    """Buffered points of run `run_id`, sent asynchronously (`asynchronous`) or in the caller's
    thread; `on_retry` hears every transient error absorbed.  One thread uses it."""

    def __init__(self, client: MlflowClient, run_id: str, uri: str, *, asynchronous: bool = True,
                 on_retry: Callable[[BaseException], None] | None = None) -> None:
        self.client, self.run_id, self.uri = client, run_id, uri
        self.asynchronous = asynchronous
        self.on_retry = on_retry or (lambda _exc: None)
        self.buffer: list[Metric] = []
        self.closed = False
        self._inflight: list[_Batch] = []
        self._pid = os.getpid()
        _OPEN.add(self)

    @property
    def pending(self) -> int:
        """Points not yet written: buffered, or handed over and not confirmed."""
        try:
            self._collect()
        except Exception:  # noqa: BLE001 - reported by the next send or flush
            pass
        return len(self.buffer) + sum(len(b.metrics) for b in self._inflight)

    def send(self, timeout_s: float) -> None:
        """Hand the buffer over and return (synchronous writers: `flush`)."""
        if not self._writes_async():
            self.flush(timeout_s)
            return
        self._collect()
        self._submit()

    def flush(self, timeout_s: float) -> None:
        """Write every point held and wait until MLflow confirms it; transient failures are
        retried with backoff for `timeout_s`, then `TrackingError` with the points kept; a
        permanent error propagates at once, the points kept too."""
        if not self._writes_async():
            self._write_here(timeout_s)
            return
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            error = self._submit() or self._collect(deadline)
            if not self.buffer and not self._inflight:
                return
            pause = delay * random.uniform(0.5, 1.5)
            if time.monotonic() + pause > deadline:
                why = first_line(error) if error is not None else "MLflow's writer did not answer"
                raise TrackingError(f"MLflow log metrics still failing after {timeout_s:.0f} s: {why}")
            time.sleep(pause)
            delay = min(delay * 2.0, 2.0)

    def close(self) -> None:
        self.closed = True
        _OPEN.discard(self)

    def drain(self, timeout_s: float) -> None:
        """What `settle_stores` does for a writer never closed: wait for its batches in flight,
        then write what is left in this thread (MLflow's workers may be gone at exit)."""
        if self.closed or self._pid != os.getpid() or not (self.buffer or self._inflight):
            return
        deadline = time.monotonic() + timeout_s
        try:
            self._collect(deadline)
        except Exception:  # noqa: BLE001 - its points are back in the buffer: written below
            pass
        for batch in self._inflight:  # unconfirmed: write again (the store ignores exact duplicates)
            self.buffer.extend(batch.metrics)
        self._inflight = []
        self._write_here(max(0.1, deadline - time.monotonic()))

    # ---- internals ----
    def _writes_async(self) -> bool:
        return self.asynchronous and not _ASYNC_BROKEN and self._pid == os.getpid()

    def _write_here(self, timeout_s: float) -> None:
        """Write the buffer in this thread, <= 1000 points a request; each leaves the buffer
        only once written."""
        while self.buffer:
            chunk = self.buffer[:MAX_METRICS_PER_BATCH]
            with_retry(lambda c=chunk: self.client.log_batch(self.run_id, metrics=c, synchronous=True),
                       "log metrics", timeout_s, on_retry=self.on_retry)
            del self.buffer[:len(chunk)]

    def _submit(self) -> BaseException | None:
        """Hand the buffer to MLflow's async queue, <= 1000 points a batch.  A transient
        refusal leaves the rest in the buffer and is returned; a permanent one raises."""
        while self.buffer:
            chunk = self.buffer[:MAX_METRICS_PER_BATCH]
            try:
                ops = self.client.log_batch(self.run_id, metrics=chunk, synchronous=False)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.on_retry(exc)
                return exc
            _ASYNC_URIS.add(self.uri)
            futures = getattr(ops, "_operation_futures", None)  # RunOperations keeps them private
            if futures is None:  # a future MLflow without them: wait here, still correct
                ops.wait()
                futures = []
            self._inflight.append(_Batch(chunk, list(futures)))
            del self.buffer[:len(chunk)]
        return None

    def _collect(self, deadline: float | None = None) -> BaseException | None:
        """Take the batches MLflow finished (waiting for the rest until `deadline`, if given):
        written ones are done, failed ones go back into the buffer.  Returns the last
        transient error; raises the first permanent one (its points back in the buffer too)."""
        if deadline is not None and self._inflight:
            wait([f for b in self._inflight for f in b.futures], timeout=max(0.0, deadline - time.monotonic()))
        transient: BaseException | None = None
        permanent: BaseException | None = None
        still: list[_Batch] = []
        for batch in self._inflight:
            if not all(f.done() for f in batch.futures):
                still.append(batch)
                continue
            error = batch.error()
            if error is None:
                continue
            self.buffer.extend(batch.metrics)
            if is_transient(error):
                self.on_retry(error)
                transient = error
                log.debug("MLflow log metrics: transient error, %d points kept: %s", len(batch.metrics), error)
            elif permanent is None:
                permanent = error
        self._inflight = still
        if permanent is not None:
            raise permanent
        return transient


def _drain_open() -> None:
    """`settle_stores` hook: every writer of this process not yet closed writes what it holds."""
    for writer in list(_OPEN):
        try:
            writer.drain(SETTLE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the next writer must still get its turn
            log.warning("MLflow run %s: %d metric points not written at exit: %s",
                        writer.run_id, len(writer.buffer), exc)


def _quiesce_before_fork() -> None:
    """Before fork: wait until this process's batches in flight are written (module docstring)."""
    pid = os.getpid()
    futures = [f for w in list(_OPEN) if w._pid == pid for b in w._inflight for f in b.futures]
    if futures:
        wait(futures, timeout=FORK_WAIT_S)


def _reset_async_queues() -> None:
    """After fork: give MLflow's cached stores fresh async queues (the inherited ones wait for
    threads that do not exist in the child); write synchronously if that is impossible."""
    global _ASYNC_BROKEN
    if not _ASYNC_URIS:
        return
    try:
        from mlflow.tracking._tracking_service.utils import _get_store
        from mlflow.utils.async_logging.async_logging_queue import AsyncLoggingQueue

        for uri in _ASYNC_URIS:
            store = _get_store(uri)
            if not hasattr(store, "_async_logging_queue"):
                raise AttributeError("MLflow's store has no _async_logging_queue")
            store._async_logging_queue = AsyncLoggingQueue(logging_func=store.log_batch)
    except Exception:  # noqa: BLE001 - a child must start; it just writes synchronously
        _ASYNC_BROKEN = True


before_settle(_drain_open)
# `before` hooks run in reverse order of registration, and concurrent.futures.thread's takes
# the lock every ThreadPoolExecutor.submit needs (MLflow's queue thread submits each batch):
# imported above, its hook runs after ours, once nothing is in flight.
os.register_at_fork(before=_quiesce_before_fork, after_in_child=_reset_async_queues)
