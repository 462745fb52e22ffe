"""Soak test of `whisper-eas serve`: N requests through the official `openai` client, all accounted for.

Drives a running server (`--url`, with `--pid` for its memory) or starts `whisper-eas serve` on a
loopback port itself (`--serve-args "--ray --replicas 2"` for the Ray Serve deployment). First a
reference pass at concurrency 1 (the server's own text per distinct file: the transcript a request
must get however it was batched; tests/test_serve.py checks that text equals trt-transcribe's),
then N requests at C concurrent clients, mixing the manifest's short clips with one long recording
in every `--long-every`. Checks that:

* every request is answered exactly once, with a transcript or OpenAI's error envelope (no
  connection error, no client timeout, no body that is neither), matched to its request by index;
* each transcript equals the reference text of its own file (so none went to another request);
* the server counted exactly the requests sent (`whisper_eas_requests_total` of the endpoint, from
  /metrics: nothing lost or answered twice on its side);

and samples the resident memory of the server process and its children (Ray Serve's replicas are
children of the raylet the command starts) every `--sample-every` answered requests, so
`--requests 10000` shows whether memory is flat (the last sample against the first).

  python scripts/serve_soak.py --requests 1000 --clients 32
  python scripts/serve_soak.py --requests 1000 --clients 32 --serve-args "--ray --replicas 2" --label ray2
  python scripts/serve_soak.py --url http://127.0.0.1:8000 --pid 12345 --requests 10000

Writes docs/data/bench/serve_soak-LABEL-N.json and prints one markdown table row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import psutil

from whisper_eas.evaluation.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "speech-dev"
ENDPOINT = "/v1/audio/transcriptions"


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path
    duration_s: float
    long: bool


def clips(short_manifest: Path, long_manifest: Path) -> tuple[list[Clip], list[Clip]]:
    short = [Clip(u.id, Path(u.path), u.duration_s, False) for u in read_manifest(short_manifest)]
    long = [Clip(u.id, Path(u.path), u.duration_s, True) for u in read_manifest(long_manifest)]
    return short, long


def schedule(short: list[Clip], long: list[Clip], requests: int, long_every: int, seed: int) -> list[Clip]:
    """Request i's file: a long recording every `long_every`-th request, else the next short clip
    of a seeded shuffle (cycled)."""
    order = list(short)
    random.Random(seed).shuffle(order)
    plan, s, l = [], 0, 0
    for i in range(requests):
        if long and long_every > 0 and i % long_every == long_every - 1:
            plan.append(long[l % len(long)])
            l += 1
        else:
            plan.append(order[s % len(order)])
            s += 1
    return plan


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "whisper_eas.cli.main", "serve", "--port", str(port), "--log-level", "warning",
               *extra]
    log = tempfile.NamedTemporaryFile(prefix="serve_soak-", suffix=".log", delete=False)  # a pipe nobody reads
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)  # would block
    print(f"serve_soak: {' '.join(command[2:])}; its log: {log.name}", flush=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"serve_soak: the server exited: {Path(log.name).read_text()[-2000:]}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    os.killpg(process.pid, signal.SIGKILL)
    raise SystemExit("serve_soak: the server did not answer /health in 600 s")


def stop_server(process: subprocess.Popen) -> int | None:
    """SIGTERM, as a service manager stops it; its exit code (None: killed after 180 s)."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return None


def rss(pid: int) -> dict:
    """Resident MB of `pid` and all its descendants, the total and per process (name: MB)."""
    root = psutil.Process(pid)
    total, parts = 0.0, {}
    for proc in [root] + root.children(recursive=True):
        try:
            mb = proc.memory_info().rss / 2**20
            name = Path(proc.cmdline()[0]).name if proc.pid == pid else proc.name()  # no machine paths
        except psutil.Error:
            continue
        total += mb
        key = f"{name} ({proc.pid})"
        parts[key] = round(mb, 1)
    biggest = dict(sorted(parts.items(), key=lambda kv: -kv[1])[:6])
    return {"rss_mb": round(total, 1), "processes": len(parts), "largest_mb": biggest}


