"""Hugging Face Hub access: short model names, cached-first downloads, one-line errors."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ModelError

logger = logging.getLogger(__name__)

# Short names -> mlx-community repos in the layout mlx-whisper reads.
REPOS = {
    "tiny": "mlx-community/whisper-tiny-mlx",
    "tiny.en": "mlx-community/whisper-tiny.en-mlx",
    "base": "mlx-community/whisper-base-mlx",
    "base.en": "mlx-community/whisper-base.en-mlx",
    "small": "mlx-community/whisper-small-mlx",
    "small.en": "mlx-community/whisper-small.en-mlx",
    "medium": "mlx-community/whisper-medium-mlx",
    "medium.en": "mlx-community/whisper-medium.en-mlx",
    "large-v2": "mlx-community/whisper-large-v2-mlx",
    "large-v3": "mlx-community/whisper-large-v3-mlx",
    "large-v3-turbo": "mlx-community/whisper-large-v3-turbo",
    "distil-large-v3": "mlx-community/distil-whisper-large-v3",
}
MODEL_FILES = ["config.json", "weights.safetensors", "weights.npz", "tokenizer.json", "mlxwx.json"]
# mlx-community folders carry no tokenizer: take the one of the openai repo with that vocabulary.
TOKENIZER_REPOS = {
    51864: "openai/whisper-tiny.en",
    51865: "openai/whisper-tiny",
    51866: "openai/whisper-large-v3",
}


def _looks_like_repo(name: str) -> bool:
    return name.count("/") == 1 and all(name.split("/"))


def _in_cache(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds anything of model repo `repo_id` (its folder
    there); what it holds is for `snapshot_download` to check."""
    from huggingface_hub import constants

    return (Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}").is_dir()


def download(
    repo_id: str,
    hint: str = "",
    patterns: list[str] | None = MODEL_FILES,
    local_only: bool = False,
    token: str | None = None,
) -> Path:
    """Local snapshot of a model repo (its files matching `patterns`; None: all of them): the
    cache first, then the hub unless `local_only`. `token`: for a gated repo not yet cached
    (None: huggingface_hub's own, e.g. `HF_TOKEN`)."""
    if not _looks_like_repo(repo_id):
        known = ", ".join(REPOS)
        raise ModelError(
            f"unknown model {repo_id!r}: not a folder, a known name ({known}) "
            "or a Hugging Face repo id"
        )
    if local_only and not _in_cache(repo_id):  # without importing the hub client (~0.2 s)
        raise ModelError(f"{repo_id!r} is not in the Hugging Face cache{hint}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:  # not cached: go online below
        if local_only:
            raise ModelError(f"{repo_id!r} is not in the Hugging Face cache{hint}") from None
    logger.info("downloading %s from the Hugging Face Hub", repo_id)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, token=token))
    except GatedRepoError:
        raise ModelError(
            f"{repo_id!r} is gated: accept its conditions once at https://hf.co/{repo_id} "
            "with your account, then pass --hf-token or set HF_TOKEN (a read token from "
            "https://hf.co/settings/tokens)"
        ) from None
    except RepositoryNotFoundError:
        raise ModelError(f"model repo {repo_id!r} not found on the Hugging Face Hub") from None
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(
            f"cannot download {repo_id!r} (not cached, hub unreachable: {reason[:120]}){hint}"
        ) from None


def fetch_tokenizer(n_vocab: int) -> Path:
    """tokenizer.json for a vocabulary size, from the cache or the hub."""
    from huggingface_hub import hf_hub_download

    repo = TOKENIZER_REPOS.get(n_vocab)
    if repo is None:
        raise ModelError(
            f"no tokenizer.json in the model folder and no known vocabulary of {n_vocab}"
        )
    try:
        return Path(hf_hub_download(repo, "tokenizer.json"))
    except Exception as err:
        raise ModelError(
            f"model folder has no tokenizer.json and fetching {repo}'s failed: "
            f"{str(err).splitlines()[0][:120] if str(err) else type(err).__name__}"
        ) from None


def cached_snapshot(repo_id: str) -> Path | None:
    """The local snapshot of `repo_id`'s model files if the Hugging Face cache has one; never
    goes online."""
    try:
        return download(repo_id, local_only=True)
    except ModelError:
        return None
