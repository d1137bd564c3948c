"""Fast matmuls on Linux CPUs: load an optimised BLAS before MLX's CPU backend.

The `mlx-cpu` wheel bundles the reference (netlib) BLAS, 15-40x slower than OpenBLAS. `libmlx.so`
resolves `cblas_sgemm` at load time through the global symbol scope, so loading a BLAS with
RTLD_GLOBAL before `mlx.core` is first imported makes every matmul and conv use it. This runs on
`import mlxwx`: on Intel CPUs, Intel's MKL where the `mkl` wheel is installed (the `cpu` extra on
x86-64: its matmuls of a few rows against a large matrix, a decoder step's, skip OpenBLAS's
repacking of the large one), else the system OpenBLAS; on other CPUs the system OpenBLAS first
(MKL runs its AVX2 code on AMD's AVX-512 CPUs, where OpenBLAS runs AVX-512: a whole `mlxwx run`
as fast or up to 22% faster with OpenBLAS, bench/RESULTS.md), MKL where OpenBLAS is missing.
`MLXWX_BLAS=/path/libblas.so` picks another library and `MLXWX_BLAS=none` turns it off.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3",  # Debian/Ubuntu libopenblas0-pthread
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",  # Fedora/RHEL openblas
    "/usr/lib/libopenblas.so.0",  # Arch
)
INSTALL_HINT = "apt install libopenblas0-pthread (Debian/Ubuntu) or dnf install openblas (Fedora)"

status = "not needed"  # what happened, for `mlxwx doctor`-style reporting and tests


def _needed() -> bool:
    return sys.platform.startswith("linux") and os.environ.get("MLXWX_BLAS", "") != "none"


def _already_fast() -> bool:
    preload = os.environ.get("LD_PRELOAD", "").lower()
    return "blas" in preload or "mkl" in preload


def mkl_library() -> str | None:
    """The path of MKL's single dynamic library where the `mkl` wheel is installed, else None."""
    from importlib import metadata

    try:
        dist = metadata.distribution("mkl")
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.name.startswith("libmkl_rt.so"):
            return str(Path(str(dist.locate_file(f))).resolve())
    return None


def cpu_vendor() -> str:
    """The CPU's vendor as Linux reports it ("GenuineIntel", "AuthenticAMD"), else ""."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def candidates(vendor: str | None = None) -> tuple[str | None, ...]:
    """The libraries `preload` tries, in order: MKL first on Intel CPUs (`vendor`, default
    this machine's), last elsewhere; None where the `mkl` wheel is not installed."""
    mkl = mkl_library()
    intel = (cpu_vendor() if vendor is None else vendor) == "GenuineIntel"
    return (mkl, *CANDIDATES) if intel else (*CANDIDATES, mkl)


def preload() -> str:
    """Load an optimised BLAS globally if MLX's CPU backend is not imported yet."""
    global status
    if not _needed() or _already_fast():
        status = "not needed" if not _needed() else "LD_PRELOAD"
        return status
    if "mlx.core" in sys.modules:
        status = "too late: mlx.core was imported before mlxwx"
        return status
    override = os.environ.get("MLXWX_BLAS")
    for path in (override,) if override else candidates():
        if path and Path(path).exists():
            try:
                ctypes.CDLL(path, mode=os.RTLD_GLOBAL)
            except OSError as err:
                logger.debug("could not load %s: %s", path, err)
                continue
            status = path
            return status
    status = "missing"
    return status


def warn_if_slow() -> None:
    """Log once how to get fast matmuls when no optimised BLAS could be loaded."""
    import mlx.core as mx

    if not sys.platform.startswith("linux") or mx.default_device() != mx.cpu:
        return
    if status == "missing":
        logger.warning(
            "MLX on this CPU uses the slow reference BLAS (15-40x slower); install OpenBLAS: %s",
            INSTALL_HINT,
        )
    elif status.startswith("too late"):
        logger.warning(
            "import mlxwx before mlx.core (or set LD_PRELOAD to OpenBLAS) for "
            "fast matmuls on Linux CPUs"
        )


THREAD_CALLS = (  # (get, set) of each library's thread count, as the global scope names them
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
)
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # for a child process's environment


def set_threads(n: int) -> int | None:
    """Make the loaded OpenBLAS or MKL use `n` threads; returns the count before, or None where
    neither is loaded (nothing changed)."""
    try:
        lib = ctypes.CDLL(None)  # the global scope: the library preloaded above or by LD_PRELOAD
    except OSError:
        return None
    for get_name, set_name in THREAD_CALLS:
        get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
        if get is not None and set_ is not None:
            before = int(get())
            set_(n)
            return before
    return None
