"""Forward passes on several threads at once, each with one intra-op thread."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import TypeVar

__all__ = ["run_in_parallel"]

Job = TypeVar("Job")


def run_in_parallel(
    jobs: Sequence[Job], workers: int, run: Callable[[Job], None], finished: Callable[[Job], None]
) -> None:
    """``run(job)`` for every job on ``workers`` threads, taken in order; ``finished(job)`` on this thread.

    Each worker takes the next job when it is free, so jobs sorted longest
    first balance well. The first error is raised here once the jobs already
    running have ended; the jobs not yet started are dropped.
    """
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qwen-rerank") as pool:
        futures: dict[Future[None], Job] = {pool.submit(run, job): job for job in jobs}
        try:
            for future in as_completed(futures):
                future.result()
                finished(futures[future])
        except BaseException:
            for future in futures:
                future.cancel()
            raise
