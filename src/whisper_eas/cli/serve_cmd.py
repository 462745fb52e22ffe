"""`whisper-eas serve`: OpenAI's audio API on one model, windows batched across requests."""

from __future__ import annotations

import ipaddress
from pathlib import Path
import logging

import click

from whisper_eas.cli.common import (describe_prune, friendly_errors, model_option, named, prune_options,
                                    resolve_model, resolve_prune)
from whisper_eas.runners.factory import BACKEND_CHOICES

API_KEY_ENV = "WHISPER_EAS_API_KEY"


@click.command("serve", context_settings={"help_option_names": ["-h", "--help"]})
@model_option
@click.option("--engine-dir", type=click.Path(path_type=Path), help="ONNX export folder or TensorRT engines.")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(BACKEND_CHOICES),
              help="As trt-transcribe: auto picks TensorRT with engines and a GPU, else ONNX Runtime.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@prune_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; set --api-key then).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--api-key", envvar=API_KEY_ENV, show_envvar=True,
              help="Require 'Authorization: Bearer KEY' on every endpoint but /health.")
@click.option("--max-upload-mb", default=25.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Largest upload accepted (OpenAI's limit); larger ones get 413 while they stream in.")
@click.option("--max-batch", default=16, show_default=True, type=click.IntRange(min=1),
              help="Requests decoded together (one 30 s window each per round).")
@click.option("--max-queue", default=64, show_default=True, type=click.IntRange(min=0),
              help="Requests waiting beyond those decoding; more get 429 with Retry-After.")
@click.option("--request-timeout", default=600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds a request may take (504 after); also the shutdown's grace period.")
@click.option("--max-audio-minutes", default=240.0, show_default=True, type=click.FloatRange(min=0),
              help="Longest audio a request may hold, decoded (0: no limit); a small compressed upload can "
                   "decode to hours.")
@click.option("--ray", "use_ray", is_flag=True,
              help="Serve through Ray Serve replicas (each loads the model once); needs whisper-eas[ray].")
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(min=1), help="--ray: replicas.")
@click.option("--autoscale", metavar="MIN:MAX", help="--ray: autoscale between MIN and MAX replicas.")
@click.option("--address", help="--ray: a running cluster (ray://HOST:10001 or auto); default: a local Ray.")
@click.option("--cpus-per-replica", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="--ray: CPUs Ray reserves per replica.")
@click.option("--gpus-per-replica", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="--ray: GPUs per replica (with --device cuda).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@friendly_errors
def command(model, engine_dir, backend, device, dense, layer, keep_ratio, mass, strategy, scoring, query_stride,
            merge, host, port, api_key, max_upload_mb, max_batch, max_queue, request_timeout, max_audio_minutes,
            log_level,
            use_ray=False, replicas=1, autoscale=None, address=None, cpus_per_replica=1.0,
            gpus_per_replica=0.0) -> None:
    """Serve OpenAI's /v1/audio/transcriptions and /translations (default: embedded tiny.en, the padding trim).

    Works with the official client: OpenAI(base_url="http://HOST:PORT/v1", api_key=KEY).
    """
    from whisper_eas.deps import require

    for package in ("fastapi", "uvicorn", "multipart", "prometheus_client"):
        require(package, "whisper-eas serve")
    import uvicorn

    from whisper_eas.serve.app import ServeConfig, create_app
    from whisper_eas.transcribe import Transcriber

    prune = resolve_prune(model, dense, layer, keep_ratio, mass, strategy, scoring, query_stride, merge, engine_dir,
                          device, serve=True)
    if not use_ray and (named("autoscale") or named("address") or named("replicas")):
        raise click.UsageError("--replicas, --autoscale and --address go with --ray")
    if use_ray:
        _serve_on_ray(resolve_model(model, engine_dir), prune, backend, device, engine_dir, host, port, api_key,
                      max_upload_mb, max_batch, max_queue, request_timeout, max_audio_minutes, replicas, autoscale,
                      address, cpus_per_replica, gpus_per_replica, log_level)
        return
    transcriber = Transcriber.from_model(resolve_model(model, engine_dir), prune, backend, device, engine_dir,
                                         batch_size=max_batch, serve=True)
    info = transcriber.runner.describe()
    config = ServeConfig(str(info["model"]), api_key or None, max_upload_mb, max_batch, max_queue, request_timeout,
                         max_audio_minutes * 60 or None)
    click.echo(f"whisper-eas serve: model {info['model']} (also as whisper-1), {describe_prune(transcriber.runner.prune)}, "
               f"{info['backend']} on {info['device']} ({transcriber.backend_reason})", err=True)
    click.echo(f"  http://{host}:{port}/v1  auth: {'Bearer key' if config.api_key else 'none'}; "
               f"uploads <= {max_upload_mb:g} MB, audio <= {max_audio_minutes:g} min; batch {max_batch}, queue {max_queue}, "
               f"timeout {request_timeout:g} s", err=True)
    if config.api_key is None and not _loopback(host):
        click.echo(f"warning: listening on {host} without --api-key: anyone who reaches it can use it", err=True)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(transcriber, config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug",
                timeout_graceful_shutdown=int(request_timeout) + 1)


def _serve_on_ray(model, prune, backend, device, engine_dir, host, port, api_key, max_upload_mb, max_batch,
                  max_queue, request_timeout, max_audio_minutes, replicas, autoscale, address, cpus, gpus,
                  log_level: str) -> None:
    """Replicas on Ray Serve; the model is resolved (and exported, once) here, loaded in each replica."""
    from whisper_eas.config import DEFAULT_PRUNE
    from whisper_eas.deps import require
    from whisper_eas.runners.factory import make_runner
    from whisper_eas.serve.app import ServeConfig
    from whisper_eas.serve.ray_app import ModelSpec, deployment, run

    require("ray", "whisper-eas serve --ray")
    bounds = _bounds(autoscale) if autoscale else None
    runner = make_runner(backend, model, prune, device, engine_dir, load=False, serve=True)  # exports into the cache once
    info = runner.describe()
    spec = ModelSpec(model, None if prune is DEFAULT_PRUNE else prune, prune is DEFAULT_PRUNE, backend, device,
                     str(engine_dir) if engine_dir else None, max_batch)
    config = ServeConfig(str(info["model"]), api_key or None, max_upload_mb, max_batch, max_queue, request_timeout,
                         max_audio_minutes * 60 or None)
    scale = f"autoscale {bounds[0]}-{bounds[1]}" if bounds else f"{replicas} replica(s)"
    click.echo(f"whisper-eas serve --ray: model {info['model']} (also as whisper-1), "
               f"{describe_prune(runner.prune)}, {info['backend']} on {info['device']}; {scale}, "
               f"{cpus:g} CPU / {gpus:g} GPU each; http://{host}:{port}/v1", err=True)
    run(deployment(spec, config, replicas, bounds, cpus, gpus, runner.tokenizer.multilingual), host, port, address,
        log_level, request_timeout)


def _bounds(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    if not (sep and low.isdigit() and high.isdigit()) or not 0 <= int(low) <= int(high) or int(high) < 1:
        raise click.BadParameter(f"{text!r}: give MIN:MAX replicas, e.g. 1:4", param_hint="--autoscale")
    return int(low), int(high)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
