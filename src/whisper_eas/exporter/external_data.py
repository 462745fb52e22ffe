"""Graph weights in a file beside the graph (ONNX external data), so ONNX Runtime maps them.

A graph whose weights sit inside its protobuf is parsed whole and then copied into tensors: the
decoder step of tiny.en (112 MB) took 0.24 s to open and briefly held 240 MB. With the weights in
`<graph>.onnx.data` ONNX Runtime memory-maps them: 0.09 s and 111 MB, and pages the process never
touches (the rows of the 51,864-token embedding that are not looked up) are never read
(docs/benchmarks.md, "Graph weights outside the graph"). Every reader of our graphs (ONNX Runtime,
`onnx.load`, Polygraphy, TensorRT's parser) opens the pair from the graph's path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from whisper_eas.exporter.manifest import ExportError, file_inside
from whisper_eas.io_utils import link_or_copy, publish_folder, sha256_file

MIN_BYTES = 4 << 20  # smaller graphs open fast either way; one file is simpler to handle
DATA_SUFFIX = ".data"


def data_file(graph_file: str) -> str:
    """The weights file's name for a graph file (`decoder_step.onnx` -> `decoder_step.onnx.data`)."""
    return graph_file + DATA_SUFFIX


def read_graph(path: Path):
    """The ModelProto at `path` with its weights in memory, wherever they are stored.

    `onnx.load` refuses a weights file with more than one hard link (a guard against a graph that
    points at a file planted elsewhere); our folders share weights through hard links on purpose
    (cached decoders, test copies), so the weights are read here from files that must be plain
    names inside the graph's own folder."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    for tensor in _tensors(model):
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
        with open(file_inside(path.parent, info.location, ExportError), "rb") as weights:
            weights.seek(info.offset or 0)
            tensor.raw_data = weights.read(info.length) if info.length else weights.read()
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]
    return model


def _tensors(model):
    """Every initializer of the graph and of its subgraphs (where external data can be)."""
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        yield from graph.initializer
        graphs += [attr.g for node in graph.node for attr in node.attribute if attr.HasField("g")]
        graphs += [g for node in graph.node for attr in node.attribute for g in attr.graphs]


def externalize(folder: Path, graph_file: str, min_bytes: int = MIN_BYTES, shared: Path | None = None) -> str | None:
    """Move the weights of `folder/graph_file` into `folder/<graph_file>.data`; returns that name, or
    None where the graph is under `min_bytes` and stays whole.

    `shared` (a cache folder): a graph already converted there (same bytes, same name) is linked
    instead, so exports of one model share their weights files on disk (the decoder, the alignment
    graph), and a new conversion is published there. Both files are written under temporary names
    and renamed, graph last; a graph that was a hard link into a cache is replaced, never edited
    through the link."""
    import onnx

    path = folder / graph_file
    if path.stat().st_size < min_bytes:
        return None
    name = data_file(graph_file)
    entry = shared / f"{sha256_file(path)[:24]}-{graph_file}" if shared is not None else None
    if entry is not None and _complete(entry, graph_file, name):
        link_or_copy(entry / name, folder / name)
        link_or_copy(entry / graph_file, path)
        return name
    model = read_graph(path)
    staging = folder / f".{graph_file}.{os.getpid()}.staging"
    staging.mkdir(exist_ok=True)
    try:
        onnx.save_model(model, str(staging / graph_file), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=name, size_threshold=1024)
        os.replace(staging / name, folder / name)
        os.replace(staging / graph_file, path)
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    if entry is not None:
        hashes = {f: sha256_file(folder / f) for f in (graph_file, name)}
        publish_folder(entry, {f: folder / f for f in hashes}, {"sha256.json": json.dumps(hashes)})
    return name


def _complete(entry: Path, *files: str) -> bool:
    """The shared entry holds `files`, unchanged since it was published."""
    try:
        recorded = json.loads((entry / "sha256.json").read_text())
    except (OSError, ValueError):
        return False
    return all((entry / f).is_file() and recorded.get(f) == sha256_file(entry / f) for f in files)
