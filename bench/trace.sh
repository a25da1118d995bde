#!/usr/bin/env bash
# What tracing costs (issue 16): a command run untraced, under memorun's
# tracer, and under strace with a seccomp filter, side by side in one
# hyperfine run each.
#
#   bench/trace.sh
#
# Two commands:
#   compile  cc -O2 -c blake3.c (the C file of the blake3 crate that Cargo
#            fetched for memorun, ~/.cargo/registry/src/*/blake3-*/c/blake3.c)
#   loop     sh -c 'for i in $(seq 10000); do : < /etc/hostname; done'
#            (10,000 small opens, each a traced call)
#
# The CLI does not trace yet: the tracer runs through examples/trace.rs
# (cargo build --release --example trace), which traces the command with
# stdio passed through and prints the counts on stderr (hyperfine discards
# both).
#
# Targets: traced compile <= 1.05x untraced; the loop faster traced than
# under strace.
#
# Environment:
#   BENCH_RESULTS_DIR=DIR  also copy the hyperfine JSON there
#   RUNS_COMPILE=N (default 20), RUNS_LOOP=N (default 30)
#
# Needs: cargo, python3, cc; installs hyperfine and strace with apt-get when
# they are missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

log() { printf '\n==> %s\n' "$*" >&2; }

SUDO=()
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then SUDO=(sudo); fi
APT_UPDATED=0
apt_install() {
    if ((APT_UPDATED == 0)); then
        "${SUDO[@]}" apt-get update
        APT_UPDATED=1
    fi
    "${SUDO[@]}" apt-get install -y "$@"
}
for tool in hyperfine strace; do
    if ! command -v "$tool" >/dev/null; then
        log "installing $tool (apt-get)"
        apt_install "$tool"
    fi
done

log "building the tracer example (cargo build --release --example trace)"
TRACE=$(cargo build --release --example trace --message-format=json-render-diagnostics |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "trace":
        print(m["executable"])')
[[ -x $TRACE ]] || { echo "bench/trace.sh: $TRACE was not built" >&2; exit 1; }

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

# table JSON REFERENCE TITLE: markdown table of medians and ratios vs REFERENCE.
table() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
path, ref, title = sys.argv[1:4]
res = json.load(open(path))["results"]
by = {r["command"]: r for r in res}
base = by[ref]["median"]
def ms(s):
    v = s * 1000
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"
print(f"\n### {title}\n")
print("| command | median (ms) | mean ± σ (ms) | min (ms) | runs | × " + ref + " |")
print("|---|---:|---:|---:|---:|---:|")
for r in res:
    m = r["median"]
    print(f"| {r['command']} | {ms(m)} | {ms(r['mean'])} ± {ms(r['stddev'] or 0)} | {ms(r['min'])} "
          f"| {len(r['times'])} | {m / base:.2f} |")
PY
}

Q_TRACE=$(printf '%q' "$TRACE")
STRACE="strace -f --seccomp-bpf -e trace=%file,execve -o /dev/null"
COMPILE="cc -O2 -c blake3.c -o blake3.o"
LOOP="sh -c 'for i in \$(seq 10000); do : < /etc/hostname; done'"

# The tracer must work here, or the figures mean nothing.
"$TRACE" true 2>"$WORK/check.txt" || { cat "$WORK/check.txt" >&2; exit 1; }

log "compile: $COMPILE"
hyperfine -N --warmup 2 --runs "${RUNS_COMPILE:-20}" --export-json "$WORK/compile.json" \
    -n untraced "$COMPILE" \
    -n memorun-trace "$Q_TRACE $COMPILE" \
    -n strace "$STRACE $COMPILE" >&2
table "$WORK/compile.json" untraced "cc -O2 -c blake3.c: untraced, traced, strace (hyperfine -N)"

log "loop: $LOOP"
hyperfine -N --warmup 3 --runs "${RUNS_LOOP:-30}" --export-json "$WORK/loop.json" \
    -n untraced "$LOOP" \
    -n memorun-trace "$Q_TRACE $LOOP" \
    -n strace "$STRACE $LOOP" >&2
table "$WORK/loop.json" untraced "10,000 opens in a shell loop: untraced, traced, strace (hyperfine -N)"

echo
echo "Counts of one traced run of each:"
echo
for cmd in "$COMPILE" "$LOOP"; do
    echo "- \`$cmd\`: $(eval "$Q_TRACE $cmd" 2>&1 >/dev/null | sed 's/^trace: //')"
done

if [[ -n ${BENCH_RESULTS_DIR:-} ]]; then
    mkdir -p "$BENCH_RESULTS_DIR"
    cp "$WORK"/compile.json "$WORK"/loop.json "$BENCH_RESULTS_DIR/"
fi
