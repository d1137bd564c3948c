"""`mlxwx models`: the short model names, where each comes from, and what is on this machine."""

from __future__ import annotations

from pathlib import Path

import typer

from ..weights import hub, packs


def folder_size(path: Path) -> int:
    """Bytes of the files under `path` (symlinks followed: the hub cache links its blobs)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def model_rows() -> list[tuple[str, str, str]]:
    """(name, source, here) for every short name: offline packs first, then hub repos."""
    rows = []
    for name in packs.PACKS:
        folder, installed = packs.status(name)
        source = "offline pack (models extra)" if installed else f"hub: {hub.REPOS[name]}"
        if folder is not None:
            here = f"converted, {folder_size(folder) / 1e6:.0f} MB"
        elif installed:
            here = "pack installed; converted on first use"
        else:
            here = _hub_state(hub.REPOS[name])
        rows.append((name, source, here))
    for name, repo in hub.REPOS.items():
        if name not in packs.PACKS:
            rows.append((name, f"hub: {repo}", _hub_state(repo)))
    return rows


def _hub_state(repo: str) -> str:
    snapshot = hub.cached_snapshot(repo)
    return (
        "downloaded on first use"
        if snapshot is None
        else (f"cached, {folder_size(snapshot) / 1e6:.0f} MB")
    )


def models_command() -> None:
    """List the model names `--model` knows, where each comes from and what is cached here.
    --model also takes an MLX folder or any Hugging Face repo id."""
    rows = model_rows()
    width = max(len(r[0]) for r in rows)
    source_width = max(len(r[1]) for r in rows)
    for name, source, here in rows:
        typer.echo(f"{name:<{width}}  {source:<{source_width}}  {here}")
