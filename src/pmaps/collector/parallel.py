"""Ordered parallel map: reads spend their time in the kernel without the GIL, so two threads help."""
from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int) -> Iterator[R]:
    """fn over items on `workers` threads, at most `ahead` in flight, results in order."""
    # Imported here: concurrent.futures costs start-up time that a one-batch process never needs.
    from concurrent.futures import ThreadPoolExecutor

    window: collections.deque[Future[R]] = collections.deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="pmaps-read") as ex:
        try:
            for item in items:
                window.append(ex.submit(fn, item))
                if len(window) >= ahead:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for f in window:
                f.cancel()


def background(fn: Callable[[], R]) -> Callable[[], R]:
    """Start fn() on a thread now; the returned callable waits for its result (or re-raises)."""
    import threading

    box: list[R] = []
    errs: list[BaseException] = []

    def work() -> None:
        try:
            box.append(fn())
        except BaseException as e:  # re-raised by the caller
            errs.append(e)

    t = threading.Thread(target=work, name="pmaps-background", daemon=True)
    t.start()

    def result() -> R:
        t.join()
        if errs:
            raise errs[0]
        return box[0]

    return result
