"""Uploads: refused while they stream in once over the limit, then kept as a file for the decoder.

The limit is enforced on the bytes as they arrive (and on Content-Length before any arrive), so an
oversized upload costs neither memory nor disk beyond the limit. An accepted upload is written to a
private temporary folder under a neutral name with the client's extension (ffmpeg and libsndfile
pick decoders by content, the extension is a hint), then opened exactly as `trt-transcribe` opens a
file: the same checks, the same errors, the same transcript.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from whisper_eas.serve.protocol import envelope

FORM_SLACK = 64 * 1024  # multipart boundaries and the text fields around the file


class UploadTooLarge(Exception):
    """The request body passed the limit while it was being read."""


def too_large_message(limit: int) -> str:
    return f"the upload is over this server's limit of {limit / 2**20:g} MB (--max-upload-mb)"


class BodyLimit:
    """ASGI middleware: 413 for a declared Content-Length over the limit; `UploadTooLarge` raised
    from `receive` once a streamed body passes it (the handler turns that into the same 413)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes + FORM_SLACK
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_413(send, self.max_bytes)
            return
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise UploadTooLarge(too_large_message(self.max_bytes))
            return message

        await self.app(scope, limited, send)


async def _send_413(send: Callable, max_bytes: int) -> None:
    body = json.dumps(envelope(too_large_message(max_bytes), param="file", code="file_too_large")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def safe_suffix(filename: str | None) -> str:
    """The upload's extension if it is a plain one (`.flac`), else none: never a path from the client."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def save_upload(source: BinaryIO, filename: str | None, folder: Path) -> Path:
    """Copy the spooled upload into `folder` (private to this request); returns the file's path."""
    path = folder / f"upload{safe_suffix(filename)}"
    source.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    return path


def request_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="whisper-eas-upload-"))


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
