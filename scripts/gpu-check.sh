#!/usr/bin/env bash
# The GPU checks in one prepared run (about 10 minutes on one H100 with 16 cores), for a machine
# with a CUDA device: the CUDA tests, `make bench` with its CUDA keys, a paper-scale door-unlock
# run for a fixed wall-clock slice, and the compile/capture check. Every number lands in
# reports/bench/gpu.json (bench keys, written by benchmarks/run.py) and reports/bench/gpu-run.json
# (the slice), with the device's name; the logs go to reports/bench/gpu-*.log.
#
#   bash scripts/gpu-check.sh            # SLICE_S=180 by default
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=reports/bench
mkdir -p "$OUT"
make venv >/dev/null
PY=.venv/bin/python
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')" || exit 2
SLICE_S=${SLICE_S:-180}

echo "== 1. CUDA tests"
"$PY" -m pytest -q -k cuda tests/test_learner_device.py tests/test_replay_device.py 2>&1 | tail -5 \
    | tee "$OUT/gpu-tests.log"

echo "== 2. make bench (CUDA keys -> $OUT/gpu.json)"
make bench 2>&1 | tee "$OUT/gpu-bench.log" | tail -25

echo "== 3. paper-scale door-unlock for ${SLICE_S} s, then the compile/capture check"
STORE="sqlite:///$PWD/$OUT/gpu-check.db"
rm -f "$OUT/gpu-check.db"
# the paper's protocol and learner (batch 512, one update per decision); 4 agents on the CPU
TORCH_LOGS=recompiles,graph_breaks timeout -s INT "$SLICE_S" .venv/bin/dqt train --task door-unlock \
    --num-agents 4 --train-steps 300000 --experiment gpu-check --tracking-uri "$STORE" --quiet \
    > "$OUT/gpu-run.log" 2>&1
"$PY" - "$STORE" "$SLICE_S" "$OUT" <<'EOF'
import json, re, sys, time
from pathlib import Path
import torch
from mlflow.tracking import MlflowClient

store, slice_s, out = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
client = MlflowClient(store)
(run,) = client.search_runs([client.get_experiment_by_name("gpu-check").experiment_id])
def last(key):
    pts = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
    return pts[-1].value if pts else float("nan")
def mean(key, skip=0.3):  # the steady part: the first 30 % of points are start-up and compile
    vals = [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
    vals = vals[int(len(vals) * skip):]
    return sum(vals) / len(vals) if vals else float("nan")
steps = max((m.step for m in client.get_metric_history(run.info.run_id, "perf/env_steps_per_s")), default=0)
env_per_s, upd_per_s = mean("perf/env_steps_per_s"), mean("perf/updates_per_s")
log = (out / "gpu-run.log").read_text()
result = {
    "device": torch.cuda.get_device_name(0), "slice_s": slice_s, "env_steps_reached": steps,
    "env_steps_per_s": env_per_s, "updates_per_s": upd_per_s, "policy_lag": mean("perf/policy_lag"),
    "recompiles": len(re.findall(r"[Rr]ecompil", log)), "graph_breaks": len(re.findall(r"[Gg]raph break", log)),
    # 300k env steps at the steady rate; the run is learner-bound if updates/s < env steps/s / 2
    "extrapolated_300k_s": 300_000 / env_per_s if env_per_s == env_per_s and env_per_s > 0 else None,
    "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
}
(out / "gpu-run.json").write_text(json.dumps(result, indent=2))
print(json.dumps(result, indent=2))
EOF