def served_count(base: str, key: str | None) -> float | None:
    """The server's count of answered transcription requests (every status), from /metrics."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        text = httpx.get(base + "/metrics", headers=headers, timeout=30).text
    except httpx.HTTPError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f'whisper_eas_requests_total{{endpoint="{ENDPOINT}"'):
            total += float(line.split()[-1])
    return total


async def send(client: openai.AsyncOpenAI, clip: Clip) -> dict:
    """One request: ('text', transcript) or ('envelope', status, error) or ('lost', what happened)."""
    started = time.perf_counter()
    try:
        reply = await client.audio.transcriptions.create(model="whisper-1", file=(clip.path.name, clip.path.read_bytes()))
        outcome = {"kind": "text", "text": reply.text}
    except openai.APIStatusError as error:
        try:
            body = error.response.json()
            envelope = body["error"]
            ok = isinstance(envelope, dict) and {"message", "type", "param", "code"} <= set(envelope)
        except (ValueError, KeyError, TypeError):
            ok, envelope = False, error.response.text[:200]
        outcome = {"kind": "envelope" if ok else "lost", "status": error.status_code, "error": envelope}
    except (openai.APIConnectionError, openai.APITimeoutError) as error:
        outcome = {"kind": "lost", "error": f"{type(error).__name__}: {error}"}
    outcome["latency_s"] = time.perf_counter() - started
    return outcome


async def reference(base: str, key: str | None, files: list[Clip], timeout: float) -> dict[str, str]:
    """The server's text per distinct file, one request at a time."""
    texts = {}
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key=key or "unused", max_retries=0,
                                  timeout=timeout) as client:
        for clip in files:
            outcome = await send(client, clip)
            if outcome["kind"] != "text":
                raise SystemExit(f"serve_soak: the reference request for {clip.id} failed: {outcome}")
            texts[clip.id] = outcome["text"]
    return texts


