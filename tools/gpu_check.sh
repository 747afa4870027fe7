#!/usr/bin/env bash
# The prepared GPU check of issue 26: one command for a fresh GPU machine (one H100 / H200,
# PyTorch, torchvision and timm preinstalled, no internet) that, in under 8 minutes,
#   1. makes a venv over the system torch and installs the carried wheels offline,
#   2. pytest -m gpu                                   (tests/gpu)
#   3. reprolib bench --profile gpu                    (one step per family: bf16, compile, ...)
#   4. reprolib compute templates --profile evidence   (seed 0, width 0.25, Table 1 at 0.25)
#   5. reprolib compute sidt --profile evidence        (seed 0)
# and writes everything into ONE folder ($OUT when set, else runs/gpu_check/): summary.json,
# summary.md (device, versions, wall time / exit code per step, what was skipped for time) and
# records.tar.gz (results/, figures/ and the step logs).  results/ and figures/ of the checkout
# are never touched (REPROLIB_RESULTS / REPROLIB_FIGURES / REPROLIB_RUNS point into a scratch
# folder).  Commit the folder's contents with the device named, e.g. under
# results/gpu_check/<device>-<date>/.
#
# Filling the carried folder (here, on a machine with pip access; carry/ is git-ignored):
#   tools/gpu_check.sh --fill            # pip download of the wheels the image lacks + the data
# which runs, for Python 3.12 / manylinux x86-64 (the GPU image's):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 ... -d carry/wheels  PKG==PIN ...   (pins: requirements.lock)
#   cp /work/shared/data/cifar10_subset.npz carry/        (never commit that file)
# The packages are the project's dependencies beyond torch / torchvision / timm that the image
# does not hold (FILL_PACKAGES below; the image's list is in the device notes).  Then:
#   run(command="tools/gpu_check.sh", carry=["carry"], timeout_s=540)
#
# Options:
#   --device cuda|cpu   cpu: hide the GPU, run everything on the CPU (for the dry-run test)
#   --shrink            smoke-sized settings (tiny models, the digits data set); also GPU_CHECK_SHRINK=1
#   --out DIR           output folder (default $OUT, else runs/gpu_check)
#   --carry DIR         carried wheels + data (default carry)
#   --python PY         use this interpreter as is: no venv, no install (e.g. .venv/bin/python)
#   --budget S          total seconds (default 465: under 8 minutes with the summary)
#   --print             print the steps and their commands, run nothing
#   --fill              fill the carry folder (see above) and exit
# Step caps (seconds, env): GPU_CHECK_T_INSTALL=60 _PYTEST=60 _BENCH=170 _TEMPLATES=90 _SIDT=120.
# Extra arguments: GPU_CHECK_BENCH_ARGS, GPU_CHECK_TEMPLATES_ARGS, GPU_CHECK_SIDT_ARGS.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

DEVICE=cuda
SHRINK=${GPU_CHECK_SHRINK:-0}
OUTDIR=${OUT:-$ROOT/runs/gpu_check}
CARRY=$ROOT/carry
PY_GIVEN=""
BUDGET=${GPU_CHECK_BUDGET:-465}
PRINT_ONLY=0
FILL=0
INSTALL_VENV=""
# the project's dependencies (requirements.lock pins) that the GPU image lacks; the rest of
# what reprolib imports (numpy, scipy, pandas, scikit-learn, matplotlib, seaborn, tqdm, onnx,
# onnxscript, onnxruntime, pytest, pytest-xdist) is preinstalled there
# (NAME alone: its requirements.lock pin; NAME==VERSION as given, e.g. the bench extra's pin)
FILL_PACKAGES=${GPU_CHECK_FILL:-"pycocotools submitit torch-pruning==1.6.1"}

while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=$2; shift 2 ;;
    --shrink) SHRINK=1; shift ;;
    --out) OUTDIR=$2; shift 2 ;;
    --carry) CARRY=$2; shift 2 ;;
    --python) PY_GIVEN=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --print) PRINT_ONLY=1; shift ;;
    --fill) FILL=1; shift ;;
    --_install) INSTALL_VENV=$2; shift 2 ;;       # internal: the install step
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done
case $DEVICE in cuda|cpu) ;; *) echo "gpu_check: --device cuda|cpu, got $DEVICE" >&2; exit 2 ;; esac

