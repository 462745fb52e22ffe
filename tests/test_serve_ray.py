"""`whisper-eas serve --ray`: the ingress in front of 2 model replicas on a local Ray, over HTTP.

Checks what scale-out must keep: requests reach both replicas and are batched within each,
transcripts equal the single-process service's (trt-transcribe's for the serve config), model
replicas killed with SIGKILL under load leave every request answered with its own text (retried on
another replica) or OpenAI's 503 envelope (its retry died too), none hanging and none with Ray's
plain-text 500; later requests succeed and the replicas are replaced; SIGTERM under load answers
the requests in flight, then stops the whole deployment.
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

from onnx_exports import serve_graphs  # noqa: E402

AUDIO = Path(__file__).parent / "data" / "audio"
JFK = AUDIO / "jfk-inaugural-1961.flac"
CLIP = AUDIO / "ls-test-clean-1089-134691-0000.flac"
LONG = AUDIO / "long-cathy-a0001-a0019.flac"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids(base: str, tries: int = 30) -> set[int]:
    """The model replicas' process ids: /health is answered by one replica through the ingress."""
    return {httpx.get(base + "/health", timeout=10).json()["pid"] for _ in range(tries)}


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    port = _free_port()
    env = dict(os.environ, RAY_ADDRESS="", RAY_TMPDIR=str(tmp_path_factory.mktemp("ray")))
    log = tmp_path_factory.mktemp("ray-log") / "serve.log"  # a file, not a pipe: an undrained pipe that fills
    with log.open("w") as sink:                              # blocks the server (its shutdown too)
        process = subprocess.Popen([sys.executable, "-m", "whisper_eas.cli.main", "serve", "--ray", "--replicas",
                                    "2", "--cpus-per-replica", "0.5", "--port", str(port), "--log-level", "warning"],
                                   stdout=subprocess.DEVNULL, stderr=sink, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve --ray exited: {log.read_text()[-3000:]}")
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
    graphs = str(serve_graphs())  # the serve row's config and precision
    subprocess.run([sys.executable, "-m", "whisper_eas.cli.transcribe_cmd", "--engine-dir", graphs,
                    "--without-timestamps", "--format", "json",
                    "--output-dir", str(out), str(JFK), str(CLIP)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "whisper_eas.cli.transcribe_cmd", "--engine-dir", graphs,  # > 30 s: with timestamps
                    "--format", "json", "--output-dir", str(out),
                    str(LONG)], check=True, capture_output=True)
    return {p.stem: json.loads(p.read_text())["text"] for p in out.glob("*.json")}


async def _post_all(base: str, files: list[Path], streams: tuple[bool, ...] = (False,)) -> list[tuple[object, str]]:
    """(status, body) per file, the i-th sent with stream=streams[i % len(streams)]; an HTTP
    failure (a hang past the client's timeout included) is (its exception's name, message)."""
    async with httpx.AsyncClient(timeout=120) as client:
        async def one(path: Path, stream: bool):
            try:
                response = await client.post(base + "/v1/audio/transcriptions",
                                             data={"model": "whisper-1", "stream": str(stream).lower()},
                                             files={"file": (path.name, path.read_bytes())})
                return response.status_code, response.text
            except httpx.HTTPError as error:
                return type(error).__name__, str(error)
        return await asyncio.gather(*(one(p, streams[i % len(streams)]) for i, p in enumerate(files)))


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def test_two_replicas_answer_like_one_server(ray_server, expected):
    _, base = ray_server
    assert len(_pids(base)) == 2
    files = [JFK, CLIP] * 4
    for path, (status, body) in zip(files, asyncio.run(_post_all(base, files))):
        assert status == 200, body
        assert json.loads(body)["text"] == expected[path.stem]
    # routed through the ingress's handle, concurrent requests still share decoding rounds in a
    # replica (/metrics appends the engine metrics of the replica that answers it)
    batched = False
    for _ in range(10):
        metrics = httpx.get(base + "/metrics", timeout=10).text
        rounds = _sample(metrics, "whisper_eas_batch_windows_count")
        batched |= rounds > _sample(metrics, 'whisper_eas_batch_windows_bucket{le="1.0"}')
    assert batched, "no replica batched more than one request's window in a round"
    bad = httpx.post(base + "/v1/audio/transcriptions", files={"file": ("e.wav", b"")}, data={"model": "whisper-1"})
    assert bad.status_code == 400 and bad.json()["error"]["message"] == "e.wav: empty file (0 bytes)"  # a replica's
    field = httpx.post(base + "/v1/audio/transcriptions", files={"file": (JFK.name, JFK.read_bytes())},
                       data={"model": "whisper-1", "response_format": "mp3"})  # the ingress's own check
    assert field.status_code == 400 and field.json()["error"]["param"] == "response_format"
    openai = pytest.importorskip("openai")  # the official client, through the ingress, as applications call it
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
    with JFK.open("rb") as audio:
        assert client.audio.transcriptions.create(model="whisper-1", file=audio).text == expected[JFK.stem]
    with pytest.raises(openai.BadRequestError, match="empty file"):
        client.audio.transcriptions.create(model="whisper-1", file=("e.wav", b""))


def test_a_replica_killed_under_load_its_requests_retried(ray_server, expected):
    """SIGKILL one model replica with requests in flight: the ingress sends each of its requests
    once more, to the other replica, so every client gets its own text; streams included."""
    _, base = ray_server
    victim = min(_pids(base))
    files = [LONG, JFK] * 4
    answers = asyncio.run(_load_and_kill(base, files, [victim]))
    for path, (status, body) in zip(files, answers):
        assert status == 200, (path.name, status, body)
        assert _text(body) == expected[path.stem], path.name
    _after_the_kill(base, expected, {victim})


def test_both_replicas_killed_text_or_envelope(ray_server, expected):
    """SIGKILL one model replica, then the other a second later, so some retries die too: each
    request gets its own text or OpenAI's 503 envelope with Retry-After, never Ray's plain-text 500
    or a hang; a stream that had begun ends with the envelope as an error event."""
    _, base = ray_server
    victims = sorted(_pids(base))
    files = [LONG, JFK] * 3
    answers = asyncio.run(_load_and_kill(base, files, victims))
    for path, (status, body) in zip(files, answers):
        assert isinstance(status, int), (path.name, status, body)  # no dropped connection, no client timeout
        if status == 503:
            error = json.loads(body)["error"]  # the envelope, not Ray's plain text
            assert error["type"] == "server_error" and error["code"] == "replica_unavailable", body
            continue
        assert status == 200, (path.name, status, body)
        text = _text(body)
        assert text is None or text == expected[path.stem], path.name
    _after_the_kill(base, expected, set(victims))


async def _load_and_kill(base: str, files: list[Path], victims: list[int]) -> list[tuple[object, str]]:
    """Every third request a stream; the victims killed 1.5 s in, a second apart."""
    task = asyncio.ensure_future(_post_all(base, files, streams=(False, False, True)))
    await asyncio.sleep(1.5)
    for i, pid in enumerate(victims):
        await asyncio.sleep(1.0 * bool(i))
        os.kill(pid, signal.SIGKILL)
    return await asyncio.wait_for(task, 150)  # none hangs


def _text(body: str) -> str | None:
    """The transcript of a JSON or a streamed body; None for a stream that ended with the
    replica_unavailable error event."""
    if not body.startswith("data: "):
        return json.loads(body)["text"]
    last = json.loads(body.strip().split("\n\n")[-1][len("data: "):])
    if last["type"] == "error":
        assert last["error"]["code"] == "replica_unavailable", body
        return None
    assert last["type"] == "transcript.text.done", body
    return last["text"]


def _after_the_kill(base: str, expected: dict[str, str], victims: set[int]) -> None:
    """Later requests succeed, and the controller replaces the dead replicas."""
    after = asyncio.run(_post_all(base, [JFK, CLIP]))
    assert [json.loads(body)["text"] for _, body in after] == [expected[JFK.stem], expected[CLIP.stem]]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pids = _pids(base, 10)
        if len(pids) == 2 and not pids & victims:
            break
        time.sleep(1)
    assert len(pids) == 2 and not pids & victims


def test_sigterm_under_load_finishes_in_flight_then_stops(ray_server, expected):
    """SIGTERM with requests in flight: they are answered with their own text (the command drains
    the ingress before Serve's shutdown, which closes the proxy at once), then the whole deployment
    stops and the command exits 0."""
    process, base = ray_server

    async def run():
        requests = asyncio.create_task(_post_all(base, [LONG, JFK, CLIP]))
        await asyncio.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        return await requests

    answers = asyncio.run(run())
    assert [(status, json.loads(body)["text"]) for status, body in answers] == [
        (200, expected[LONG.stem]), (200, expected[JFK.stem]), (200, expected[CLIP.stem])], answers
    assert process.wait(timeout=120) == 0
