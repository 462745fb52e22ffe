"""A peer for the service benchmark: FastAPI over faster-whisper int8, requests run concurrently in
a thread pool on a `WhisperModel(num_workers=N)` (what speaches does), greedy like ours.

Not part of the product: `scripts/bench_serve.py` starts it as the strongest simple
faster-whisper server. Usage: python scripts/fw_server.py CT2_DIR --port P [--workers 2]
"""

from __future__ import annotations

import argparse
import io

import uvicorn
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from faster_whisper import WhisperModel


def build(ct2_dir: str, workers: int, threads: int) -> FastAPI:
    model = WhisperModel(ct2_dir, device="cpu", compute_type="int8", cpu_threads=threads, num_workers=workers)
    app = FastAPI()

    def transcribe(data: bytes, language: str | None) -> dict:
        segments, info = model.transcribe(io.BytesIO(data), beam_size=1, language=language)
        text = "".join(s.text for s in segments).strip()
        return {"text": text, "usage": {"type": "duration", "seconds": round(info.duration)}}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(file: UploadFile = File(...), model_name: str = Form("whisper-1", alias="model"),
                             language: str | None = Form(None)) -> dict:
        return await run_in_threadpool(transcribe, await file.read(), language)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ct2_dir")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=2, help="WhisperModel num_workers (concurrent requests)")
    parser.add_argument("--threads", type=int, default=1, help="CTranslate2 threads per worker")
    args = parser.parse_args()
    uvicorn.run(build(args.ct2_dir, args.workers, args.threads), host="127.0.0.1", port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
