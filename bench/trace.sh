#!/usr/bin/env bash
# What tracing costs (issue 16): a command run untraced, under memorun's
# tracer, and under strace with a seccomp filter, side by side in one
# hyperfine run each.
#
#   bench/trace.sh
#
# Three groups:
#   compile  a miss of cc -O2 -c blake3.c (the C file of the blake3 crate
#            that Cargo fetched, ~/.cargo/registry/src/*/blake3-*/c/blake3.c):
#            `memorun --force` untraced, `memorun --force --trace`, and the
#            bare command under strace
#   loop     the same for sh -c 'for i in $(seq 10000); do : < /etc/hostname;
#            done' (10,000 small opens, each a traced call)
#   hit      a hit over 1,000 unchanged traced inputs (sh -c 'cat src/*.h'
#            over 1,000 headers, 1,051 traced inputs with sh's own) against
#            the same hit untraced, and the bare command
#
# `--force` makes every run a miss that runs and records the command. The
# commands of a group are measured in rounds that rotate which goes first,
# merged (see `rounds`). The counts of one traced run come from
# examples/trace.rs.
#
# Targets: traced compile <= 1.05x untraced; the loop faster traced than
# under strace; a traced hit over 1,000 inputs < 20 ms over an untraced hit.
#
# Environment:
#   BENCH_RESULTS_DIR=DIR  also copy the hyperfine JSON there
#   ROUNDS=N (default 3): rounds, each command first in turn
#   RUNS_COMPILE=N (default 10), RUNS_LOOP=N (default 15): runs per round
#
# Needs: cargo, python3, cc; installs hyperfine and strace with apt-get when
# they are missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

# log, apt_install and table: see bench/lib.sh.
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

for tool in hyperfine strace; do
    if ! command -v "$tool" >/dev/null; then
        log "installing $tool (apt-get)"
        apt_install "$tool"
    fi
done

