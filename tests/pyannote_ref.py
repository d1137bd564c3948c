"""pyannote.audio 4.0.7 as the reference for the pyannote segmentation port.

pyannote.audio imports torchaudio at module level (only to resample, which 16 kHz input never
needs), and no torchaudio build matches the CPU torch we install (torchaudio's wheels pin their
own torch). So when torchaudio cannot be imported, pyannote.audio is imported against an inert
stand-in (any call raises). Libraries imported meanwhile may remember torchaudio as present
(transformers does), so tests run the reference in a child interpreter (`run_reference`);
the benchmark, a process of its own, uses `Reference` directly. CI installs pyannote.audio with
--no-deps (.ci/run).

    python -m tests.pyannote_ref CHECKPOINT REQUEST.npz OUT.npz
"""

from __future__ import annotations

import copy
import importlib.abc
import importlib.machinery
import os
import subprocess
import sys
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

MISSING = 3  # exit status of the child when pyannote.audio is not installed


class _Inert(types.ModuleType):
    __version__ = "0+stub"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def missing(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"torchaudio is not installed ({self.__name__}.{name})")

        return missing


class _InertFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name == "torchaudio" or name.startswith("torchaudio."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _Inert(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []


def _torchaudio_works() -> bool:
    try:
        import torchaudio  # noqa: F401
    except Exception:  # a missing module, or a binary built for another torch
        for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
            del sys.modules[name]
        return False
    return True


@contextmanager
def without_torchaudio() -> Iterator[None]:
    if _torchaudio_works():
        yield
        return
    finder = _InertFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if isinstance(sys.modules[n], _Inert)]:
            del sys.modules[name]


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch's spinning worker threads crawl on a shared, oversubscribed CPU (7 s of audio took
    0.8 s or 30 s from one run to the next): run the reference on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Reference:
    """pyannote.audio's PyanNet loaded from a checkpoint and its VAD inference (WhisperX's)."""

    def __init__(self, checkpoint: str) -> None:
        os.environ["PYANNOTE_METRICS_ENABLED"] = "0"  # no telemetry
        with without_torchaudio(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pyannote.audio import Model
            from pyannote.audio.pipelines import VoiceActivityDetection

            self.model = Model.from_pretrained(checkpoint).eval()
            # WhisperX's VoiceActivitySegmentation keeps exactly this Inference's output.
            self.inference = VoiceActivityDetection(segmentation=self.model)._segmentation

    def windows(self, windows: np.ndarray, float64: bool = False) -> np.ndarray:
        """(n, samples) -> raw model output (n, frames, speakers); float64: the same network
        computed in double precision, to measure float32's own rounding noise."""
        import torch

        model = copy.deepcopy(self.model).double() if float64 else self.model
        x = torch.from_numpy(windows.astype(np.float64) if float64 else windows)[:, None]
        with torch.inference_mode(), _one_thread():
            return model(x).numpy()

    def frames(self, audio: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Aggregated speech scores (frames,), hop and frame 0's middle (WhisperX timestamps)."""
        import torch

        with _one_thread():
            out = self.inference({"waveform": torch.from_numpy(audio)[None], "sample_rate": 16000})
        window = out.sliding_window
        return out.data[:, 0], window.step, window[0].middle


def compute(checkpoint: str, request: str, out: str) -> None:
    """For each `windows:NAME` array of the request: raw outputs `raw:NAME` and their float64
    twin `raw64:NAME`; for each `audio:NAME`: `frames:NAME` and `layout:NAME` (hop, middle of
    frame 0); plus the model's state dict as `state:PARAM`."""
    ref = Reference(checkpoint)
    result: dict[str, np.ndarray] = {}
    with np.load(request) as req:
        for key in req.files:
            kind, name = key.split(":", 1)
            if kind == "windows":
                result[f"raw:{name}"] = ref.windows(req[key])
                result[f"raw64:{name}"] = ref.windows(req[key], float64=True)
            else:
                frames, hop, middle = ref.frames(req[key])
                result[f"frames:{name}"] = frames
                result[f"layout:{name}"] = np.array([hop, middle])
    for name, value in ref.model.state_dict().items():
        result[f"state:{name}"] = value.numpy()
    np.savez(out, **result)


def run_reference(
    checkpoint: Path, request: dict[str, np.ndarray], tmp: Path
) -> dict[str, np.ndarray] | None:
    """`compute` in a child interpreter; None when pyannote.audio (or torch) is missing."""
    np.savez(tmp / "request.npz", **request)
    root = Path(__file__).resolve().parents[1]
    args = [str(checkpoint), str(tmp / "request.npz"), str(tmp / "reference.npz")]
    run = subprocess.run(
        [sys.executable, "-m", "tests.pyannote_ref", *args],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if run.returncode == MISSING:
        return None
    if run.returncode != 0:
        raise RuntimeError(f"reference failed:\n{run.stderr[-3000:]}")
    with np.load(tmp / "reference.npz") as out:
        return {k: out[k] for k in out.files}


if __name__ == "__main__":
    import importlib.util

    for module in ("torch", "pyannote.audio"):
        if importlib.util.find_spec(module) is None:
            print(f"{module} is not installed", file=sys.stderr)
            sys.exit(MISSING)
    compute(*sys.argv[1:4])
