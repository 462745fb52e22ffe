"""OpenAI's audio API on the wire: the form fields a request may carry, and the bodies we answer.

Field names and shapes follow the `openai` Python package's types (`Transcription`,
`TranscriptionVerbose`, `TranslationVerbose`, `TranscriptionTextDeltaEvent`,
`TranscriptionTextDoneEvent`), so code written for api.openai.com runs unchanged. Nothing here
touches the model: the app turns a form into a `TranscriptionRequest`, the engine decodes, and
`render` turns the result into the body of the format asked for.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from whisper_eas.languages import LANGUAGES, language_name
from whisper_eas.outputs import render as render_file
from whisper_eas.results import Segment, TranscriptionResult

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
WHISPER_ALIAS = "whisper-1"  # what clients written for OpenAI send
FALLBACK_STEP = 0.2  # openai-whisper's temperature ladder: 0.0, 0.2, ..., 1.0
SHORT_CLIP_S = 30.0  # one window: a clip this short needs no timestamp tokens to find its next seek
_MEDIA = {"json": "application/json", "verbose_json": "application/json", "text": "text/plain; charset=utf-8",
          "srt": "application/x-subrip; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


class ApiError(Exception):
    """An error the client gets as OpenAI's envelope `{"error": {message, type, param, code}}`."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error", headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return envelope(self.message, self.type, self.param, self.code)

    def __reduce__(self) -> tuple[Any, ...]:  # whole across processes (a Ray replica returns it to the ingress)
        return type(self), (self.status, self.message, self.param, self.code, self.type, self.headers)