async def soak(base: str, key: str | None, plan: list[Clip], concurrency: int, timeout: float, pid: int | None,
               sample_every: int) -> tuple[list[dict | None], list[dict], float]:
    """Every request of `plan` by `concurrency` workers taking the next index; (outcome per index,
    memory samples, wall seconds)."""
    outcomes: list[dict | None] = [None] * len(plan)
    answers: list[int] = [0] * len(plan)
    samples: list[dict] = []
    next_index, done = 0, 0
    started = time.perf_counter()

    def sample() -> None:
        if pid is not None:
            samples.append({"requests": done, "elapsed_s": round(time.perf_counter() - started, 1), **rss(pid)})
            print(f"  {done} requests, {samples[-1]['elapsed_s']} s: RSS {samples[-1]['rss_mb']:.0f} MB", flush=True)

    async def worker(client: openai.AsyncOpenAI) -> None:
        nonlocal next_index, done
        while next_index < len(plan):
            index = next_index
            next_index += 1
            outcome = await send(client, plan[index])
            answers[index] += 1
            outcomes[index] = outcome
            done += 1
            if done % sample_every == 0 or done == len(plan):
                sample()

    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        async with openai.AsyncOpenAI(base_url=base + "/v1", api_key=key or "unused", max_retries=0, timeout=timeout,
                                      http_client=http) as client:
            sample()  # before the first request
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    duplicated = [i for i, n in enumerate(answers) if n > 1]
    if duplicated:
        raise AssertionError(f"requests answered more than once: {duplicated[:10]}")
    return outcomes, samples, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (default: start `whisper-eas serve` here)")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for the memory samples")
    parser.add_argument("--serve-args", default="", help="extra `whisper-eas serve` flags, e.g. \"--ray --replicas 2\"")
    parser.add_argument("--api-key", default=os.environ.get("WHISPER_EAS_API_KEY"))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (closed loop)")
    parser.add_argument("--long-every", type=int, default=100, help="one long recording every K requests (0: none)")
    parser.add_argument("--sample-every", type=int, default=1000, help="memory sample every K answered requests")
    parser.add_argument("--manifest", type=Path, default=DATA / "manifest-short.tsv")
    parser.add_argument("--long-manifest", type=Path, default=DATA / "manifest-long.tsv")
    parser.add_argument("--timeout", type=float, default=900.0, help="client timeout per request (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default=None, help="names the run (default: uvicorn, or the serve args)")
    parser.add_argument("--out", type=Path, default=None, help="JSON (default docs/data/bench/serve_soak-LABEL-N.json)")
    args = parser.parse_args()
    if args.requests < 1 or args.clients < 1 or args.sample_every < 1:
        raise SystemExit("serve_soak: --requests, --clients and --sample-every must be >= 1")

    short, long = clips(args.manifest, args.long_manifest)
    plan = schedule(short, long, args.requests, args.long_every, args.seed)
    distinct = list({clip.id: clip for clip in plan}.values())
    label = args.label or ("url" if args.url else ("uvicorn" if not args.serve_args else
                                                  "-".join(args.serve_args.replace("--", "").split())))
    process = None
    if args.url:
        base, pid = args.url.rstrip("/"), args.pid
    else:
        process, base = start_server(shlex.split(args.serve_args))
        pid = process.pid
    try:
        print(f"serve_soak: {base}, reference pass over {len(distinct)} files", flush=True)
        refs = asyncio.run(reference(base, args.api_key, distinct, args.timeout))
        counted_before = served_count(base, args.api_key)
        print(f"serve_soak: {args.requests} requests at {args.clients} clients", flush=True)
        outcomes, samples, wall = asyncio.run(soak(base, args.api_key, plan, args.clients, args.timeout, pid,
                                                   args.sample_every))
        counted_after = served_count(base, args.api_key)
    finally:
        exit_code = stop_server(process) if process is not None else None

    texts = [o for o in outcomes if o and o["kind"] == "text"]
    envelopes = [o for o in outcomes if o and o["kind"] == "envelope"]
    lost = [i for i, o in enumerate(outcomes) if o is None or o["kind"] == "lost"]
    wrong = [plan[i].id for i, o in enumerate(outcomes) if o and o["kind"] == "text" and o["text"] != refs[plan[i].id]]
    audio = sum(plan[i].duration_s for i, o in enumerate(outcomes) if o and o["kind"] == "text")
    latencies = [o["latency_s"] for o in outcomes if o]
    served = None if counted_before is None or counted_after is None else counted_after - counted_before
    first, last = (samples[0], samples[-1]) if samples else (None, None)
    step = next((s for s in samples if s["requests"] >= min(args.sample_every, args.requests)), None)
    record = {
        "label": label, "url": args.url, "serve_args": args.serve_args, "requests": args.requests,
        "clients": args.clients, "long_every": args.long_every, "long_requests": sum(c.long for c in plan),
        "manifests": [str(p.relative_to(ROOT.parent)) if p.is_absolute() and ROOT.parent in p.parents else str(p)
                      for p in (args.manifest, args.long_manifest)],
        "answered_text": len(texts), "answered_envelope": len(envelopes),
        "envelope_statuses": sorted({o["status"] for o in envelopes}), "lost": len(lost), "lost_examples":
            [{"index": i, "outcome": outcomes[i]} for i in lost[:5]],
        "duplicated": 0, "server_counted": served, "text_mismatches": len(wrong), "mismatch_examples": wrong[:10],
        "wall_s": round(wall, 1), "audio_s": round(audio, 1), "throughput_audio_s_per_s": round(audio / wall, 2),
        "requests_per_s": round(args.requests / wall, 2), "p50_s": round(percentile(latencies, 0.5), 3),
        "p95_s": round(percentile(latencies, 0.95), 3), "p99_s": round(percentile(latencies, 0.99), 3),
        "memory": samples,
        "rss_first_sample_mb": first and first["rss_mb"], "rss_at_first_step_mb": step and step["rss_mb"],
        "rss_last_mb": last and last["rss_mb"],
        "rss_growth_since_first_step": round(last["rss_mb"] / step["rss_mb"] - 1, 4) if last and step else None,
        "server_exit_code": exit_code,
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs (shared: timings indicative)",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = args.out or ROOT / "docs" / "data" / "bench" / f"serve_soak-{label}-{args.requests}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    ok = not lost and not wrong and (served is None or served == args.requests)
    growth = record["rss_growth_since_first_step"]
    print(f"| {label} | {args.requests} ({record['long_requests']} long) | {args.clients} | {len(texts)} | "
          f"{len(envelopes)} | {len(lost)} | {len(wrong)} | {served if served is not None else '-'} | "
          f"{record['throughput_audio_s_per_s']} | {record['p50_s']} / {record['p95_s']} | "
          f"{first and first['rss_mb']} -> {step and step['rss_mb']} -> {last and last['rss_mb']}"
          f"{f' ({growth:+.1%})' if growth is not None else ''} |")
    print(f"serve_soak: {'PASS' if ok else 'FAIL'}; {out.relative_to(ROOT) if ROOT in out.parents else out}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
