"""A pyannote.audio `SpeakerDiarization` pipeline folder built from local parts, and mlxwx runs
that use it, in a child interpreter.

No pyannote diarization model ships in a package (the embedding models and PLDA are hub-only),
so the folder has the layout of `pyannote/speaker-diarization-community-1` (config.yaml,
segmentation/, embedding/, plda/) filled with: the real pyannote segmentation v2 checkpoint from
the whisperx 3.8.6 wheel, a randomly initialised embedding model (seeded) saved as a pyannote
checkpoint, and a random PLDA. Real torchaudio is not installable beside our CPU torch, so the
child runs pyannote.audio against the inert stand-in of `tests.pyannote_ref` (the pipeline
never resamples 16 kHz audio, and the embedding chosen computes its own features).

    python -m tests.pyannote_pipeline build SEGMENTATION.bin FOLDER [ARCH]
    python -m tests.pyannote_pipeline run ARGS...      (mlxwx's CLI: `mlxwx ARGS...`)
    python -m tests.pyannote_pipeline turns FOLDER AUDIO OUT.json [NUM_SPEAKERS]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIM_LDA = 16

CONFIG = """\
version: 4.0.0
pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    segmentation: $model/segmentation
    embedding: $model/embedding
    plda: $model/plda
    clustering: {clustering}
    embedding_batch_size: 32
    embedding_exclude_overlap: true
    segmentation_batch_size: 32
params:
  segmentation:
    threshold: 0.5
    min_duration_off: 0.0
  clustering:
{clustering_params}
"""
CLUSTERING = {
    "AgglomerativeClustering": "    method: centroid\n    min_cluster_size: 2\n"
    "    threshold: 0.7\n",
    "VBxClustering": "    threshold: 0.6\n    Fa: 0.07\n    Fb: 0.8\n",
}


def _save_embedding(folder: Path, arch: str) -> int:
    """A randomly initialised pyannote embedding model as `folder/pytorch_model.bin`; returns its
    dimension."""
    import lightning
    import torch
    from pyannote.audio import __version__
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models import embedding

    torch.manual_seed(0)
    model = getattr(embedding, arch)(sample_rate=16000)
    model.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0
    )
    model.eval()
    with torch.inference_mode():
        dim = int(model(torch.zeros(1, 1, 32000)).shape[-1])
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
        "pyannote.audio": {
            "versions": {"pyannote.audio": __version__},
            "architecture": {"module": type(model).__module__, "class": type(model).__name__},
            "specifications": model.specifications,
        },
    }
    folder.mkdir(parents=True)
    torch.save(checkpoint, folder / "pytorch_model.bin")
    return dim


def _save_plda(folder: Path, dim: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    lda = np.linalg.qr(rng.standard_normal((dim, dim)))[0][:, :DIM_LDA]
    np.savez(
        folder / "xvec_transform.npz",
        mean1=rng.standard_normal(dim) * 0.01,
        mean2=rng.standard_normal(DIM_LDA) * 0.01,
        lda=lda,
    )
    tr = np.eye(DIM_LDA) + 0.1 * rng.standard_normal((DIM_LDA, DIM_LDA))
    psi = np.sort(rng.uniform(0.5, 5.0, DIM_LDA))[::-1]
    np.savez(folder / "plda.npz", mu=np.zeros(DIM_LDA), tr=tr, psi=psi)


def build(
    segmentation: Path,
    folder: Path,
    arch: str = "XVectorSincNet",
    clustering: str = "AgglomerativeClustering",
) -> Path:
    """The pipeline folder (see the module)."""
    folder.mkdir(parents=True)
    (folder / "segmentation").mkdir()
    (folder / "segmentation" / "pytorch_model.bin").symlink_to(segmentation.resolve())
    dim = _save_embedding(folder / "embedding", arch)
    _save_plda(folder / "plda", dim)
    text = CONFIG.format(clustering=clustering, clustering_params=CLUSTERING[clustering])
    (folder / "config.yaml").write_text(text)
    return folder


def _turns(folder: str, audio: str, out: str, num_speakers: str | None = None) -> None:
    from mlxwx.audio import read_audio
    from mlxwx.diarize.pyannote import load_diarizer

    diarizer = load_diarizer(folder)
    n = int(num_speakers) if num_speakers else None
    found = diarizer(read_audio(audio), num_speakers=n, embeddings=True)
    table = found.embeddings or {}
    turns = [[t.start, t.end, t.speaker] for t in found.turns]
    Path(out).write_text(json.dumps({"turns": turns, "embeddings": table}))


def main(argv: list[str]) -> int:
    from tests.pyannote_ref import without_torchaudio

    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    with without_torchaudio(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if argv[0] == "build":
            build(Path(argv[1]), Path(argv[2]), *argv[3:])
            return 0
        if argv[0] == "turns":
            _turns(*argv[1:])
            return 0
        from mlxwx.cli import main as cli

        sys.argv = ["mlxwx", *argv[1:]]
        try:
            cli()
        except SystemExit as done:
            return int(done.code or 0)
        return 0


def child(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`python -m tests.pyannote_pipeline ARGS` from the checkout's root."""
    return subprocess.run(
        [sys.executable, "-m", "tests.pyannote_pipeline", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