def envelope(message: str, type: str = "invalid_request_error", param: str | None = None,
             code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass(frozen=True)
class TranscriptionRequest:
    """One request's fields, checked; `settings()` are the Transcriber settings they ask for."""

    task: str  # transcribe | translate
    model: str
    response_format: str = "json"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    granularities: frozenset[str] = field(default_factory=frozenset)
    stream: bool = False

    @property
    def words(self) -> bool:
        return "word" in self.granularities

    def settings(self) -> dict[str, Any]:
        """Transcriber settings: OpenAI's temperature 0 is Whisper's fallback ladder (greedy, then
        hotter while a window fails its checks); T > 0 keeps the greedy first pass (the pipeline's
        rule) and starts the ladder's sampled tries at T."""
        ladder = (0.0,) + tuple(round(t, 2) for t in _ladder_from(self.temperature)) if self.temperature > 0 else None
        settings: dict[str, Any] = {"task": self.task, "language": self.language, "initial_prompt": self.prompt,
                                    "word_timestamps": self.words}
        if ladder is not None:
            settings["temperature"] = ladder
        return settings

    def needs_timestamps(self, duration_s: float) -> bool:
        """Timestamp tokens cost decoder steps; json and text of a clip within one window do not use
        them (a longer file needs them to place its next window)."""
        return self.response_format not in ("json", "text") or self.words or duration_s > SHORT_CLIP_S


def _ladder_from(temperature: float) -> list[float]:
    steps = [temperature]
    while steps[-1] + FALLBACK_STEP <= 1.0 + 1e-9:
        steps.append(steps[-1] + FALLBACK_STEP)
    return steps


def parse_form(form: Mapping[str, Any], task: str, models: tuple[str, ...], multilingual: bool) -> TranscriptionRequest:
    """Check the form's fields (not the file) and raise `ApiError` naming the first bad one."""
    allowed = {"file", "model", "prompt", "response_format", "temperature", "stream", "timestamp_granularities[]",
               "timestamp_granularities", "chunking_strategy", "include[]", "include"}
    if task == "transcribe":
        allowed.add("language")
    model = _text(form, "model")
    if model is None:
        raise ApiError(400, "you must provide a model parameter", param="model", code="missing_required_parameter")
    if model not in models:
        raise ApiError(404, f"The model '{model}' does not exist; this server serves {', '.join(models)}",
                       param="model", code="model_not_found")
    unknown = sorted(set(form.keys()) - allowed)
    if unknown:
        raise ApiError(400, f"unrecognized request argument supplied: {unknown[0]}", param=unknown[0],
                       code="unknown_parameter")
    response_format = _text(form, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(400, f"'{response_format}' is not one of {list(RESPONSE_FORMATS)} - 'response_format'",
                       param="response_format", code="invalid_value")
    language = _language(_text(form, "language"), multilingual) if task == "transcribe" else None
    if task == "translate" and not multilingual:
        raise ApiError(400, f"the model '{model}' is English-only: it cannot translate; serve a multilingual "
                            "model (e.g. --model base) for /v1/audio/translations", param="model",
                       code="unsupported_model")
    temperature = _temperature(_text(form, "temperature"))
    granularities = _granularities(form, response_format)
    stream = _boolean(_text(form, "stream"), "stream")
    if stream and response_format not in ("json", "text"):
        raise ApiError(400, f"streaming is supported for response_format json and text, not '{response_format}'",
                       param="stream", code="unsupported_value")
    return TranscriptionRequest(task, model, response_format, language, _text(form, "prompt") or None, temperature,
                                granularities, stream)


def _text(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"'{name}' must be a text field, not a file", param=name, code="invalid_type")
    return value.strip()


def _language(code: str | None, multilingual: bool) -> str | None:
    if not code:
        return None
    code = code.lower()
    if code not in LANGUAGES:
        raise ApiError(400, f"language '{code}' is not a Whisper language; use an ISO-639-1 code such as 'en' or 'de'",
                       param="language", code="invalid_language_format")
    if not multilingual and code != "en":
        raise ApiError(400, f"the served model is English-only; it cannot transcribe language '{code}'",
                       param="language", code="unsupported_language")
    return code


def _temperature(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise ApiError(400, f"temperature must be a number from 0 to 1, got '{text}'", param="temperature",
                       code="invalid_value")
    return round(value, 2)


def _granularities(form: Any, response_format: str) -> frozenset[str]:
    values: list[str] = []
    for name in ("timestamp_granularities[]", "timestamp_granularities"):
        getter = getattr(form, "getlist", None)
        raw = getter(name) if getter is not None else ([form[name]] if name in form else [])
        values += [v.strip() for v in raw if isinstance(v, str)]
    bad = [v for v in values if v not in GRANULARITIES]
    if bad:
        raise ApiError(400, f"'{bad[0]}' is not one of {list(GRANULARITIES)} - 'timestamp_granularities[]'",
                       param="timestamp_granularities[]", code="invalid_value")
    if values and response_format != "verbose_json":
        raise ApiError(400, "timestamp_granularities needs response_format verbose_json",
                       param="timestamp_granularities[]", code="invalid_value")
    return frozenset(values)


def _boolean(text: str | None, name: str) -> bool:
    if not text:
        return False
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise ApiError(400, f"'{name}' must be true or false, got '{text}'", param=name, code="invalid_value")


def usage(result: TranscriptionResult) -> dict[str, Any]:
    """OpenAI bills whisper-1 by the second: `{"type": "duration", "seconds": ...}` (rounded up)."""
    return {"type": "duration", "seconds": math.ceil(result.duration_s)}


def render(result: TranscriptionResult, request: TranscriptionRequest) -> tuple[str, str]:
    """(body, media type) of the response format the request asked for."""
    fmt = request.response_format
    if fmt == "json":
        return json.dumps({"text": result.text, "usage": usage(result)}, ensure_ascii=False), _MEDIA[fmt]
    if fmt == "text":
        return result.text + "\n", _MEDIA[fmt]
    if fmt in ("srt", "vtt"):
        return render_file(result, fmt), _MEDIA[fmt]
    return json.dumps(verbose(result, request), ensure_ascii=False), _MEDIA[fmt]


def verbose(result: TranscriptionResult, request: TranscriptionRequest) -> dict[str, Any]:
    """`TranscriptionVerbose` / `TranslationVerbose`: segments unless only words were asked for."""
    body: dict[str, Any] = {"task": request.task, "language": language_name(result.language) or "english",
                            "duration": round(result.duration_s, 3), "text": result.text}
    if request.granularities != {"word"}:
        body["segments"] = [_segment(s) for s in result.segments]
    if request.words:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end}
                         for s in result.segments for w in (s.words or [])]
    body["usage"] = usage(result)
    return body


def _segment(segment: Segment) -> dict[str, Any]:
    return {"id": segment.id, "seek": segment.seek, "start": segment.start, "end": segment.end,
            "text": segment.text, "tokens": list(segment.tokens), "temperature": segment.temperature,
            "avg_logprob": segment.avg_logprob, "compression_ratio": segment.compression_ratio,
            "no_speech_prob": segment.no_speech_prob}


def delta_event(text: str) -> str:
    """`transcript.text.delta` as one server-sent event."""
    return _event({"type": "transcript.text.delta", "delta": text})


def done_event(result: TranscriptionResult) -> str:
    """`transcript.text.done`; its usage is the token kind the `openai` package types for it."""
    output = sum(len(s.tokens) for s in result.segments)
    return _event({"type": "transcript.text.done", "text": result.text,
                   "usage": {"type": "tokens", "input_tokens": 0, "output_tokens": output, "total_tokens": output}})


def error_event(error: ApiError) -> str:
    return _event({"type": "error", **error.body()})


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
