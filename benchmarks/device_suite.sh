#!/usr/bin/env bash
# One command for a lent GPU: decode speed and training MFU, as JSON lines, in at most 8 minutes.
#
#   benchmarks/device_suite.sh            # on the GPU (H100/H200): 1B-shaped bf16 model
#   benchmarks/device_suite.sh --tiny     # the same code paths on a CPU with a tiny model (a smoke test)
#   benchmarks/device_suite.sh --dry-run  # print the commands and their time limits, run nothing
#
# Lines on stdout, each one JSON object:
#   {"bench": "decode", "batch": 1|64|256, "ours_decode_tok_s", "of_roofline_datasheet", "of_roofline_measured",
#    "hf_decode_tok_s", "vs_hf", "hf_static_cache", "hf_compiled", ...}   (benchmarks/sampler_gpu.py)
#   {"bench": "train", "mfu", "step_s", "seq": 2048, ...}                  (benchmarks/train_gpu.py)
#   {"bench": "suite", "ok": true|false, "failed": [...], "wall_s": ...}   last
# A part that fails or passes its time limit gives {"bench": ..., "error": ...} and the rest still runs.
# PYTHON picks the interpreter (default: python); SUITE_NEW_TOKENS the decode length (default 256).
set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python}
mode=gpu
dry=0
for arg in "$@"; do
  case "$arg" in
    --tiny) mode=tiny ;;
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "device_suite.sh: unknown argument '$arg' (use --tiny, --dry-run, --help)" >&2; exit 2 ;;
  esac
done
new_tokens=${SUITE_NEW_TOKENS:-256}
case "$new_tokens" in ''|*[!0-9]*) echo "device_suite.sh: SUITE_NEW_TOKENS must be a positive integer, got '$new_tokens'" >&2; exit 2 ;; esac

# Time limits (seconds): 330 + 150 = 480, the 8 minutes.
if [ "$mode" = tiny ]; then
  decode=(timeout 330 "$PY" benchmarks/sampler_gpu.py --tiny --batches 1,4 --new-tokens 8 --prompt-len 16 --repeats 1)
  train=(timeout 150 "$PY" benchmarks/train_gpu.py --tiny)
else
  decode=(timeout 330 "$PY" benchmarks/sampler_gpu.py --batches 1,64,256 --new-tokens "$new_tokens" --prompt-len 128 --repeats 2)
  train=(timeout 150 "$PY" benchmarks/train_gpu.py --seq 2048 --batch 8 --steps 5 --warmup 2)
fi

if [ "$dry" = 1 ]; then
  printf '{"bench": "dry-run", "part": "decode", "command": "%s"}\n' "${decode[*]}"
  printf '{"bench": "dry-run", "part": "train", "command": "%s"}\n' "${train[*]}"
  exit 0
fi

start=$(date +%s)
failed=()
run_part() {  # name, command...: its JSON lines (the summary line is dropped: the rows carry it)
  local name=$1; shift
  local out rc
  out=$("$@" 2>/tmp/device_suite_$$_$name.err); rc=$?
  printf '%s\n' "$out" | grep '^{"bench"'
  if [ $rc -ne 0 ]; then
    failed+=("$name")
    local why="exit status $rc"; [ $rc -eq 124 ] && why="over its time limit"
    # The last of stderr, made JSON-safe without an interpreter (the failure may be the interpreter).
    printf '{"bench": "%s", "error": "%s", "stderr_tail": "%s"}\n' "$name" "$why" \
      "$(tail -c 400 /tmp/device_suite_$$_$name.err | tr -d '\000-\037"\\')"
  fi
  rm -f /tmp/device_suite_$$_$name.err
}
run_part decode "${decode[@]}"
run_part train "${train[@]}"
ok=true; [ ${#failed[@]} -eq 0 ] || ok=false
names=""
for f in "${failed[@]+"${failed[@]}"}"; do names="$names${names:+, }\"$f\""; done
printf '{"bench": "suite", "mode": "%s", "ok": %s, "failed": [%s], "wall_s": %d}\n' "$mode" "$ok" "$names" $(( $(date +%s) - start ))
[ "$ok" = true ]
