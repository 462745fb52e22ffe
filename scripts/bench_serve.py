"""Load benchmark of `whisper-eas serve` against faster-whisper servers, side by side in one run.

Each server is started in turn on a loopback port, warmed up with two requests, then driven by N
concurrent clients (closed loop: each client sends its next clip as soon as its last one is
answered) over the same clips, for each N in --clients; then the long recordings at 4 clients.
Reported per server and level: throughput (audio seconds per wall second), latency p50/p95/p99,
errors, corpus WER, the server's resident memory after the level and its peak; and the WER of
ours against each peer on the same clips with a paired bootstrap interval. `--rates 1,2,4` runs
an open loop instead (requests arriving at a fixed Poisson rate, answered or not), to find where
the service saturates: the most requests answered per second at any rate, then a run offered 70%
of that, whose p95 is set against the same clips sent one at a time to the idle server
(`scripts/plot_serve_load.py` draws the report).

  python scripts/bench_serve.py --manifest ../shared/data/speech-val/manifest-short.tsv \
      --long-manifest ../shared/data/speech-val/manifest-long.tsv --out docs/data/serve_bench.json

`--url URL` drives a server already running there instead (e.g. `whisper-eas serve --device cuda`
started by scripts/gpu_check.sh; `--label` names it, `--pid` its process for the memory columns).

Peers: `faster-whisper-server` (PyPI; needs its own venv, --fws-python) and
`scripts/fw_server.py` (FastAPI + faster-whisper int8, num_workers=2 thread pool), both on the
same tiny.en weights (the embedded CTranslate2 model) in int8, greedy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from whisper_eas.checkpoints.registry import embedded_ct2_dir
from whisper_eas.evaluation.manifest import read_manifest
from whisper_eas.evaluation.stats import compare
from whisper_eas.evaluation.wer import corpus_wer

HERE = Path(__file__).resolve().parent
OURS = ("ours", "ours-unbatched", "ray1", "ray2")
LABELS = {"ours": "whisper-eas serve", "ours-unbatched": "whisper-eas serve --max-batch 1 (batching off)",
          "ray1": "whisper-eas serve --ray --replicas 1", "ray2": "whisper-eas serve --ray --replicas 2",
          "fws": "faster-whisper-server 0.0.3 int8 (PyPI)",
          "fastapi-fw": "FastAPI + faster-whisper int8, num_workers=2 thread pool"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def commands(names: list[str], ct2: Path, fws_python: str, scratch: Path,
             ours_args: list[str] | None = None) -> dict[str, list[str]]:
    py = sys.executable
    config = scratch / "fws.yaml"
    config.write_text(f"models:\n  - name: whisper-1\n    path: {ct2}\n    model_options: {{device: cpu, "
                      "compute_type: int8}\n    transcribe_options: {beam_size: 1}\n")
    known = {
        "ours": [py, "-m", "whisper_eas.cli.main", "serve", "--log-level", "warning"],
        "ours-unbatched": [py, "-m", "whisper_eas.cli.main", "serve", "--log-level", "warning",
                           "--max-batch", "1", "--max-queue", "1000"],
        "ray1": [py, "-m", "whisper_eas.cli.main", "serve", "--log-level", "warning", "--ray", "--replicas", "1",
                 "--cpus-per-replica", "1"],
        "ray2": [py, "-m", "whisper_eas.cli.main", "serve", "--log-level", "warning", "--ray", "--replicas", "2",
                 "--cpus-per-replica", "1"],
        "fws": [fws_python, "-m", "faster_whisper_server", "--config", str(config), "--host", "127.0.0.1"],
        "fastapi-fw": [py, str(HERE / "fw_server.py"), str(ct2), "--workers", "2"],
    }
    for name in OURS:
        known[name] += ours_args or []
    return {name: known[name] for name in names}


def start(command: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """The server on a free port, its output into `log` (a file: an undrained pipe blocks a chatty
    server, Ray's above all), once its /health answers."""
    port = free_port()
    with log.open("w") as sink:
        process = subprocess.Popen(command + ["--port", str(port)], stdout=subprocess.DEVNULL, stderr=sink)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command}: exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{command}: no /health in 600 s")


