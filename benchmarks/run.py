"""`make bench`: measure, print a table and write reports/bench/latest.json (and, with a GPU,
reports/bench/gpu.json: the CUDA keys with the device's name).

Run it alone: on a 2-core machine anything else running measures nothing.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from benchmarks import bench_decode, bench_env, bench_learner, bench_update_path

TARGETS = {  # issue targets on the 2-core build machine
    "learner_updates_per_s": 10.0,
    "decode_actions_per_s": 1000.0,
    "decode_actions_per_s_b8": 4000.0,
    "ratio_1agent_to_raw": 0.5,  # env_steps_per_s_1agent >= 0.5 x env_steps_per_s_raw
}


def main() -> int:
    results: dict[str, float] = {}
    results.update(bench_learner.run("cpu"))
    results.update(bench_learner.cpu_variants())
    results["trainer_updates_per_s"] = bench_update_path.trainer_updates_per_s("cpu")
    if torch.cuda.is_available():  # these keys also go, with the device name, to reports/bench/gpu.json
        results["learner_updates_per_s_cuda"] = bench_learner.run("cuda")["learner_updates_per_s"]
        results.update(bench_update_path.run_cuda(results["learner_updates_per_s_cuda"]))
    results.update(bench_decode.run())
    results.update(bench_env.run())
    try:
        from benchmarks import bench_trainer

        results.update(bench_trainer.run(results.get("env_steps_per_s_raw")))
    except ImportError:
        pass
    rows = []
    for key, value in results.items():
        target = TARGETS.get(key)
        verdict = "" if target is None else ("ok" if value >= target else f"BELOW {target:g}")
        rows.append((key, value, verdict))
    width = max(len(k) for k, _, _ in rows)
    print(f"{'benchmark':{width}}  {'median':>12}  target")
    for key, value, verdict in rows:
        print(f"{key:{width}}  {value:12.2f}  {verdict}")
    out = Path(__file__).resolve().parent.parent / "reports" / "bench" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": platform.machine(), "torch": torch.__version__,
            "cpu_count": torch.get_num_threads()}
    out.write_text(json.dumps({**results, "_meta": meta}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
