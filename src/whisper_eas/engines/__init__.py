"""TensorRT engines: build settings and profiles, the builder (Polygraphy loaders), `engines.json`.

Running them is `runners.trt_runner`. Nothing here imports tensorrt at module level.
"""
