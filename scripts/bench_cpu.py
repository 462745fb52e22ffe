"""CPU benchmark (ONNX Runtime, PyTorch, faster-whisper): see `whisper_eas.benchmark.cpu`."""

from whisper_eas.benchmark.cpu import main

if __name__ == "__main__":
    main()