def rss_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) in MB of the server process and its children, and of Ray Serve
    replicas (children of Ray's raylet, not of the command) where there are any."""
    proc = psutil.Process(pid)
    replicas = [p for p in psutil.process_iter(["cmdline"]) if "ServeReplica" in " ".join(p.info["cmdline"] or [])]
    now = peak = 0.0
    for p in [proc] + proc.children(recursive=True) + replicas:
        try:
            now += p.memory_info().rss
            status = Path(f"/proc/{p.pid}/status").read_text()
            peak += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) * 1024
        except (psutil.Error, OSError, StopIteration):
            pass
    return now / 2**20, peak / 2**20


async def drive(base: str, clips: list, clients: int) -> tuple[list[dict], float]:
    """Closed loop: `clients` workers take the next clip from a shared queue until none is left."""
    queue: asyncio.Queue = asyncio.Queue()
    for clip in clips:
        queue.put_nowait(clip)
    records: list[dict] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            clip = queue.get_nowait()
            started = time.perf_counter()
            try:
                response = await client.post(base + "/v1/audio/transcriptions",
                                             files={"file": (clip.path.name, clip.path.read_bytes())},
                                             data={"model": "whisper-1", "response_format": "json"})
                ok = response.status_code == 200
                text = response.json().get("text", "") if ok else ""
                status = response.status_code
            except httpx.HTTPError as error:
                ok, text, status = False, "", type(error).__name__
            records.append({"id": clip.id, "latency_s": time.perf_counter() - started, "ok": ok, "status": status,
                            "text": text, "audio_s": clip.duration_s})

    async with httpx.AsyncClient(timeout=900, limits=httpx.Limits(max_connections=clients + 4)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        return records, time.perf_counter() - started


async def drive_open(base: str, clips: list, rate: float, duration: float, seed: int = 0) -> tuple[list[dict], float]:
    """Open loop: requests arrive at `rate` per second (Poisson) for `duration` s, whether or not
    earlier ones were answered, as real traffic does; clips are taken in order, cycling."""
    import random

    rng = random.Random(seed)
    records: list[dict] = []
    tasks = []

    async def one(client: httpx.AsyncClient, clip) -> None:
        started = time.perf_counter()
        try:
            response = await client.post(base + "/v1/audio/transcriptions",
                                         files={"file": (clip.path.name, clip.path.read_bytes())},
                                         data={"model": "whisper-1", "response_format": "json"})
            ok, status = response.status_code == 200, response.status_code
            text = response.json().get("text", "") if ok else ""
        except httpx.HTTPError as error:
            ok, text, status = False, "", type(error).__name__
        records.append({"id": clip.id, "latency_s": time.perf_counter() - started, "ok": ok, "status": status,
                        "text": text, "audio_s": clip.duration_s})

    async with httpx.AsyncClient(timeout=900, limits=httpx.Limits(max_connections=None)) as client:
        started = time.perf_counter()
        index = 0
        while time.perf_counter() - started < duration:
            tasks.append(asyncio.create_task(one(client, clips[index % len(clips)])))
            index += 1
            await asyncio.sleep(rng.expovariate(rate))
        await asyncio.gather(*tasks)
        return records, time.perf_counter() - started


def summarize(records: list[dict], wall: float, refs: dict[str, str]) -> dict:
    latencies = sorted(r["latency_s"] for r in records)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(round(q * (len(latencies) - 1))))]

    ok = [r for r in records if r["ok"]]
    audio = sum(r["audio_s"] for r in ok)
    wer, _ = corpus_wer([(refs[r["id"]], r["text"]) for r in ok]) if ok else (float("nan"), 0)
    return {"requests": len(records), "errors": len(records) - len(ok), "wall_s": round(wall, 2),
            "audio_s": round(audio, 1), "throughput": round(audio / wall, 2), "answered_rps": round(len(ok) / wall, 3),
            "p50_s": round(pct(0.5), 3), "p95_s": round(pct(0.95), 3), "p99_s": round(pct(0.99), 3),
            "median_latency_s": round(statistics.median(latencies), 3), "wer": round(wer, 2)}


