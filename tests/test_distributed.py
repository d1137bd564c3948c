"""`mlxwx run --ray`: a local Ray cluster on loopback gives `mlxwx run`'s outputs, resumes, and
survives a transcribing actor killed mid-run (issue 17)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("ray.data")

pytestmark = pytest.mark.slow
FILES = 30
PORT = 6391
# A cluster with token authentication (Ray's default when a token exists), as users run one:
# the clients get the token and the mode from their environment.
RAY_ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=uuid.uuid4().hex)  # fmt: skip


@pytest.fixture(scope="module")
def cluster():
    """A head node on this machine (`ray start`) with three CPUs: a prepare task and two
    actors at once; its address as Ray gives it (Ray 2.60 keeps the machine's own IP even when
    told --node-ip-address=127.0.0.1, and a client asking 127.0.0.1 is then refused)."""
    ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    env = RAY_ENV
    subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
    start = [ray, "start", "--head", f"--port={PORT}", "--num-cpus=3",
             "--include-dashboard=false", "--disable-usage-stats"]  # fmt: skip
    done = subprocess.run(start, check=True, env=env, capture_output=True, text=True, timeout=120)
    address = re.search(r"ray start --address='([^']+)'", done.stdout + done.stderr)
    assert address, done.stdout + done.stderr
    yield address.group(1)
    subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, jfk_path):
    """30 short files: the JFK clip cut at different points (each a different transcript)."""
    import soundfile as sf

    from mlxwx.audio import read_audio

    folder = tmp_path_factory.mktemp("corpus")
    audio = read_audio(jfk_path)
    for i in range(FILES):
        sf.write(folder / f"clip{i:02d}.wav", audio[: 16000 * (4 + i % 7)], 16000)
    return sorted(folder.iterdir())


def mlxwx(*args, timeout=600):  # type: ignore[no-untyped-def]
    command = [sys.executable, "-m", "mlxwx", *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, env=RAY_ENV
    )


COMMON = ["--beam-size", "1", "--seed", "7", "-f", "json,txt", "-q"]


def texts(folder: Path) -> dict[str, list]:
    """Each output's segments (text, and start/end to the millisecond)."""
    out = {}
    for path in sorted(folder.glob("*.json")):
        segments = json.loads(path.read_text())["segments"]
        out[path.name] = [(s["text"], round(s["start"], 3), round(s["end"], 3)) for s in segments]
    return out


def test_ray_outputs_equal_mlxwx_run_and_rerun_does_nothing(cluster, corpus, tiny_en_dir, tmp_path):
    local, spread = tmp_path / "local", tmp_path / "ray"
    done = mlxwx("run", *corpus, "--model", tiny_en_dir, "-o", local, *COMMON)
    assert done.returncode == 0, done.stderr
    done = mlxwx("run", *corpus, "--model", tiny_en_dir, "-o", spread, *COMMON[:-1],
                 "--ray", cluster, "--ray-actors", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{FILES} files done, 0 skipped, 0 failed" in done.stderr
    assert len(texts(spread)) == FILES and texts(spread) == texts(local)
    for path in local.glob("*.txt"):
        assert (spread / path.name).read_text() == path.read_text()
    again = mlxwx("run", *corpus, "--model", tiny_en_dir, "-o", spread, *COMMON[:-1],
                  "--ray", cluster)  # fmt: skip
    assert again.returncode == 0 and f"0 files done, {FILES} skipped" in again.stderr


def test_an_actor_killed_mid_run_loses_nothing(cluster, corpus, tiny_en_dir, tmp_path):
    out = tmp_path / "out"
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    command = [sys.executable, "-m", "mlxwx", "run", *map(str, corpus), str(bad), "--model",
               str(tiny_en_dir), "-o", str(out), *COMMON, "--ray", cluster]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=RAY_ENV)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(out.glob("*.json")):
        time.sleep(0.2)
    killed = _kill_actors()
    assert killed, "no transcribing actor found"
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, stderr  # the bad file
    assert sorted(p.stem for p in out.glob("*.json")) == sorted(p.stem for p in corpus)
    assert sorted(p.stem for p in out.glob("*.txt")) == sorted(p.stem for p in corpus)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    failures = (out / "failures.tsv").read_text().splitlines()
    assert failures[0] == "input\treason" and len(failures) == 2
    assert failures[1].startswith(f"{bad}\tcannot decode audio file")


def _kill_actors() -> list[int]:
    """SIGKILL the processes of Ray Data's transcribing actors."""
    found = subprocess.run(["pgrep", "-f", "Transcriber"], capture_output=True, text=True)
    pids = [int(p) for p in found.stdout.split() if int(p) != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids
