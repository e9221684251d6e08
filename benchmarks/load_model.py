"""Embedded-model load cost: first build from GGUF, cached load, and transformers' load.

Each measurement runs in its own process so peak RSS is its own. Prints one JSON line last:
    {"build_s": ..., "cached_load_s": ..., "hf_load_s": ..., "ours_peak_rss_mb": ..., ...}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

OURS = r"""
import json, resource, time, sys
t0 = time.perf_counter()
from s3ft_jax.models import embedded, from_pretrained
home = sys.argv[1]
t = time.perf_counter(); path = embedded.ensure_embedded_model("smollm2-135m-instruct", home=home); build = time.perf_counter() - t
t = time.perf_counter(); path = embedded.ensure_embedded_model("smollm2-135m-instruct", home=home); verify = time.perf_counter() - t
t = time.perf_counter(); model = from_pretrained(path); load = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"build_s": build, "verify_s": verify, "load_s": load, "peak_rss_mb": rss, "path": str(path)}))
"""

HF = r"""
import json, resource, time, sys
import torch
from transformers import AutoModelForCausalLM
t = time.perf_counter(); model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32); load = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"load_s": load, "peak_rss_mb": rss}))
"""


def run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        first = run(OURS, home)  # empty home: builds from GGUF
        cached = run(OURS, home)  # built: verify + load only
        hf = run(HF, first["path"])
    result = {
        "build_s": round(first["build_s"], 2),
        "cached_verify_s": round(cached["verify_s"], 2),
        "cached_load_s": round(cached["verify_s"] + cached["load_s"], 2),
        "hf_load_s": round(hf["load_s"], 2),
        "ours_peak_rss_mb": round(cached["peak_rss_mb"]),
        "ours_first_build_peak_rss_mb": round(first["peak_rss_mb"]),
        "hf_peak_rss_mb": round(hf["peak_rss_mb"]),
        "machine": f"{os.cpu_count()} CPU cores",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