log "building memorun and the tracer example (cargo build --release)"
# built NAME CARGO-ARGS...: build one target in release and print the path
# of its executable (the static target's, see .cargo/config.toml).
built() {
    local name=$1 path
    shift
    path=$(cargo build --release "$@" --message-format=json-render-diagnostics |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$name")
    [[ -x $path ]] || { echo "bench/trace.sh: $name was not built" >&2; exit 1; }
    echo "$path"
}
MEMORUN=$(built memorun --bin memorun)
TRACE=$(built trace --example trace)

CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
C_FILE=$(ls -d "$CARGO_HOME"/registry/src/*/blake3-*/c/blake3.c 2>/dev/null | sort -V | tail -1)
[[ -f $C_FILE ]] || { echo "bench/trace.sh: no blake3.c under $CARGO_HOME/registry/src (run cargo fetch)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/memorun-bench-trace.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cp "$C_FILE" "$WORK/"
cp "$(dirname "$C_FILE")"/*.h "$WORK/"
cd "$WORK"

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
echo "# memorun tracing benchmark"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
echo "- kernel: $(uname -srm)"
echo "- memorun: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$([[ -z $(git -C "$ROOT" status --porcelain -- src examples Cargo.toml Cargo.lock 2>/dev/null) ]] || echo ', uncommitted changes')"
echo "- hyperfine: $(hyperfine --version); $(strace --version | head -1); $(cc --version | head -1)"
echo "- C file: $C_FILE ($(wc -c <"$C_FILE") bytes)"


# rounds JSON ROUNDS RUNS WARMUP NAME CMD NAME CMD NAME CMD: like one
# `hyperfine -N` of the three commands, but in ROUNDS rounds that rotate
# which goes first, merged into one JSON file in hyperfine's format. On a
# shared VM the machine's speed drifts over tens of seconds (cc -O2 of the
# same file: 430 to 800 ms); rotating keeps that drift out of the ratios.
rounds() {
    local json=$1 n=$2 runs=$3 warmup=$4
    shift 4
    local names=("$1" "$3" "$5") cmds=("$2" "$4" "$6")
    local r k i args parts=()
    for ((r = 0; r < n; r++)); do
        args=()
        for ((k = 0; k < 3; k++)); do
            i=$(((r + k) % 3))
            args+=(-n "${names[$i]}" "${cmds[$i]}")
        done
        hyperfine -N --warmup "$warmup" --runs "$runs" --export-json "$json.$r" "${args[@]}" >&2
        parts+=("$json.$r")
    done
    python3 - "$json" "${names[@]}" "${parts[@]}" <<'PY'
import json, statistics, sys
out, names, parts = sys.argv[1], sys.argv[2:5], sys.argv[5:]
times = {n: [] for n in names}
for p in parts:
    for r in json.load(open(p))["results"]:
        times[r["command"]].extend(r["times"])
res = [{"command": n, "times": t, "median": statistics.median(t), "mean": statistics.fmean(t),
        "stddev": statistics.stdev(t), "min": min(t), "max": max(t)} for n, t in times.items()]
json.dump({"results": res, "rounds": len(parts)}, open(out, "w"))
PY
    rm -f "${parts[@]}"
}

Q_TRACE=$(printf '%q' "$TRACE")
Q_M="$(printf '%q' "$MEMORUN") --cache-dir $WORK/cache"
STRACE="strace -f --seccomp-bpf -e trace=%file,execve -o /dev/null"
COMPILE="cc -O2 -c blake3.c -o blake3.o"
LOOP="sh -c 'for i in \$(seq 10000); do : < /etc/hostname; done'"

# The tracer must work here, or the figures mean nothing.
"$TRACE" true 2>"$WORK/check.txt" || { cat "$WORK/check.txt" >&2; exit 1; }

log "compile: $COMPILE"
rounds "$WORK/compile.json" "${ROUNDS:-3}" "${RUNS_COMPILE:-10}" 2 \
    "memorun miss" "$Q_M --force -- $COMPILE" \
    "memorun --trace miss" "$Q_M --force --trace -- $COMPILE" \
    strace "$STRACE $COMPILE"
table "$WORK/compile.json" "memorun miss" "cc -O2 -c blake3.c: a miss untraced and traced, and strace (hyperfine -N, ${ROUNDS:-3} rotated rounds)"

log "loop: $LOOP"
rounds "$WORK/loop.json" "${ROUNDS:-3}" "${RUNS_LOOP:-15}" 3 \
    "memorun miss" "$Q_M --force -- $LOOP" \
    "memorun --trace miss" "$Q_M --force --trace -- $LOOP" \
    strace "$STRACE $LOOP"
table "$WORK/loop.json" "memorun miss" "10,000 opens in a shell loop: a miss untraced and traced, and strace (hyperfine -N, ${ROUNDS:-3} rotated rounds)"

log "hit over 1,000 traced inputs"
mkdir -p src
for i in $(seq 1 1000); do echo "int v$i = $i;" >"src/f$i.h"; done
# Edited well before the run, as a project's files are (a file modified
# moments before a run counts as changed while it ran).
touch -d '1 hour ago' src/*.h
sleep 2.1
CAT="sh -c 'cat src/*.h > /dev/null'"
eval "$Q_M --trace -- $CAT" && eval "$Q_M -- $CAT"
eval "$Q_M -v --trace -- $CAT" 2>"$WORK/hit.txt"
grep -q 'traced inputs unchanged' "$WORK/hit.txt" || { cat "$WORK/hit.txt" >&2; exit 1; }
rounds "$WORK/hit.json" "${ROUNDS:-3}" "${RUNS_HIT:-40}" 5 \
    "memorun hit" "$Q_M -- $CAT" \
    "memorun --trace hit" "$Q_M --trace -- $CAT" \
    "the command" "$CAT"
table "$WORK/hit.json" "memorun hit" "a hit over 1,000 unchanged traced inputs, and the same hit untraced (hyperfine -N, ${ROUNDS:-3} rotated rounds)"
echo
echo "- $(sed 's/^memorun: //' "$WORK/hit.txt")"

echo
echo "Counts of one traced run of each (examples/trace.rs):"
echo
for cmd in "$COMPILE" "$LOOP"; do
    echo "- \`$cmd\`: $(eval "$Q_TRACE $cmd" 2>&1 >/dev/null | sed 's/^trace: //')"
done

if [[ -n ${BENCH_RESULTS_DIR:-} ]]; then
    mkdir -p "$BENCH_RESULTS_DIR"
    cp "$WORK"/compile.json "$WORK"/loop.json "$WORK"/hit.json "$BENCH_RESULTS_DIR/"
fi
