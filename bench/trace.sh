#!/usr/bin/env bash
# What tracing costs (issues 16 and 24), in CPU time (user + system, which
# the noise of a shared machine moves less than wall time): a command run
# untraced, under memorun's tracer, and under strace with a seccomp filter,
# side by side (bench/cputime.py: medians, the commands interleaved run by
# run in rotated rounds).
#
#   bench/trace.sh
#
# Two groups:
#   compile  a miss of cc -O2 -c blake3.c (the C file of the blake3 crate
#            that Cargo fetched, ~/.cargo/registry/src/*/blake3-*/c/blake3.c):
#            `memorun --force` untraced, `memorun --force --trace`, and the
#            bare command under strace
#   hit      a hit over 1,000 unchanged traced inputs (sh -c 'cat src/*.h'
#            over 1,000 headers, about 1,050 traced inputs with sh's own)
#            against the same hit untraced, and the bare command
#
# Targets (issue 24): a traced compile within 1.10x of the untraced one in
# CPU time; a traced hit over 1,000 inputs under 10 ms of CPU more than a
# plain hit.
#
# Environment:
#   BENCH_RESULTS_DIR=DIR  also copy the per-run JSON there
#   ROUNDS=N (default 3): rounds, each command first in turn
#   RUNS_COMPILE=N (default 5), RUNS_HIT=N (default 40): runs per round
#
# Needs: cargo, python3, cc; installs strace with apt-get when missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

# log and apt_install: see bench/lib.sh.
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

for tool in strace; do
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
TRACE=$(built trace -p memorun-trace --example trace)

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
echo "- $(strace --version | head -1); $(cc --version | head -1)"
echo "- C file: $C_FILE ($(wc -c <"$C_FILE") bytes)"


# cputime NAME CMD...: bench/cputime.py (medians of user + system time,
# the commands interleaved run by run in rotated rounds).
cputime() {
    local json=$1
    shift
    python3 "$ROOT/bench/cputime.py" --rounds "${ROUNDS:-3}" --json "$json" "$@"
}

Q_TRACE=$(printf '%q' "$TRACE")
Q_M="$(printf '%q' "$MEMORUN") --cache-dir $WORK/cache"
STRACE="strace -f --seccomp-bpf -e trace=%file,execve -o /dev/null"
COMPILE="cc -O2 -c blake3.c -o blake3.o"

# The tracer must work here, or the figures mean nothing.
"$TRACE" true 2>"$WORK/check.txt" || { cat "$WORK/check.txt" >&2; exit 1; }

log "compile: $COMPILE"
echo
echo "$COMPILE: a miss untraced and traced (\`--force\`), and strace:"
echo
cputime "$WORK/compile.json" --runs "${RUNS_COMPILE:-5}" \
    "memorun miss" "$Q_M --force -- $COMPILE" \
    "memorun --trace miss" "$Q_M --force --trace -- $COMPILE" \
    strace "$STRACE $COMPILE"

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
echo
echo "A hit over 1,000 unchanged traced inputs, the same hit untraced, and the command:"
echo
cputime "$WORK/hit.json" --runs "${RUNS_HIT:-40}" --warmup 5 \
    "memorun hit" "$Q_M -- $CAT" \
    "memorun --trace hit" "$Q_M --trace -- $CAT" \
    "the command" "$CAT"
echo
echo "- $(sed 's/^memorun: //' "$WORK/hit.txt")"
echo "- one traced run of the compile: $(eval "$Q_TRACE $COMPILE" 2>&1 >/dev/null | sed 's/^trace: //')"

if [[ -n ${BENCH_RESULTS_DIR:-} ]]; then
    mkdir -p "$BENCH_RESULTS_DIR"
    cp "$WORK"/compile.json "$WORK"/hit.json "$BENCH_RESULTS_DIR/"
fi
