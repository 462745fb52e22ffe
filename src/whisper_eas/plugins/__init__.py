"""The frame-pruning step outside PyTorch: standard-op ONNX graph, plugin node, TensorRT plugin, Triton kernel."""
