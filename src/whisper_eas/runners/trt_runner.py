"""TensorRT backend: runs the engines of an export folder (`whisper-eas export ... --engines`).

Mirrors the ONNX Runtime runner behind the same `Runner` interface: encoder head -> prune ->
tail (`dense=True`: head -> tail on all frames), cross keys/values once per window, then one
decoder-step engine call per step with one self-attention cache tensor per layer. Each engine is a
Polygraphy `TrtRunner` fed torch CUDA tensors, which it binds by address (no copies); its output
buffers are reused by the next call, so outputs are cloned. Polygraphy's stream is a blocking
stream, which orders it after work torch queued on the legacy default stream.

Before TensorRT sees an engine, `engines.json` is checked against this machine's TensorRT and
GPU and against the folder's ONNX files; engines whose prune step is the `AttentivePrune` plugin
get the plugin registered first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from whisper_eas.deps import require_cuda, require_tensorrt
from whisper_eas.engines.manifest import EngineManifest, Platform
from whisper_eas.exporter.manifest import TOKENIZER, ExportManifest
from whisper_eas.runners.base import EncodedBatch, Runner
from whisper_eas.tokenizer import WhisperTokenizer


class EngineCall:
    """One activated Polygraphy `TrtRunner`: a dict of torch tensors in, a dict of torch tensors out."""

    def __init__(self, path: Path, name: str):
        from polygraphy.backend.common import BytesFromPath
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        # "runtime": activation memory for the shapes of each call, not the profile's maxima
        self.runner = TrtRunner(EngineFromBytes(BytesFromPath(str(path))), name=name, allocation_strategy="runtime")
        self.runner.activate()
        engine = self.runner.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.host_inputs = {n for n in names if engine.is_shape_inference_io(n)}  # shape tensors live on the host

    def __call__(self, feed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feed = {k: v.cpu() if k in self.host_inputs else v.contiguous() for k, v in feed.items()}
        outputs = self.runner.infer(feed, check_inputs=False, copy_outputs_to_host=False)
        return {name: value.clone() for name, value in outputs.items()}

    def close(self) -> None:
        if self.runner.is_active:
            self.runner.deactivate()


class TrtDecoderSession:
    """Decoding state of one batch: per-layer self cache on the GPU, cross k/v fixed per window."""

    def __init__(self, step: EngineCall, cross_k: torch.Tensor, cross_v: torch.Tensor):
        self.step_engine = step
        self.n_layers = cross_k.shape[0]
        layers = range(self.n_layers)
        self.cross = {**{f"cross_k_{i}": cross_k[i] for i in layers}, **{f"cross_v_{i}": cross_v[i] for i in layers}}
        rows, heads, _, head_dim = cross_k.shape[1:]
        # zero positions, but a real address: TensorRT rejects null pointers for empty tensors
        empty = torch.zeros(rows, heads, 1, head_dim, device=cross_k.device)[:, :, :0]
        self.cache = {f"self_{kv}_{i}": empty for kv in "kv" for i in layers}
        self.offset = 0

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        device = next(iter(self.cross.values())).device
        feed = {"tokens": tokens.to(device, torch.long), "offset": torch.tensor(self.offset, device=device),
                **self.cache, **self.cross}
        outputs = self.step_engine(feed)
        self.cache = {name: outputs[f"new_{name}"] for name in self.cache}
        self.offset += tokens.shape[1]
        return outputs["logits"]

    def reorder(self, index: torch.Tensor) -> None:
        index = index.to(next(iter(self.cache.values())).device)
        self.cache = {name: value.index_select(0, index) for name, value in self.cache.items()}

    def select(self, rows: torch.Tensor) -> None:
        self.reorder(rows)
        rows = rows.to(next(iter(self.cross.values())).device)
        self.cross = {name: value.index_select(0, rows) for name, value in self.cross.items()}


class TensorRTRunner(Runner):
    """Runs the engines of one export folder; model and prune config come from its manifests."""

    backend = "tensorrt"

    def __init__(self, engine_dir: str | Path, device: str = "cuda", verify: bool = True):
        require_tensorrt("the tensorrt backend")
        require_cuda("the tensorrt backend")
        export = ExportManifest.load(engine_dir, verify=verify)
        self.manifest = EngineManifest.load(engine_dir)
        self.manifest.check(export, Platform.current(), hashes=verify)
        if self.manifest.prune_form == "plugin":
            from whisper_eas.plugins.trt_plugin import register_plugin

            register_plugin()
        calls = {graph: EngineCall(self.manifest.engine_path(graph), graph) for graph in export.graphs}
        self._bind(export, calls, device if device.startswith("cuda") else "cuda")

    @classmethod
    def over_calls(cls, export: ExportManifest, calls: dict[str, Callable], device: str) -> "TensorRTRunner":
        """This runner's logic over other engine calls (dict of tensors in, dict of tensors out).

        TensorRT cannot run here; tests drive the runner with ONNX Runtime sessions of the same
        ONNX files, which checks everything but TensorRT itself: graph and tensor names, the cache
        hand-over between steps, beam reordering and row selection.
        """
        runner = cls.__new__(cls)
        runner.manifest = None
        runner._bind(export, calls, device)
        return runner

    def _bind(self, export: ExportManifest, calls: dict[str, Callable], device: str) -> None:
        self.export, self.engines, self.device = export, calls, device
        dims = export.dims
        self.dims, self.prune, self.model_name, self.n_mels = dims, export.config, export.model, dims.n_mels
        self.tokenizer = WhisperTokenizer.from_file(export.directory / TOKENIZER, multilingual=dims.multilingual)

    @torch.inference_mode()
    def encode(self, mel: torch.Tensor, dense: bool = False) -> EncodedBatch:
        head = self.engines["encoder_head"]({"mel": mel.to(self.device, torch.float32)})
        hidden, kept = head["head_hidden"], None
        if self.prune is not None and not dense:
            names = self.export.graphs["prune"].input_names
            pruned = self.engines["prune"]({name: head[name] for name in names})
            hidden, kept = pruned["kept_hidden"], pruned["kept_index"].cpu()
        hidden = self.engines["encoder_tail"]({"tail_input": hidden})["encoder_hidden"]
        return EncodedBatch(hidden, kept, n_frames=self.dims.n_frames)

    @torch.inference_mode()
    def decoder(self, encoded: EncodedBatch, group: int = 1) -> TrtDecoderSession:
        cross = self.engines["decoder_cross"]({"encoder_hidden": encoded.hidden.to(self.device, torch.float32)})
        cross_k, cross_v = cross["cross_k"], cross["cross_v"]
        if group > 1:  # project once per window, then repeat the keys/values per beam
            cross_k, cross_v = cross_k.repeat_interleave(group, dim=1), cross_v.repeat_interleave(group, dim=1)
        return TrtDecoderSession(self.engines["decoder_step"], cross_k, cross_v)

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()

    def describe(self) -> dict:
        info = super().describe()
        info["engine_dir"] = str(self.export.directory)
        if self.manifest is not None:
            info.update(tensorrt=self.manifest.platform.tensorrt, gpu=self.manifest.platform.gpu,
                        prune_form=self.manifest.prune_form)
        return info
