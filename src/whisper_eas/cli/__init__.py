"""The command-line entry points (`trt-transcribe`, `whisper-eas ...`).

Their processes give numpy's BLAS one thread, unless the user set one. ONNX Runtime's thread pools
do the numerical work. OpenBLAS threads started for the log-mel's filterbank product keep spinning
after it, and on 2 cores that took a core from the encoder run next: a full window took 0.25 s
instead of 0.20 s, and a whole 106 s recording 6-8% longer. This runs before numpy is imported,
because OpenBLAS reads the variable when it loads; Ray workers started from here inherit it.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
