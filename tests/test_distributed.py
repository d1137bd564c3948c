"""`mlxwx run --ray`: a local Ray cluster on loopback gives `mlxwx run`'s outputs, resumes, and
survives a transcribing actor killed mid-run (issue 17)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
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
# The S3 credentials of the moto server below, as every node of a real cluster has its own.
RAY_ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=uuid.uuid4().hex, AWS_ACCESS_KEY_ID="mlxwx",
               AWS_SECRET_ACCESS_KEY="mlxwx", AWS_DEFAULT_REGION="us-east-1")  # fmt: skip


@pytest.fixture(scope="module")
def cluster():
    """A head node on this machine (`ray start`) with three CPUs: a prepare task and two
    actors at once; its address as Ray gives it (Ray 2.60 keeps the machine's own IP even when
    told --node-ip-address=127.0.0.1, and a client asking 127.0.0.1 is then refused)."""
    ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    env = RAY_ENV
    subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
    start = [ray, "start", "--head", f"--port={PORT}", "--num-cpus=3", '--resources={"host": 2}',
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


@pytest.fixture(scope="module")
def local(corpus, tiny_en_dir, tmp_path_factory):
    """`mlxwx run`'s outputs of the corpus on this machine, without Ray."""
    folder = tmp_path_factory.mktemp("local")
    done = mlxwx("run", *corpus, "--model", tiny_en_dir, "-o", folder, *COMMON)
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture(scope="module")
def s3():
    """An S3 server on loopback (moto): the URL options that point pyarrow at it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        time.sleep(0.2)
    yield f"endpoint_override=127.0.0.1:{port}&scheme=http&allow_bucket_creation=true"
    proc.terminate()
    proc.wait(timeout=30)


def test_ray_outputs_equal_mlxwx_run_and_rerun_does_nothing(cluster, corpus, tiny_en_dir, local,
                                                             tmp_path):  # fmt: skip
    spread = tmp_path / "ray"
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
    pids = []
    for proc in Path("/proc").iterdir():  # as pgrep -f: Ray titles its actors' processes
        with contextlib.suppress(OSError):
            title = (proc / "cmdline").read_bytes()
            if proc.name.isdigit() and int(proc.name) != os.getpid() and b"Transcriber" in title:
                pids.append(int(proc.name))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def test_outputs_to_s3_equal_mlxwx_run(cluster, corpus, tiny_en_dir, local, s3):
    """-o s3://...: each output an object (json, txt); a rerun finds them and does nothing."""
    from pyarrow import fs as pafs

    url = f"s3://corpus/run1?{s3}"
    args = ("run", *corpus, "--model", tiny_en_dir, "-o", url, *COMMON[:-1], "--ray", cluster)
    done = mlxwx(*args)
    assert done.returncode == 0, done.stderr
    assert f"{FILES} files done" in done.stderr
    for key, value in (("AWS_ACCESS_KEY_ID", "mlxwx"), ("AWS_SECRET_ACCESS_KEY", "mlxwx")):
        os.environ.setdefault(key, value)
    bucket, base = pafs.FileSystem.from_uri(url)
    infos = bucket.get_file_info(pafs.FileSelector(base, recursive=True))
    stored = {info.base_name: info.path for info in infos}
    assert sorted(stored) == sorted(p.name for p in local.iterdir())
    for path in local.iterdir():
        with bucket.open_input_stream(stored[path.name]) as stream:
            assert stream.read().decode() == path.read_text(), path.name
    again = mlxwx(*args)
    assert again.returncode == 0 and f"0 files done, {FILES} skipped" in again.stderr


DATASET_RUN = """
import sys, ray
from mlxwx.distributed import RayOptions, transcribe
from mlxwx.pipeline import PipelineOptions
from mlxwx.asr.engine import TranscribeOptions
from mlxwx.asr.decoding import DecodingOptions
folder, out, model, address = sys.argv[1:]
ray.init(address=address, log_to_driver=False)
files = ray.data.read_binary_files(folder, include_paths=True)
options = PipelineOptions(TranscribeOptions(DecodingOptions(beam_size=1), seed=7))
summary = transcribe(files, out, model, options, ["json", "txt"], RayOptions(address))
print(summary.line(), file=sys.stderr)
"""


