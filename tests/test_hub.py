"""The Hugging Face cache lookup of mlxwx.weights.hub, on a cache folder built here."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlxwx.errors import ModelError
from mlxwx.weights import hub

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face hub cache in use."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    return tmp_path


def cached_repo(cache: Path, repo_id: str) -> Path:
    """`repo_id` in `cache` as huggingface_hub lays a download out: its snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot


def test_a_cached_repo_is_found_offline(cache: Path) -> None:
    snapshot = cached_repo(cache, "someone/model")
    assert hub.download("someone/model", patterns=["config.json"], local_only=True) == snapshot


def test_a_repo_not_cached_is_one_line_offline_without_asking_the_hub_client(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache's folder is looked for first: the hub client (an import of ~0.2 s, paid by
    every `mlxwx run` whose default aligner is not cached) is not consulted."""
    cached_repo(cache, "someone/other")
    asked: list[str] = []

    def client(repo_id: str, **_: object) -> None:
        asked.append(repo_id)
        raise FileNotFoundError(repo_id)

    monkeypatch.setattr("huggingface_hub.snapshot_download", client)
    with pytest.raises(ModelError, match=r"^'someone/model' is not in the Hugging Face cache; x$"):
        hub.download("someone/model", "; x", ["config.json"], local_only=True)
    assert asked == []
