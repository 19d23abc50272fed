"""Ordered parallel map: reads spend their time in the kernel without the GIL, so two threads help."""
from __future__ import annotations

import collections
import os
from _queue import SimpleQueue  # queue.py's own, without queue.py's imports (heapq); a builtin: microseconds
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Job:
    """One item in flight: its result or error, and a lock held until a worker is done with it."""

    __slots__ = ("cancelled", "done", "error", "item", "value")

    def __init__(self, item: object, done: Any) -> None:
        self.item = item
        self.value: object = None
        self.error: BaseException | None = None
        self.cancelled = False
        self.done = done


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int) -> Iterator[R]:
    """fn over items on `workers` threads, at most `ahead` in flight, results in order. When the
    caller stops early (or fn raises), the items not started are dropped and the threads joined.

    Plain threads and a queue, not concurrent.futures: its import (and logging's, which it pulls
    in) is ~5 ms of start-up, a hundredth of `pmaps top`. _queue's SimpleQueue is queue's own,
    without queue.py's imports (heapq, ~1.5 ms)."""
    import threading

    jobs: SimpleQueue[_Job | None] = SimpleQueue()

    def work() -> None:
        while (job := jobs.get()) is not None:
            if not job.cancelled:
                try:
                    job.value = fn(job.item)  # type: ignore[arg-type]
                except BaseException as e:  # re-raised in the caller's thread
                    job.error = e
            job.done.release()

    threads = [threading.Thread(target=work, name=f"pmaps-read-{i}", daemon=True) for i in range(max(workers, 1))]
    for t in threads:
        t.start()
    window: collections.deque[_Job] = collections.deque()

    def result(job: _Job) -> R:
        job.done.acquire()
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[return-value]

    try:
        for item in items:
            lock = threading.Lock()
            lock.acquire()
            job = _Job(item, lock)
            window.append(job)
            jobs.put(job)
            if len(window) >= ahead:
                yield result(window.popleft())
        while window:
            yield result(window.popleft())
    finally:
        for job in window:
            job.cancelled = True
        for _ in threads:
            jobs.put(None)
        for t in threads:
            t.join()


def reader_threads() -> int:
    """Reader threads for a process's batches: two, or one when pmaps may run on a single CPU
    (taskset, a cpuset). Two threads on one CPU read no faster, and one preempted inside the
    kernel's pagemap walk keeps holding the target's mmap_lock for the other's timeslice: with the
    readers pinned to one CPU, the target's mmap/munmap p99.9 was 1.2 ms with two and 0.11-0.81 ms
    with one (bench/bench_impact.py, 8 GiB target)."""
    return min(2, len(os.sched_getaffinity(0)))


def _start_thread(work: Callable[[], None]) -> Callable[[], None]:
    """work() on a new daemon thread; the returned callable joins it."""
    import threading

    t = threading.Thread(target=work, name="pmaps-background", daemon=True)
    t.start()
    return t.join


def background(fn: Callable[[], R]) -> Callable[[], R]:
    """Start fn() on a thread now; the returned callable waits for its result (or re-raises). Where
    pmaps may run on one CPU only (reader_threads), fn runs here and now instead: a thread there only
    takes turns with the caller's reads, and preempts one inside a scan that holds a target's
    mmap_lock (traced: the target's mmap/munmap stalled 2.5-5 ms, once a run)."""
    box: list[R] = []
    errs: list[BaseException] = []

    def work() -> None:
        try:
            box.append(fn())
        except BaseException as e:  # re-raised by the caller
            errs.append(e)

    if reader_threads() > 1:
        join = _start_thread(work)
    else:
        work()
        join = lambda: None

    def result() -> R:
        join()
        if errs:
            raise errs[0]
        return box[0]

    return result


SWITCH_WHILE_READING = 0.0005  # seconds: the GIL switch interval while on_thread's thread reads


def on_thread(items: Iterator[T]) -> Iterator[T]:
    """`items` made on a thread started now (reads that spend their time in the kernel, without
    the GIL), handed over as they come; an error raised there is raised here.

    While the thread reads, the GIL's switch interval is 0.5 ms (restored when it is done): the
    thread takes the GIL back after each chunk of reads, and with the default 5 ms it waited that
    long each time the caller was busy in Python (smaps at 65,000 VMAs: 0.23-0.29 s instead of
    0.19-0.20 s beside a busy caller)."""
    import sys
    import threading

    box: SimpleQueue[tuple[bool, object]] = SimpleQueue()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, SWITCH_WHILE_READING))

    def work() -> None:
        try:
            for x in items:
                box.put((True, x))
        except BaseException as e:  # re-raised by the consumer
            box.put((False, e))
        else:
            box.put((False, None))
        finally:
            sys.setswitchinterval(switch)

    thread = threading.Thread(target=work, name="pmaps-stream", daemon=True)
    thread.start()

    def take() -> Iterator[T]:
        while True:
            more, x = box.get()
            if not more:
                thread.join()
                if x is not None:
                    assert isinstance(x, BaseException)
                    raise x
                return
            yield x  # type: ignore[misc]

    return take()
