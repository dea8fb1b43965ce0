"""Time one log_prob_and_score of the mnist5k energy at n = 500 on the GPU; size the reference."""
import os
import time

import torch

from benchmark.cells import build_target
from targets.precision import exact_float32

device = os.environ.get("GPU", "cuda")
target = build_target("ebm_mnist5k", {}, device, "float32")
x = torch.rand(500, target.dim, device=device)
sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
with exact_float32():  # as MALA evaluates it
    for _ in range(5):
        target.log_prob_and_score(x)
    sync()
    t0 = time.perf_counter()
    reps = int(os.environ.get("PROBE_REPS", "30"))
    for _ in range(reps):
        target.log_prob_and_score(x)
    sync()
t = (time.perf_counter() - t0) / reps
budget = float(os.environ.get("REF_SECONDS", "150"))
steps = int(min(30000, max(1000, budget / (2 * 1.2 * t))) // 500 * 500)
print(f"log_prob_and_score n=500: {t * 1e3:.2f} ms; reference budget {budget:.0f} s")
print(f"STEPS={steps}")
