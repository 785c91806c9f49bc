"""Keep NumPy's BLAS single-threaded in the Python-backend stubs.

On a CPU server the engine's ONNX Runtime threads own the cores; a preprocess or postprocess stub whose OpenBLAS
spins up its own threads competes with them and with the other stubs, and busy-waiting BLAS threads on a loaded
machine made the DCC decode of 80 people take 94 ms (median, 212 ms worst) instead of 44 ms single-threaded.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits

__all__ = ["limit_blas_threads"]


def limit_blas_threads(threads: int = 1) -> None:
    """Limit every BLAS library loaded in this process (NumPy's OpenBLAS) to ``threads``, for the process's lifetime."""
    threadpool_limits(limits=threads, user_api="blas")
