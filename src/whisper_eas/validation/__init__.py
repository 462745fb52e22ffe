"""Parity validation of exported graphs and engines against PyTorch (`whisper-eas validate`).

An application above `exporter` and `engines`: `parity` compares every output of every graph
through Polygraphy (ONNX Runtime, and TensorRT FP16 with `trt=True`); `tensorrt` supplies the
TensorRT runners (the folder's engines, or engines built in memory for the feeds).
"""