if [ "$FILL" = 1 ]; then
  mkdir -p "$CARRY/wheels" || exit 1
  pins=()
  for p in $FILL_PACKAGES; do
    case $p in *==*) pins+=("$p"); continue ;; esac
    pin=$(grep -i -E "^${p}==" requirements.lock | head -1)
    [ -n "$pin" ] || { echo "gpu_check: $p has no pin in requirements.lock" >&2; exit 1; }
    pins+=("$pin")
  done
  plats=()
  for n in 17 27 28 31 34 35; do plats+=(--platform "manylinux_2_${n}_x86_64"); done
  "${PYTHON:-python3}" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp "${plats[@]}" --platform manylinux2014_x86_64 \
      -d "$CARRY/wheels" "${pins[@]}" || exit 1
  src=${CIFAR10_SUBSET:-/work/shared/data/cifar10_subset.npz}
  if [ -f "$src" ]; then cp "$src" "$CARRY/"; else echo "gpu_check: no $src; copy cifar10_subset.npz into $CARRY/ by hand" >&2; fi
  du -sh "$CARRY"; ls -l "$CARRY" "$CARRY/wheels"
  exit 0
fi

install() {  # VENV: a venv over the system torch; the carried wheels offline; reprolib editable
  local PY=$1/bin/python
  python3 -m venv --system-site-packages "$1" || return 1
  local whl=("$CARRY"/wheels/*.whl)
  if [ -e "${whl[0]}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --find-links "$CARRY/wheels" "${whl[@]}" || return 1
  else
    echo "no wheels in $CARRY/wheels (tools/gpu_check.sh --fill): only what the image holds"
  fi
  # editable install without an index; where the image's setuptools cannot build it, a .pth
  # file does the same (the checkout on sys.path)
  if ! "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e "$ROOT"; then
    "$PY" -c 'import site, sys; open(site.getsitepackages()[0] + "/reprolib-checkout.pth", "w").write(sys.argv[1] + "\n")' "$ROOT" || return 1
    echo "editable install failed; $ROOT put on sys.path by a .pth file"
  fi
  "$PY" -c 'import reprolib, torch, timm, torchvision; print("reprolib from", reprolib.__file__)'
}

if [ -n "$INSTALL_VENV" ]; then install "$INSTALL_VENV"; exit; fi

START=$(date +%s)
DEADLINE=$((START + BUDGET))
RESERVE=15                              # seconds kept for the summary and the archive
mkdir -p "$OUTDIR" || exit 1
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/reprolib-gpu-check.XXXXXX") || exit 1
mkdir -p "$WORK/results" "$WORK/figures" "$WORK/runs" "$WORK/logs"
STEPS=$WORK/steps.tsv
: >"$STEPS"

export REPROLIB_RESULTS=$WORK/results REPROLIB_FIGURES=$WORK/figures REPROLIB_RUNS=$WORK/runs
export REPROLIB_NO_PROGRESS=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
[ -f "$CARRY/cifar10_subset.npz" ] && export REPROLIB_CIFAR10_SUBSET=$CARRY/cifar10_subset.npz
[ "$DEVICE" = cpu ] && export CUDA_VISIBLE_DEVICES=""

# --- the steps -----------------------------------------------------------------------------
if [ "$SHRINK" = 1 ]; then
  PROF_BENCH=smoke; PROF_EV=smoke
  BENCH_FAMILIES="sidt vtp"
  TEMPLATES_SHRINK=(-p "models=vgg19_cifar_tiny" -p "templates=base")
  SIDT_SHRINK=(-p "ratios=(0.4,)")
else
  PROF_BENCH=gpu; PROF_EV=evidence
  BENCH_FAMILIES="sidt vtp templates pe metaformer fit"   # the issue's families first
  TEMPLATES_SHRINK=(); SIDT_SHRINK=()
fi
# shellcheck disable=SC2206  # word splitting of the extra arguments is wanted
BENCH_EXTRA=(${GPU_CHECK_BENCH_ARGS:-})
# shellcheck disable=SC2206
TEMPLATES_EXTRA=(${GPU_CHECK_TEMPLATES_ARGS:-})
# shellcheck disable=SC2206
SIDT_EXTRA=(${GPU_CHECK_SIDT_ARGS:-})

PY=${PY_GIVEN:-$WORK/venv/bin/python}

record() {  # name rc wall status note command
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" >>"$STEPS"
}

# step NAME CAP MIN CMD...: run CMD with timeout min(CAP, time left), or skip it for time
step() {
  local name=$1 cap=$2 min=$3; shift 3
  local cmd="$*"
  if [ "$PRINT_ONLY" = 1 ]; then printf '%s\t%s\t%s\n' "$name" "$cap" "$cmd"; return 0; fi
  local now left t rc t0 wall status note=""
  now=$(date +%s); left=$((DEADLINE - RESERVE - now))
  t=$cap; [ "$left" -lt "$t" ] && t=$left
  if [ "$t" -lt "$min" ]; then
    record "$name" "" 0 skipped "skipped for time: ${left}s left, needs >= ${min}s" "$cmd"
    echo "== $name: skipped for time (${left}s left)"
    return 0
  fi
  echo "== $name (timeout ${t}s): $cmd"
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$t" "$@" >"$WORK/logs/$name.log" 2>&1
  rc=$?
  wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  case $rc in 0) status=ok ;; 124|137) status=timeout; note="stopped at ${t}s" ;; *) status=failed ;; esac
  [ "$t" -lt "$cap" ] && [ "$status" = timeout ] && note="$note (cap ${cap}s cut to the time left)"
  record "$name" "$rc" "$wall" "$status" "$note" "$cmd"
  tail -3 "$WORK/logs/$name.log"
  echo "== $name: $status rc=$rc ${wall}s"
}


if [ -n "$PY_GIVEN" ]; then
  [ "$PRINT_ONLY" = 1 ] || record install "" 0 skipped "--python $PY_GIVEN: no venv, no install" ""
else
  # the install runs as this script again (--_install VENV) so that it gets its own timeout
  step install "${GPU_CHECK_T_INSTALL:-60}" 10 bash "$ROOT/tools/gpu_check.sh" \
    --carry "$CARRY" --_install "$WORK/venv"
fi

step pytest-gpu "${GPU_CHECK_T_PYTEST:-60}" 20 \
  "$PY" -m pytest -q -p no:cacheprovider -o "addopts=-ra" -m gpu "$ROOT/tests/gpu"

# one bench step per family, so a family that outlasts the time left costs only itself
BENCH_END=$(( $(date +%s) + ${GPU_CHECK_T_BENCH:-170} ))
for fam in $BENCH_FAMILIES; do
  left_b=$((BENCH_END - $(date +%s)))
  [ "$PRINT_ONLY" = 1 ] && left_b=${GPU_CHECK_T_BENCH:-170}
  step "bench-$fam" "$left_b" 15 "$PY" -m reprolib bench --profile "$PROF_BENCH" \
    --device "$DEVICE" --only "$fam" "${BENCH_EXTRA[@]}"
done

step templates "${GPU_CHECK_T_TEMPLATES:-90}" 30 "$PY" -m reprolib compute templates \
  --profile "$PROF_EV" -p "seeds=(0,)" -p "widths=(0.25,)" -p "table1_width=0.25" -p "device=$DEVICE" \
  "${TEMPLATES_SHRINK[@]}" "${TEMPLATES_EXTRA[@]}"

step sidt "${GPU_CHECK_T_SIDT:-120}" 30 "$PY" -m reprolib compute sidt \
  --profile "$PROF_EV" -p "seeds=(0,)" -p "device=$DEVICE" "${SIDT_SHRINK[@]}" "${SIDT_EXTRA[@]}"

[ "$PRINT_ONLY" = 1 ] && { rm -rf "$WORK"; exit 0; }

# --- summary + archive ---------------------------------------------------------------------
SPY=$PY; [ -x "$SPY" ] || SPY=python3
GIT_COMMIT=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
"$SPY" - "$WORK" "$OUTDIR" "$START" "$BUDGET" "$DEVICE" "$SHRINK" "$GIT_COMMIT" "$GIT_DIRTY" "$LOAD" <<'EOF'
import json, os, platform, sys, time
work, out, start, budget, device, shrink, commit, dirty, load = sys.argv[1:10]
steps = []
for line in open(os.path.join(work, "steps.tsv")):
    name, rc, wall, status, note, cmd = line.rstrip("\n").split("\t")
    steps.append({"step": name, "status": status, "exit_code": int(rc) if rc else None,
                  "wall_s": float(wall), "note": note,
                  "command": cmd.replace(work, "$WORK"), "log": f"logs/{name}.log"})
info = {"python": platform.python_version(), "platform": platform.platform()}
try:
    import torch
    info["torch"] = torch.__version__
    info["cuda"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name(0)
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        cpu = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
               if ln.startswith("model name")] if os.path.exists("/proc/cpuinfo") else []
        info["device_name"] = f"cpu: {cpu[0] if cpu else platform.machine()}, {os.cpu_count()} cores"
except Exception as e:                               # the summary is written regardless
    info["torch_error"] = repr(e)
# reprolib first: its shim lets a torchvision wheel that lacks its C++ ops import (the CPU pair)
for mod in ("reprolib", "torchvision", "timm", "numpy", "onnxruntime", "torch_pruning"):
    try:
        info[mod] = __import__(mod).__version__
    except Exception as e:
        info[mod] = f"import failed ({type(e).__name__}: {str(e)[:80]})"
records = sorted(os.path.relpath(os.path.join(d, f), work)
                 for top in ("results", "figures") for d, _, fs in os.walk(os.path.join(work, top))
                 for f in fs if "/ckpt" not in d and not f.endswith(".pt"))
s = {"check": "tools/gpu_check.sh (issue 26)", "device": device, "shrink": shrink == "1",
     "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(start))),
     "wall_s": round(time.time() - int(start), 1), "budget_s": int(budget),
     "load_at_end": load, "git_commit": commit, "git_dirty_files": int(dirty),
     "versions": info, "steps": steps,
     "skipped_for_time": [x["step"] for x in steps if x["note"].startswith("skipped for time")],
     "stopped_at_timeout": [x["step"] for x in steps if x["status"] == "timeout"],
     "failed": [x["step"] for x in steps if x["status"] == "failed"],
     "records": records, "archive": "records.tar.gz"}
json.dump(s, open(os.path.join(out, "summary.json"), "w"), indent=1)
md = [f"# GPU check: {info.get('device_name', '?')}", "",
      f"Started {s['started_utc']}, {s['wall_s']} s of a {budget} s budget; device `{device}`"
      f"{', shrunk (smoke settings)' if s['shrink'] else ''}; commit {commit[:10]}"
      f" ({dirty} files changed); load at the end {load}.", "",
      "Versions: " + ", ".join(f"{k} {v}" for k, v in info.items() if k != "device_name"), "",
      "| step | status | exit | wall s | note |", "| --- | --- | --- | --- | --- |"]
md += [f"| {x['step']} | {x['status']} | {'' if x['exit_code'] is None else x['exit_code']}"
       f" | {x['wall_s']} | {x['note']} |" for x in steps]
md += ["", f"Skipped for time: {', '.join(s['skipped_for_time']) or 'nothing'}; stopped at "
       f"their timeout: {', '.join(s['stopped_at_timeout']) or 'none'}; failed: "
       f"{', '.join(s['failed']) or 'none'}.", "",
       f"{len(records)} record / figure files in records.tar.gz (results/, figures/, logs/);"
       " commands per step in summary.json.", ""]
open(os.path.join(out, "summary.md"), "w").write("\n".join(md))
EOF
# checkpoints stay out (git-ignored, and $OUT brings back 16 MiB a file at most)
tar -czf "$OUTDIR/records.tar.gz" -C "$WORK" --exclude=ckpt --exclude='*.pt' results figures logs
cat "$OUTDIR/summary.md"
# the exit status: 1 when a step that ran failed or timed out (skipped for time is no failure)
RC=0
awk -F'\t' '$4 == "failed" || $4 == "timeout" {bad = 1} END {exit bad}' "$STEPS" || RC=1
rm -rf "$WORK"
exit $RC