def measure(base: str, pid: int | None, label: str, clips: list, longs: list, levels: list, rates: bool,
            duration: float, refs: dict[str, str], transcripts: dict[str, str]) -> dict:
    """One server at every level (after a 2-request warm-up), then the long recordings at 4 clients;
    `transcripts` gets the texts of the highest level. Memory columns only where `pid` is known."""
    asyncio.run(drive(base, clips[:2], 1))  # warm-up
    entry: dict = {"label": label, "levels": {}}
    for clients in levels:
        if rates:
            records, wall = asyncio.run(drive_open(base, clips, clients, duration))
        else:
            records, wall = asyncio.run(drive(base, clips, clients))
        entry["levels"][clients] = summarize(records, wall, refs)
        entry["levels"][clients]["rss_after_mb"] = round(rss_mb(pid)[0]) if pid else None
        if rates or clients == max(levels):  # open loop: each rate sends a prefix of the clips, so keep all
            transcripts.update({r["id"]: r["text"] for r in records if r["ok"]})
        print(label, clients, entry["levels"][clients], flush=True)
    if rates:  # saturation: the most answered per second at any offered rate; then 70% of it, offered
        top = max(entry["levels"].values(), key=lambda level: level["answered_rps"])
        rate = round(0.7 * top["answered_rps"], 3)
        records, wall = asyncio.run(drive_open(base, clips, rate, duration, seed=1))
        entry["saturation"] = {"answered_rps": top["answered_rps"], "audio_s_per_s": top["throughput"]}
        entry["at_70_percent"] = {"offered_rps": rate, **summarize(records, wall, refs)}
        # the yardstick: the same clips, sent one at a time to the idle server
        records, wall = asyncio.run(drive(base, clips[:len(records)], 1))
        entry["idle"] = summarize(records, wall, refs)
        print(label, "idle", entry["idle"], flush=True)
        entry["at_70_percent"]["p95_over_idle_p95"] = round(entry["at_70_percent"]["p95_s"] / entry["idle"]["p95_s"], 2)
        print(label, "70%", entry["at_70_percent"], flush=True)
    if longs:
        records, wall = asyncio.run(drive(base, longs, 4))
        entry["long_4_clients"] = summarize(records, wall, refs)
        print(label, "long", entry["long_4_clients"], flush=True)
    entry["peak_rss_mb"] = round(rss_mb(pid)[1]) if pid else None
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True, help="short clips (TSV: id path duration_s text)")
    parser.add_argument("--long-manifest", help="long recordings, sent at 4 clients after the short levels")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--rates", help="open loop instead: requests per second, e.g. 1,2,4,8 (Poisson arrivals)")
    parser.add_argument("--duration", type=float, default=60.0, help="open loop: seconds of arrivals per rate")
    parser.add_argument("--limit", type=int, help="first N clips only")
    parser.add_argument("--servers", default="ours,ours-unbatched,fws,fastapi-fw", help=f"of {list(LABELS)}")
    parser.add_argument("--fws-python", default="/tmp/fwsenv/bin/python",
                        help="python of a venv with faster-whisper-server installed")
    parser.add_argument("--ours-args", default="", help='extra `whisper-eas serve` flags for our servers, '
                        'e.g. "--engine-dir FOLDER"')
    parser.add_argument("--url", help="drive the server running at this base URL instead of starting --servers")
    parser.add_argument("--label", default="whisper-eas serve", help="--url: the server's name in the report")
    parser.add_argument("--pid", type=int, help="--url: the server's process id (for its memory)")
    parser.add_argument("--device-name", help="the accelerator the server runs on, for the report (e.g. the GPU)")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    clips = read_manifest(args.manifest, args.limit)
    longs = read_manifest(args.long_manifest) if args.long_manifest else []
    refs = {u.id: u.text for u in clips + longs}
    rates = bool(args.rates)
    levels = [float(r) for r in args.rates.split(",")] if rates else [int(c) for c in args.clients.split(",")]
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    report: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg(),
                                "device": args.device_name},
                    "mode": f"open loop, {args.duration:g} s of Poisson arrivals per rate" if args.rates else
                    "closed loop (clients)", "clips": len(clips), "clip_audio_s": round(sum(c.duration_s for c in clips), 1),
                    "servers": {}}
    transcripts: dict[str, dict[str, str]] = {}
    if args.url:  # a server already running: drive it, start and stop nothing
        names = []
        report["servers"]["ours"] = measure(args.url.rstrip("/"), args.pid, args.label, clips, longs, levels, rates,
                                            args.duration, refs, transcripts.setdefault("ours", {}))
    with tempfile.TemporaryDirectory() as scratch:
        peers = {"fws", "fastapi-fw"} & set(names)  # only the peers load the CTranslate2 model
        ct2 = embedded_ct2_dir("tiny.en", Path(scratch)) if peers else Path(scratch)
        for name, command in commands(names, ct2, args.fws_python, Path(scratch), args.ours_args.split()).items():
            process, base = start(command, Path(scratch) / f"{name}.log")
            try:
                label = LABELS[name] + (f" {args.ours_args}" if args.ours_args and name in OURS else "")
                report["servers"][name] = measure(base, process.pid, label, clips, longs, levels, rates,
                                                  args.duration, refs, transcripts.setdefault(name, {}))
            finally:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
    report["machine"]["loadavg_after"] = os.getloadavg()
    ours = transcripts.get("ours")
    short_refs = {c.id: c.text for c in clips}
    report["wer_vs_ours"] = {name: compare(short_refs, hyps, ours)["all"]
                             for name, hyps in transcripts.items() if ours is not None and name != "ours"}
    print(json.dumps(report, indent=1))
    print(markdown(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        device = f"Device: {args.device_name}\n\n" if args.device_name else ""
        args.markdown.write_text(device + markdown(report) + "\n")


def markdown(report: dict) -> str:
    """The table docs/benchmarks.md shows: one row per server and level, then the long recordings."""
    rows = ["| server | clients (or req/s) | audio s / s | p50 s | p95 s | p99 s | errors | WER % | RSS after MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for entry in report["servers"].values():
        for clients, level in entry["levels"].items():
            rows.append(f"| {entry['label']} | {clients} | {level['throughput']:.1f} | {level['p50_s']:.2f} | "
                        f"{level['p95_s']:.2f} | {level['p99_s']:.2f} | {level['errors']} | {level['wer']:.2f} | "
                        f"{level['rss_after_mb'] if level['rss_after_mb'] is not None else '-'} |")
        if "long_4_clients" in entry:
            long = entry["long_4_clients"]
            rows.append(f"| {entry['label']}: long recordings | 4 | {long['throughput']:.1f} | {long['p50_s']:.2f} | "
                        f"{long['p95_s']:.2f} | {long['p99_s']:.2f} | {long['errors']} | {long['wer']:.2f} | "
                        f"peak {entry['peak_rss_mb'] if entry['peak_rss_mb'] is not None else '-'} |")
    saturated = [entry for entry in report["servers"].values() if "saturation" in entry]
    if saturated:
        rows += ["", "| server | saturation req/s | audio s / s | offered at 70% req/s | p95 s there | idle p95 s | "
                 "ratio | errors there |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for entry in saturated:
            sat, at70 = entry["saturation"], entry["at_70_percent"]
            rows.append(f"| {entry['label']} | {sat['answered_rps']:.2f} | {sat['audio_s_per_s']:.1f} | "
                        f"{at70['offered_rps']:.2f} | {at70['p95_s']:.2f} | {entry['idle']['p95_s']:.2f} | "
                        f"{at70['p95_over_idle_p95']:.1f}x | {at70['errors']} |")
    for name, delta in report.get("wer_vs_ours", {}).items():
        rows.append(f"\nWER, ours minus {report['servers'][name]['label']} (same clips, highest level): "
                    f"{delta['wer_b']:.2f} - {delta['wer_a']:.2f} = {delta['delta']:+.2f} "
                    f"[95% {delta['low']:+.2f}, {delta['high']:+.2f}]")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
