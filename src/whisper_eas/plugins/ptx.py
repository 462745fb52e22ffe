"""PTX surgery for TensorRT's AOT plugin launch (no triton import: testable anywhere)."""

from __future__ import annotations

import re


def strip_implicit_params(ptx: str, keep: int) -> str:
    """The PTX with its entry's parameters cut to the first `keep` (the ones TensorRT passes).

    Triton >= 3.3 appends scratch-memory pointers after the user's arguments; a kernel that needs
    no scratch never reads them. Reading one would make the cut PTX wrong, so that raises.
    """
    entry = re.search(r"\.entry\s+\w+\s*\((.*?)\)", ptx, re.S)
    if entry is None:
        raise RuntimeError("Triton's PTX has no .entry")
    params = [p.strip() for p in entry.group(1).split(",") if p.strip()]
    extra = [p.split()[-1] for p in params[keep:]]
    used = [name for name in extra if re.search(rf"\[{re.escape(name)}(\+\d+)?\]", ptx[entry.end():])]
    if used:
        raise RuntimeError(f"the Triton prune kernel reads implicit parameters {used}, which TensorRT's AOT launch "
                           "does not pass; build with the plugin's Python implementation (no --aot-plugin)")
    return ptx[: entry.start(1)] + "\n" + ",\n".join(params[:keep]) + "\n" + ptx[entry.end(1):]
