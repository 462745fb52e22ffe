"""Two versions of whisper-eas as whole processes: `trt-transcribe FILE` with the package from source
folder A, then B (PYTHONPATH), taking turns per recording; the fastest of ROUNDS (default 2) wall
times and the peak RSS (`wait4`) of each, the per-recording ratio A/B and its median.

    git worktree add --detach ../before <commit>
    OUT=ab.json python scripts/ab_versions.py ../before/src src MANIFEST.tsv [MANIFEST.tsv ...]

EXTRA="--batched" adds options to every command.
"""
import json, os, subprocess, sys, tempfile, time, statistics
files = [l.split("\t")[1] for m in sys.argv[3:] for l in open(m).read().splitlines()[1:]]
roots = [os.path.dirname(m) for m in sys.argv[3:] for l in open(m).read().splitlines()[1:]]
A, B = sys.argv[1], sys.argv[2]
rounds = int(os.environ.get("ROUNDS", "2"))
out = {}
for f, root in zip(files, roots):
    path = os.path.join(root, f)
    for r in range(rounds):
        for label, src in ((("A", A), ("B", B)) if r % 2 == 0 else (("B", B), ("A", A))):
            env = dict(os.environ, PYTHONPATH=src)
            t = time.perf_counter()
            p = subprocess.Popen(["trt-transcribe", path, "--output-dir", os.path.join(tempfile.gettempdir(), f"ab-versions-{label}"), "--overwrite"] + os.environ.get("EXTRA", "").split(),
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(p.pid, 0)
            dt = time.perf_counter() - t
            out.setdefault(f, {}).setdefault(label, []).append((dt, usage.ru_maxrss / 1e3))
    a = min(x[0] for x in out[f]["A"]); b = min(x[0] for x in out[f]["B"])
    print(f"{os.path.basename(f):40s} A {a:6.2f} s {max(x[1] for x in out[f]['A']):5.0f} MB  B {b:6.2f} s {max(x[1] for x in out[f]['B']):5.0f} MB  A/B {a/b:.2f}x", flush=True)
ta = sum(min(x[0] for x in v["A"]) for v in out.values()); tb = sum(min(x[0] for x in v["B"]) for v in out.values())
ratios = [min(x[0] for x in v["A"]) / min(x[0] for x in v["B"]) for v in out.values()]
print(f"total A {ta:.2f} s B {tb:.2f} s  A/B {ta/tb:.2f}x  median per file {statistics.median(ratios):.2f}x")
json.dump(out, open(os.environ.get("OUT", "ab_versions.json"), "w"), indent=1)
