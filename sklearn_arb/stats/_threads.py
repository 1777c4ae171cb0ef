"""The statistics' matrix products on one BLAS thread."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from threadpoolctl import ThreadpoolController


@cache
def _blas_libraries() -> list:
    """The BLAS libraries loaded (numpy's, scipy's), found once per process."""
    return ThreadpoolController().select(user_api="blas").lib_controllers


# Below this many rows (images) the products are too small for BLAS to use
# threads (OpenBLAS splits a product of more than 65536 multiply-adds).
MIN_ROWS = 32


@contextmanager
def one_blas_thread(n_rows: int = MIN_ROWS) -> Iterator[None]:
    """A context in which BLAS runs on one thread, for statistics of ``n_rows``
    images (nothing is set for fewer than ``MIN_ROWS``: 10 us saved per call).

    The statistics multiply small matrices (29 bins by 8 coefficients per image):
    on several threads, starting and joining them costs more than the products,
    and on a busy machine each product waits for a thread to be scheduled
    (a Lindsey fit of 1000 images took 155 ms on two threads of a loaded 2-core
    machine, 9 ms on one). The products are the same on one thread. Each
    library's thread count is set and restored directly (a few microseconds;
    ``threadpoolctl.threadpool_limits`` looks the libraries up on every call).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_arb.stats._threads import one_blas_thread
    >>> a = np.random.default_rng(0).random((100, 29))
    >>> with one_blas_thread():
    ...     product = a @ a.T
    >>> bool(np.array_equal(product, a @ a.T))
    True
    """
    if n_rows < MIN_ROWS:
        yield
        return
    libraries = _blas_libraries()
    threads = [library.num_threads for library in libraries]
    for library in libraries:
        library.set_num_threads(1)
    try:
        yield
    finally:
        for library, n_threads in zip(libraries, threads, strict=True):
            library.set_num_threads(n_threads)
