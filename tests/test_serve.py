"""`whisper-eas serve` as users run it: a real server process on a loopback port, driven by the
official `openai` client (and raw HTTP where the client cannot misbehave on purpose).

One server for the module (real tiny.en weights, the serve default config on ONNX Runtime, an API
key, a 1.5 MB upload limit); its transcripts are checked against `trt-transcribe` on the same
files and config. The last test stops it with SIGTERM while a request is in flight.
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
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from whisper_eas.defaults import shipped_config  # noqa: E402
from onnx_exports import serve_graphs  # noqa: E402

AUDIO = Path(__file__).parent / "data" / "audio"
SHORT = sorted(p for p in AUDIO.glob("*.flac") if not p.name.startswith("long-"))
LONG = AUDIO / "long-cathy-a0001-a0019.flac"  # 60 s: three windows
JFK = AUDIO / "jfk-inaugural-1961.flac"
KEY = "test-key"
SERVE_CONFIG = shipped_config("tiny.en", serve=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    command = [sys.executable, "-m", "whisper_eas.cli.main", "serve", "--port", str(port), "--api-key", KEY,
               "--max-upload-mb", "1.5", "--max-batch", "8", "--max-audio-minutes", "10", "--log-level", "warning"]
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"  # a file: an undrained pipe can block the server
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # the first run exports the serve config's graphs
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("server did not start in 300 s")
    yield process, base, log
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[1] + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def cli_text(tmp_path_factory):
    """trt-transcribe's text per file on the service's graphs (the serve row's config and
    precision, which can differ from the sequential row's): json/text requests of clips <= 30 s are
    decoded without timestamp tokens, longer files with them."""
    out = tmp_path_factory.mktemp("cli")
    base = [sys.executable, "-m", "whisper_eas.cli.transcribe_cmd", "--engine-dir", str(serve_graphs()),
            "--format", "json"]
    subprocess.run(base + ["--without-timestamps", "--output-dir", str(out / "short"), *map(str, SHORT)],
                   check=True, capture_output=True)
    subprocess.run(base + ["--output-dir", str(out / "long"), str(LONG)], check=True, capture_output=True)
    texts = {p.stem: json.loads(p.read_text())["text"] for p in (out / "short").glob("*.json")}
    texts[LONG.stem] = json.loads((out / "long" / f"{LONG.stem}.json").read_text())["text"]
    subprocess.run(base + ["--word-timestamps", "--output-dir", str(out / "words"), str(JFK)], check=True,
                   capture_output=True)
    cli_json = json.loads((out / "words" / f"{JFK.stem}.json").read_text())
    texts["words"] = [(w["word"].strip(), w["start"], w["end"]) for s in cli_json["segments"] for w in s["words"]]
    return texts


def test_serve_runs_the_table_of_defaults_serve_row(server):
    """The startup line names the graphs it runs: the serve row of `whisper-eas defaults`."""
    from whisper_eas.config import format_prune
    from whisper_eas.defaults import default_for

    row = default_for("tiny.en", "cpu", "serve")
    banner = server[2].read_text().splitlines()[0]
    assert f"tiny.en [{format_prune(row.config)}] {row.precision} ONNX graphs" in banner, banner


def test_models_and_alias(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["tiny.en", "whisper-1"]
    assert client.models.retrieve("whisper-1").id == "whisper-1"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o-transcribe")


def test_every_response_format(client, cli_text):
    import pysubs2
    import srt

    with JFK.open("rb") as f:
        plain = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert plain.text == cli_text[JFK.stem]
    assert plain.usage.type == "duration" and plain.usage.seconds == 11
    with JFK.open("rb") as f:
        text = client.audio.transcriptions.create(model="tiny.en", file=f, response_format="text")
    assert text.strip() == plain.text
    with JFK.open("rb") as f:
        verbose = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json")
    assert verbose.language == "english" and verbose.duration == pytest.approx(11.0)
    assert verbose.text and len(verbose.segments) >= 1 and verbose.words is None
    first = verbose.segments[0]
    assert first.id == 0 and first.seek == 0 and first.tokens and 0 <= first.no_speech_prob <= 1
    assert first.temperature == 0.0 and first.compression_ratio > 0 and first.avg_logprob < 0
    assert verbose.segments[-1].end == pytest.approx(11.0, abs=0.5)
    with JFK.open("rb") as f:
        subtitles = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
    cues = list(srt.parse(subtitles))
    assert [c.content.strip() for c in cues] == [s.text.strip() for s in verbose.segments]
    with JFK.open("rb") as f:
        web = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="vtt")
    events = pysubs2.SSAFile.from_string(web, format_="vtt").events
    assert [e.plaintext.strip() for e in events] == [s.text.strip() for s in verbose.segments]
    assert events[-1].end == round(verbose.segments[-1].end * 1000)


def test_word_granularity(client, cli_text):
    with JFK.open("rb") as f:
        words_only = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json",
                                                        timestamp_granularities=["word"])
    assert words_only.segments is None
    words = words_only.words
    assert [(w.word, w.start, w.end) for w in words] == cli_text["words"]  # trt-transcribe --word-timestamps
    assert all(w.start <= w.end for w in words)
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))
    with JFK.open("rb") as f:
        both = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json",
                                                  timestamp_granularities=["word", "segment"])
    assert both.segments and len(both.words) == len(words)


def test_stream_equals_non_streamed(client, cli_text):
    with LONG.open("rb") as f:
        events = list(client.audio.transcriptions.create(model="whisper-1", file=f, stream=True))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    done = events[-1]
    assert done.type == "transcript.text.done"
    assert len(deltas) > 1  # one per decoded segment as windows finish, not one per file
    assert "".join(d.delta for d in deltas).strip() == done.text == cli_text[LONG.stem]
    assert done.usage.output_tokens > 0


def test_concurrent_requests_batched_and_equal_to_cli(server, cli_text):
    files = SHORT + [LONG, JFK]  # 8 requests: short clips and a 60 s recording together

    async def run():
        async with openai.AsyncOpenAI(base_url=server[1] + "/v1", api_key=KEY, max_retries=0, timeout=300) as c:
            async def one(path: Path):
                with path.open("rb") as f:
                    return await c.audio.transcriptions.create(model="whisper-1", file=(path.name, f.read()))
            return await asyncio.gather(*(one(p) for p in files))

    results = asyncio.run(run())
    for path, result in zip(files, results):
        assert result.text == cli_text[path.stem], path.name
    metrics = httpx.get(server[1] + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    rounds = _sample(metrics, "whisper_eas_batch_windows_count")
    alone = _sample(metrics, 'whisper_eas_batch_windows_bucket{le="1.0"}')
    assert rounds > alone, "no decoding round batched more than one request's window"
    assert _sample(metrics, 'whisper_eas_requests_total{endpoint="/v1/audio/transcriptions",status="200"}') >= 8


def test_a_hundred_clients_at_once_none_lost_none_mixed_up(server, cli_text):
    """100 clients at once against a server that takes 8 + 64: each request is answered with its own
    file's text (as trt-transcribe gives it) or a 429 envelope with Retry-After; a client that
    retries after it gets its text. Nothing is lost, duplicated or given to another request."""
    clips = sorted(SHORT, key=lambda p: p.stat().st_size)[:3]  # 2-4 s each: the test is about the count
    files = [clips[i % len(clips)] for i in range(100)]
    headers = {"Authorization": f"Bearer {KEY}"}
    statuses: list[int] = []

    async def run():
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=server[1], headers=headers, timeout=600, limits=limits) as c:
            async def one(path: Path) -> str:
                while True:
                    response = await c.post("/v1/audio/transcriptions", files={"file": (path.name, path.read_bytes())},
                                            data={"model": "whisper-1", "response_format": "text"})
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        return response.text
                    assert response.status_code == 429, response.text
                    assert response.json()["error"]["code"] == "queue_full"
                    await asyncio.sleep(min(float(response.headers["Retry-After"]), 2.0))
            return await asyncio.gather(*(one(p) for p in files))

    texts = asyncio.run(run())
    for path, text in zip(files, texts):
        assert text.strip() == cli_text[path.stem], path.name
    assert statuses.count(200) == len(files) and set(statuses) <= {200, 429}
    health = httpx.get(server[1] + "/health").json()
    assert health["queue_depth"] == 0 and health["decoding"] == 0


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def test_auth(server):
    base = server[1]
    assert httpx.get(base + "/health").status_code == 200  # health needs no key
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.get(base + "/v1/models", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    wrong = openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError), JFK.open("rb") as f:
        wrong.audio.transcriptions.create(model="whisper-1", file=f)


def test_translation_on_english_only_model(client):
    with pytest.raises(openai.BadRequestError) as caught, JFK.open("rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the client deprecates translations, not the API
        client.audio.translations.create(model="whisper-1", file=f)
    assert "English-only" in caught.value.body["message"]


BAD = [
    ("empty.wav", b"", {}, 400, "empty file"),
    ("notes.txt", b"call the plumber on monday\n" * 20, {}, 400, "notes.txt"),
    ("cut.flac", JFK.read_bytes()[:30000], {}, 400, "cut.flac: truncated"),
    ("a.flac", JFK.read_bytes(), {"model": "gpt-4o-transcribe"}, 404, "does not exist"),
    ("a.flac", JFK.read_bytes(), {"response_format": "xml"}, 400, "response_format"),
    ("a.flac", JFK.read_bytes(), {"language": "klingon"}, 400, "language"),
    ("a.flac", JFK.read_bytes(), {"language": "de"}, 400, "English-only"),
    ("a.flac", JFK.read_bytes(), {"temperature": "hot"}, 400, "temperature"),
    ("big.flac", os.urandom(2 * 2**20), {}, 413, "limit"),
]


@pytest.mark.parametrize("name,content,fields,status,message", BAD, ids=[b[0] + str(b[2]) for b in BAD])
def test_bad_input_gets_an_envelope(server, name, content, fields, status, message):
    response = httpx.post(server[1] + "/v1/audio/transcriptions", headers={"Authorization": f"Bearer {KEY}"},
                          files={"file": (name, content)}, data={"model": "whisper-1", **fields}, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error["message"] and set(error) == {"message", "type", "param", "code"}


def test_oversized_stream_refused_while_reading(server):
    """A chunked upload (no Content-Length) gets its 413 once it passes the limit, while the client
    is still sending: the server never buffers the rest."""
    port = int(server[1].rsplit(":", 1)[1])
    head = (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    chunk = b"\0" * 65536
    sent, reply = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + b"%x\r\n%s\r\n" % (len(part), part))
        sock.setblocking(False)
        while sent < 25 * 2**20 and not reply:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.01)
            try:
                reply = sock.recv(65536)
            except BlockingIOError:
                pass
        sock.settimeout(10)
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert sent < 12 * 2**20  # refused after the 1.5 MB limit plus what loopback buffers hold, not after 25 MB


def test_a_small_upload_that_decodes_to_hours_is_refused(server, tmp_path):
    """A zip-bomb-like FLAC: 20 min of silence in a few kB. Its header says how long it is, so it is
    refused before any decoding, with an envelope naming the limit."""
    import soundfile as sf

    bomb = tmp_path / "bomb.flac"
    with sf.SoundFile(bomb, "w", samplerate=16000, channels=1, format="FLAC") as f:
        block = np.zeros(16000 * 60, np.int16)
        for _ in range(20):
            f.write(block)
    assert bomb.stat().st_size < 200_000
    start = time.monotonic()
    response = httpx.post(server[1] + "/v1/audio/transcriptions", headers={"Authorization": f"Bearer {KEY}"},
                          files={"file": ("bomb.flac", bomb.read_bytes())}, data={"model": "whisper-1"}, timeout=60)
    assert response.status_code == 400 and time.monotonic() - start < 10
    error = response.json()["error"]
    assert error["code"] == "audio_too_long" and "10 min" in error["message"] and "bomb.flac" in error["message"]


def test_a_form_field_over_its_size_gets_an_envelope(server):
    response = httpx.post(server[1] + "/v1/audio/transcriptions", headers={"Authorization": f"Bearer {KEY}"},
                          files={"file": (JFK.name, JFK.read_bytes())},
                          data={"model": "whisper-1", "prompt": "x" * (1024 * 1024 + 10)}, timeout=60)
    assert response.status_code in (400, 413), response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_a_trickling_upload_does_not_hold_up_others(server, client, cli_text):
    """A client sending its upload at 1 kB/s: other requests are answered meanwhile, and when it
    gives up, nothing of it stays in the queue."""
    import threading

    port = int(server[1].rsplit(":", 1)[1])
    body = (b'--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
            b'--x\r\nContent-Disposition: form-data; name="file"; filename="slow.flac"\r\n\r\n' + JFK.read_bytes()
            + b"\r\n--x--\r\n")
    head = (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    stop = threading.Event()

    def trickle():
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head)
            for start in range(0, len(body), 1024):
                if stop.wait(1.0):
                    return  # the client gives up mid-upload
                sock.sendall(body[start : start + 1024])

    slow = threading.Thread(target=trickle)
    slow.start()
    try:
        time.sleep(1.5)
        started = time.monotonic()
        with JFK.open("rb") as f:
            assert client.audio.transcriptions.create(model="whisper-1", file=f).text == cli_text[JFK.stem]
        assert time.monotonic() - started < 30
    finally:
        stop.set()
        slow.join()
    deadline = time.monotonic() + 10
    while (health := httpx.get(server[1] + "/health").json())["queue_depth"] or health["decoding"]:
        assert time.monotonic() < deadline, health
        time.sleep(0.2)


def test_server_still_serves_after_bad_input(client, cli_text):
    with JFK.open("rb") as f:
        assert client.audio.transcriptions.create(model="whisper-1", file=f).text == cli_text[JFK.stem]


def test_disconnected_client_frees_its_work(server):
    base, headers = server[1], {"Authorization": f"Bearer {KEY}"}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(base + "/v1/audio/transcriptions", headers=headers, timeout=0.5,
                   files={"file": (LONG.name, LONG.read_bytes())}, data={"model": "whisper-1"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = httpx.get(base + "/health").json()
        if health["decoding"] == 0 and health["queue_depth"] == 0:
            break
        time.sleep(0.2)
    assert health["decoding"] == 0 and health["queue_depth"] == 0


def test_a_dropped_stream_and_a_client_that_never_reads(server, client, cli_text):
    """A stream whose client hangs up after its first event, and a client that sends a whole request
    and never reads a byte of the answer: the others are answered meanwhile with their own text,
    and once both sockets are gone the server is healthy with nothing left queued or decoding."""
    port = int(server[1].rsplit(":", 1)[1])

    def raw_request(stream: bool) -> socket.socket:
        fields = b'--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        if stream:
            fields += b'--x\r\nContent-Disposition: form-data; name="stream"\r\n\r\ntrue\r\n'
        body = (fields + b'--x\r\nContent-Disposition: form-data; name="file"; filename="long.flac"\r\n\r\n'
                + LONG.read_bytes() + b"\r\n--x--\r\n")
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall((f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}"
                      f"\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: {len(body)}\r\n\r\n")
                     .encode() + body)
        return sock

    silent = raw_request(stream=False)  # never read
    dropped = raw_request(stream=True)
    received = b""
    while b"data: " not in received:  # the first event has come: hang up mid-stream
        chunk = dropped.recv(4096)
        assert chunk, received
        received += chunk
    assert b" 200 " in received.split(b"\r\n", 1)[0], received[:200]
    dropped.close()
    try:
        with JFK.open("rb") as f:
            assert client.audio.transcriptions.create(model="whisper-1", file=f).text == cli_text[JFK.stem]
    finally:
        silent.close()
    deadline = time.monotonic() + 60
    while (health := httpx.get(server[1] + "/health").json())["queue_depth"] or health["decoding"]:
        assert time.monotonic() < deadline, health
        time.sleep(0.2)
    assert health["status"] == "ok"


def test_sigterm_finishes_in_flight_then_exits(server):
    process, base, _ = server
    headers = {"Authorization": f"Bearer {KEY}"}

    async def run():
        async with httpx.AsyncClient(timeout=120) as c:
            request = asyncio.create_task(c.post(base + "/v1/audio/transcriptions", headers=headers,
                                                 files={"file": (LONG.name, LONG.read_bytes())},
                                                 data={"model": "whisper-1"}))
            await asyncio.sleep(1.0)
            process.send_signal(signal.SIGTERM)
            return await request

    response = asyncio.run(run())
    assert response.status_code == 200 and response.json()["text"]
    assert process.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained


def test_flood_beyond_the_queue_gets_429_with_retry_after():
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "whisper_eas.cli.main", "serve", "--port", str(port),
                                "--max-batch", "1", "--max-queue", "0", "--log-level", "warning"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)

        async def flood():
            async with httpx.AsyncClient(timeout=120) as c:
                return await asyncio.gather(*(
                    c.post(base + "/v1/audio/transcriptions", files={"file": (JFK.name, JFK.read_bytes())},
                           data={"model": "whisper-1"}) for _ in range(6)))

        responses = asyncio.run(flood())
        codes = sorted(r.status_code for r in responses)
        assert set(codes) <= {200, 429} and codes[0] == 200 and codes[-1] == 429, codes
        refused = next(r for r in responses if r.status_code == 429)
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["code"] == "queue_full"
    finally:
        process.kill()
        process.wait()