def test_a_dataset_of_bytes_gives_the_same_outputs(cluster, corpus, tiny_en_dir, local, tmp_path):
    """A ray.data.Dataset with `bytes` and `path` columns (read_binary_files): the audio comes
    from the rows, the names from the paths."""
    out = tmp_path / "out"
    command = [sys.executable, "-c", DATASET_RUN, str(corpus[0].parent), str(out),
               str(tiny_en_dir), cluster]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=RAY_ENV)
    assert done.returncode == 0, done.stderr
    assert f"{FILES} files done, 0 skipped, 0 failed" in done.stderr
    assert texts(out) == texts(local)


def test_a_cluster_that_does_not_answer_fails_at_once(tmp_path, jfk_path, tiny_en_dir):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends
    started = time.monotonic()
    done = mlxwx("run", jfk_path, "--model", tiny_en_dir, "-o", tmp_path, "--ray",
                 f"127.0.0.1:{port}", timeout=120)  # fmt: skip
    assert done.returncode == 2 and time.monotonic() - started < 30
    assert done.stderr.strip().splitlines() == [
        f"error: cannot reach the Ray cluster at 127.0.0.1:{port}: Connection refused"
    ]
    done = mlxwx("run", jfk_path, "--model", tiny_en_dir, "-o", "s3://bucket/x")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --output-dir s3://bucket/x: a URL needs --ray " \
                                  "(object storage outputs)"  # fmt: skip


def test_a_cluster_too_small_for_the_actors_is_refused_before_the_work():
    from mlxwx.distributed import RayOptions
    from mlxwx.errors import MlxwxError

    RayOptions(actors=1).check({"CPU": 2})
    with pytest.raises(MlxwxError, match="the Ray cluster has 2 CPUs: 2 transcribing actors"):
        RayOptions(actors=2).check({"CPU": 2})
    with pytest.raises(MlxwxError, match="has 1 GPUs: 2 transcribing actors need 1 each"):
        RayOptions(actors=2, cpus_per_actor=0.25, gpus_per_actor=1).check({"CPU": 8, "GPU": 1})
    RayOptions(actors=2, actor_resource="mac").check({"CPU": 4, "mac": 2})
    with pytest.raises(MlxwxError, match="has 1 of resource 'mac': 2 transcribing actors"):
        RayOptions(actors=2, actor_resource="mac").check({"CPU": 4, "mac": 1})


def test_speakers_from_an_rttm_in_the_finishing_actors(cluster, corpus, tiny_en_dir, tmp_path):
    """The diarize stage runs in the finishing actors: speakers as `mlxwx run` gives them."""
    rttm = tmp_path / "turns.rttm"
    rttm.write_text("".join(f"SPEAKER {p.stem} 1 0.000 2.500 <NA> <NA> A <NA> <NA>\n"
                            f"SPEAKER {p.stem} 1 2.500 9.000 <NA> <NA> B <NA> <NA>\n"
                            for p in corpus[:3]))  # fmt: skip
    args = [*corpus[:3], "--model", tiny_en_dir, *COMMON, "--diarization-rttm", rttm]
    local, spread = tmp_path / "local", tmp_path / "ray"
    assert mlxwx("run", *args, "-o", local).returncode == 0
    done = mlxwx("run", *args, "-o", spread, "--ray", cluster, "--ray-actor-resource", "host",
                 "--ray-actors", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    for path in local.glob("*.json"):
        speakers = [s.get("speaker") for s in json.loads(path.read_text())["segments"]]
        assert set(speakers) & {"A", "B"}, path.name
        assert json.loads((spread / path.name).read_text()) == json.loads(path.read_text())
