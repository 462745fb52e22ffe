"""`whisper-eas serve --ray`: the same app as 2 Ray Serve replicas on a local Ray, driven over HTTP.

Checks what scale-out must keep: requests reach both replicas, transcripts equal the
single-process service's (trt-transcribe's for the serve config), a replica killed with SIGKILL
under load leaves every request answered (a transcript or an error, none hanging), later requests
succeed and the replica is replaced; SIGTERM stops the whole deployment.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")

from whisper_eas.defaults import shipped_config  # noqa: E402

AUDIO = Path(__file__).parent / "data" / "audio"
JFK = AUDIO / "jfk-inaugural-1961.flac"
CLIP = AUDIO / "ls-test-clean-1089-134691-0000.flac"
LONG = AUDIO / "long-cathy-a0001-a0019.flac"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids(base: str, tries: int = 30) -> set[int]:
    return {httpx.get(base + "/health", timeout=10).json()["pid"] for _ in range(tries)}


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    port = _free_port()
    env = dict(os.environ, RAY_ADDRESS="", RAY_TMPDIR=str(tmp_path_factory.mktemp("ray")))
    process = subprocess.Popen([sys.executable, "-m", "whisper_eas.cli.main", "serve", "--ray", "--replicas", "2",
                                "--cpus-per-replica", "0.5", "--port", str(port), "--log-level", "warning"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve --ray exited: {process.stderr.read()[-3000:]}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200 and len(_pids(base, 10)) == 2:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("serve --ray did not start 2 replicas in 300 s")
    yield process, base
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    subprocess.run([sys.executable, "-m", "whisper_eas.cli.transcribe_cmd", "--prune",
                    shipped_config("tiny.en", serve=True).format(), "--without-timestamps", "--format", "json",
                    "--output-dir", str(out), str(JFK), str(CLIP)], check=True, capture_output=True)
    return {p.stem: json.loads(p.read_text())["text"] for p in out.glob("*.json")}


async def _post_all(base: str, files: list[Path]) -> list[tuple[object, str]]:
    async with httpx.AsyncClient(timeout=120) as client:
        async def one(path: Path):
            try:
                response = await client.post(base + "/v1/audio/transcriptions", data={"model": "whisper-1"},
                                             files={"file": (path.name, path.read_bytes())})
                return response.status_code, response.text
            except httpx.HTTPError as error:
                return type(error).__name__, str(error)
        return await asyncio.gather(*(one(p) for p in files))


def test_two_replicas_answer_like_one_server(ray_server, expected):
    _, base = ray_server
    assert len(_pids(base)) == 2
    files = [JFK, CLIP] * 3
    for path, (status, body) in zip(files, asyncio.run(_post_all(base, files))):
        assert status == 200, body
        assert json.loads(body)["text"] == expected[path.stem]
    bad = httpx.post(base + "/v1/audio/transcriptions", files={"file": ("e.wav", b"")}, data={"model": "whisper-1"})
    assert bad.status_code == 400 and bad.json()["error"]["message"] == "e.wav: empty file (0 bytes)"


def test_a_replica_killed_under_load(ray_server, expected):
    _, base = ray_server
    victim = min(_pids(base))

    async def load_and_kill():
        task = asyncio.ensure_future(_post_all(base, [LONG, JFK] * 4))
        await asyncio.sleep(1.5)
        os.kill(victim, signal.SIGKILL)
        return await asyncio.wait_for(task, 180)  # none hangs

    answers = asyncio.run(load_and_kill())
    assert all(status == 200 or (isinstance(status, int) and status >= 500) for status, _ in answers), answers
    after = asyncio.run(_post_all(base, [JFK, CLIP]))
    assert [json.loads(body)["text"] for _, body in after] == [expected[JFK.stem], expected[CLIP.stem]]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the controller replaces the dead replica
        pids = _pids(base, 10)
        if len(pids) == 2 and victim not in pids:
            break
        time.sleep(2)
    assert len(pids) == 2 and victim not in pids


def test_sigterm_stops_the_deployment(ray_server):
    process, _ = ray_server
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
