#!/usr/bin/env bash
# memorun benchmark suite.
#
#   bench/run.sh              # every group
#   bench/run.sh p1 p3        # only the named groups
#
# Groups:
#   p1  tiny hit: memorun -- cat small-file  vs  cat, bkt, /bin/true
#   p2  100 MB hit, to /dev/null and to a pipe, plus peak RSS
#   p3  miss overhead: memorun --force -- CMD  vs  CMD (tiny and 100 MB output)
#   p4  input hashing: 1 GiB in 10,000 files (--input) vs b3sum   [needs --input]
#   p5  scale: lookups with 100k entries in the store              [extension point]
#   p6  16 concurrent identical misses: wall time and executions
#
# Environment:
#   BENCH_RESULTS_DIR=DIR  also copy the hyperfine JSON and the RSS/P6 results there
#   XDG_CACHE_HOME         bkt and b3sum are installed under
#                          ${XDG_CACHE_HOME:-$HOME/.cache}/memorun-bench-tools
#
# Needs: cargo, python3; installs hyperfine and time with apt-get, and bkt and
# b3sum with cargo install, when they are missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

ALL_GROUPS=(p1 p2 p3 p4 p5 p6)
if (($# == 0)); then
    GROUPS_TO_RUN=("${ALL_GROUPS[@]}")
else
    GROUPS_TO_RUN=()
    for g in "$@"; do
        g=${g,,}
        case $g in
            p1 | p2 | p3 | p4 | p5 | p6) GROUPS_TO_RUN+=("$g") ;;
            -h | --help)
                sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
                exit 0
                ;;
            *)
                echo "bench/run.sh: unknown group '$g' (expected: ${ALL_GROUPS[*]})" >&2
                exit 2
                ;;
        esac
    done
fi

log() { printf '\n==> %s\n' "$*" >&2; }

# ---------------------------------------------------------------- tools ----
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

if ! command -v hyperfine >/dev/null; then
    log "installing hyperfine (apt-get)"
    apt_install hyperfine
fi
if [[ ! -x /usr/bin/time ]]; then
    log "installing time (apt-get)"
    apt_install time
fi

TOOLS=${TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/memorun-bench-tools}
export PATH="$TOOLS/bin:$PATH"
missing=()
command -v bkt >/dev/null || missing+=(bkt)
command -v b3sum >/dev/null || missing+=(b3sum)
if ((${#missing[@]})); then
    log "installing ${missing[*]} into $TOOLS (cargo install; takes a few minutes once)"
    cargo install --locked --root "$TOOLS" "${missing[@]}"
fi

log "building memorun (cargo build --release)"
cargo build --release
MEMORUN=$ROOT/target/release/memorun
[[ -x $MEMORUN ]] || { echo "bench/run.sh: $MEMORUN was not built" >&2; exit 1; }

# Nothing from the caller's environment may change memorun's behaviour here.
unset MEMORUN_DIR MEMORUN_DISABLE MEMORUN_MAX_SIZE BKT_TTL BKT_CACHE_DIR BKT_SCOPE

# ---------------------------------------------------------- workspace -----
WORK=$(mktemp -d "${TMPDIR:-/tmp}/memorun-bench.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
RESULTS=$WORK/results
mkdir -p "$RESULTS"
cd "$WORK"

# Quoted for hyperfine's own word splitting (it is used with -N, no shell).
Q_MEMORUN=$(printf '%q' "$MEMORUN")
MR_DIR=$WORK/memorun-cache
BKT_DIR=$WORK/bkt-cache
MR="$Q_MEMORUN --cache-dir $MR_DIR"
# bkt requires a TTL; one day keeps every run of this suite a hit.
BKT="bkt --cache-dir $BKT_DIR --ttl 1d"

# ---------------------------------------------------------- machine -------
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
echo "# memorun benchmarks"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
echo "- kernel: $(uname -srm)"
echo "- temp dir: $WORK ($(df -T "$WORK" | awk 'NR==2 {print $2}'))"
echo "- memorun: $("$MEMORUN" --version) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$([[ -z $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] || echo ', uncommitted changes in src'))"
echo "- hyperfine: $(hyperfine --version)"
echo "- bkt: $(bkt --version)"
echo "- b3sum: $(b3sum --version)"
echo "- cat: $(cat --version | head -1)"
echo "- groups: ${GROUPS_TO_RUN[*]}"

# ---------------------------------------------------------- helpers -------

# table JSON REFERENCE TITLE: markdown table of medians, ratio and delta vs REFERENCE.
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
print("| command | median (ms) | mean ± σ (ms) | min (ms) | runs | × " + ref + " | Δ vs " + ref + " (ms) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for r in res:
    m = r["median"]
    print(f"| {r['command']} | {ms(m)} | {ms(r['mean'])} ± {ms(r['stddev'] or 0)} | {ms(r['min'])} "
          f"| {len(r['times'])} | {m / base:.2f} | {(m - base) * 1000:+.3f} |")
PY
}

# expect_hit LABEL CMD...: warn loudly when memorun does not report a hit.
expect_hit() {
    local label=$1
    shift
    local err
    err=$("$MEMORUN" --cache-dir "$MR_DIR" -v "$@" </dev/null 2>&1 >/dev/null || true)
    if ! grep -q 'hit' <<<"$err"; then
        echo "WARNING: $label: memorun did not report a hit after pre-warming: $err" >&2
    fi
}

# peak_rss_mib CMD...: peak RSS in MiB of one run (stdout to /dev/null), best of 3 runs.
peak_rss_mib() {
    local best="" kb
    for _ in 1 2 3; do
        /usr/bin/time -v -o "$WORK/time.txt" "$@" </dev/null >/dev/null 2>"$WORK/rss-stderr.txt"
        kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
        if [[ -z $best || $kb -lt $best ]]; then best=$kb; fi
    done
    python3 -c "print(f'{$best/1024:.1f}')"
}

ensure_small_file() { [[ -f small-file ]] || printf 'hello\n' >small-file; }
ensure_big_file() {
    if [[ ! -f big-file ]]; then
        log "generating big-file (100,000,000 random bytes)"
        head -c 100000000 /dev/urandom >big-file
    fi
    cat big-file >/dev/null # into the page cache
}

# ---------------------------------------------------------- groups --------

bench_p1() {
    log "P1: tiny hit (6-byte file)"
    ensure_small_file
    "$MEMORUN" --cache-dir "$MR_DIR" -- cat small-file </dev/null >/dev/null
    bkt --cache-dir "$BKT_DIR" --ttl 1d -- cat small-file </dev/null >/dev/null
    expect_hit P1 -- cat small-file
    hyperfine -N --warmup 30 --runs 500 \
        --export-json "$RESULTS/p1.json" \
        -n "memorun hit" "$MR -- cat small-file" \
        -n "cat" "cat small-file" \
        -n "bkt hit" "$BKT -- cat small-file" \
        -n "/bin/true" "/bin/true"
    table "$RESULTS/p1.json" cat "P1 tiny hit: cat small-file (6 bytes), output to /dev/null, hyperfine -N"
}

bench_p2() {
    log "P2: 100 MB hit"
    ensure_big_file
    "$MEMORUN" --cache-dir "$MR_DIR" -- cat big-file </dev/null >/dev/null
    bkt --cache-dir "$BKT_DIR" --ttl 1d -- cat big-file </dev/null >/dev/null
    expect_hit P2 -- cat big-file
    if ! "$MEMORUN" --cache-dir "$MR_DIR" -- cat big-file </dev/null | cmp -s - big-file; then
        echo "WARNING: P2: memorun's replay of big-file differs from big-file" >&2
    fi
    # The auto-input hashing of big-file (an argument that names a file) is part of
    # a default hit; the --no-auto-inputs row shows the replay cost without it.
    local out
    for out in null pipe; do
        hyperfine -N --warmup 3 --runs 40 --output="$out" \
            --export-json "$RESULTS/p2-$out.json" \
            -n "memorun hit" "$MR -- cat big-file" \
            -n "cat" "cat big-file" \
            -n "bkt hit" "$BKT -- cat big-file" \
            -n "memorun --no-auto-inputs hit" "$MR --no-auto-inputs -- cat big-file"
        table "$RESULTS/p2-$out.json" cat "P2 100 MB hit: cat big-file, hyperfine -N --output=$out"
    done

    log "P2: peak RSS (/usr/bin/time -v, best of 3)"
    local rss_mr rss_bkt rss_cat rss_miss
    rss_cat=$(peak_rss_mib cat big-file)
    rss_mr=$(peak_rss_mib "$MEMORUN" --cache-dir "$MR_DIR" -- cat big-file)
    rss_bkt=$(peak_rss_mib bkt --cache-dir "$BKT_DIR" --ttl 1d -- cat big-file)
    rss_miss=$(peak_rss_mib "$MEMORUN" --cache-dir "$MR_DIR" --force -- cat big-file)
    cat >"$RESULTS/p2-rss.json" <<EOF
{"cat": $rss_cat, "memorun hit": $rss_mr, "bkt hit": $rss_bkt, "memorun --force (miss)": $rss_miss}
EOF
    echo
    echo "### P2 peak RSS, 100 MB output to /dev/null (Maximum resident set size)"
    echo
    echo "| command | peak RSS (MiB) |"
    echo "|---|---:|"
    echo "| memorun hit | $rss_mr |"
    echo "| bkt hit | $rss_bkt |"
    echo "| memorun --force (miss, records) | $rss_miss |"
    echo "| cat | $rss_cat |"
}

bench_p3() {
    log "P3: miss overhead"
    ensure_big_file
    hyperfine -N --warmup 30 --runs 300 \
        --export-json "$RESULTS/p3-tiny.json" \
        -n "memorun --force -- /bin/true" "$MR --force -- /bin/true" \
        -n "/bin/true" "/bin/true"
    table "$RESULTS/p3-tiny.json" /bin/true "P3 miss, tiny command, hyperfine -N"
    hyperfine -N --warmup 3 --runs 30 \
        --export-json "$RESULTS/p3-big.json" \
        -n "memorun --force -- cat big-file" "$MR --force -- cat big-file" \
        -n "cat big-file" "cat big-file"
    table "$RESULTS/p3-big.json" "cat big-file" "P3 miss, 100 MB output to /dev/null, hyperfine -N"
}

# Extension point P4: hashing 1 GiB of inputs in 10,000 files, against b3sum.
bench_p4() {
    if ! "$MEMORUN" --help | grep -q -- '--input'; then
        echo
        echo "P4 (inputs, 1 GiB in 10,000 files vs b3sum): skipped: --input is not yet implemented in this memorun"
        return
    fi
    log "P4: 1 GiB of --input in 10,000 files"
    if [[ ! -d inputs ]]; then
        mkdir inputs
        head -c 1073741824 /dev/urandom | split -b 107375 -a 5 - inputs/f
    fi
    echo "inputs: $(find inputs -type f | wc -l) files, $(du -sh inputs | cut -f1)"
    "$MEMORUN" --cache-dir "$MR_DIR" --input inputs -- cat </dev/null >/dev/null
    expect_hit P4 --input inputs -- cat
    # Shell mode here: b3sum needs the file list expanded.
    hyperfine --warmup 2 --runs 10 \
        --export-json "$RESULTS/p4.json" \
        -n "memorun --input hit" "$MR --input inputs -- cat </dev/null" \
        -n "memorun --input --force" "$MR --force --input inputs -- cat </dev/null" \
        -n "b3sum" "find inputs -type f -print0 | xargs -0 b3sum >/dev/null"
    table "$RESULTS/p4.json" b3sum "P4 1 GiB in 10,000 input files (shell mode)"
}

# Extension point P5: lookups with 100,000 entries in the store.
bench_p5() {
    echo
    echo "P5 (scale, hits and misses with 100,000 entries in the store): skipped: not yet implemented in this memorun benchmark suite"
}

# P6: 16 concurrent identical misses; single-flight should run the command once.
bench_p6() {
    log "P6: 16 concurrent identical misses (sh -c 'echo x >> counter; sleep 1')"
    local trials=3 t
    : >"$RESULTS/p6.txt"
    for ((t = 1; t <= trials; t++)); do
        local dir=$WORK/p6-$t
        mkdir -p "$dir"
        (
            cd "$dir"
            : >counter
            start=$(date +%s.%N)
            pids=()
            for ((i = 0; i < 16; i++)); do
                "$MEMORUN" --cache-dir "$dir/cache" -- sh -c 'echo x >> counter; sleep 1' \
                    </dev/null >"out.$i" 2>"err.$i" &
                pids+=($!)
            done
            fails=0
            for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
            end=$(date +%s.%N)
            execs=$(wc -l <counter)
            errlines=$(cat err.* | grep -c . || true)
            # One more identical run afterwards: a hit adds no execution.
            "$MEMORUN" --cache-dir "$dir/cache" -- sh -c 'echo x >> counter; sleep 1' </dev/null >/dev/null 2>&1 || true
            after=$(wc -l <counter)
            echo "$t $(python3 -c "print(f'{$end - $start:.2f}')") $execs $fails $errlines $((after - execs))"
        ) >>"$RESULTS/p6.txt"
    done
    echo
    echo "### P6 16 concurrent identical misses (sh -c 'echo x >> counter; sleep 1'), $trials trials"
    echo
    echo "| trial | wall (s) | executions | non-zero exits | stderr lines | executions by a 17th run afterwards |"
    echo "|---:|---:|---:|---:|---:|---:|"
    while read -r t wall execs fails errlines later; do
        echo "| $t | $wall | $execs | $fails | $errlines | $later |"
    done <"$RESULTS/p6.txt"
    echo
    echo "(ideal with single-flight: wall ≈ 1 s and 1 execution; the 17th run should be a hit: 0)"
}

# ---------------------------------------------------------- targets -------
verdicts() {
    python3 - "$RESULTS" <<'PY'
import json, os, sys
d = sys.argv[1]
def med(name, cmd):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return None
    for r in json.load(open(p))["results"]:
        if r["command"] == cmd:
            return r["median"]
lines = []
def ratio_line(label, f, a, b, limit):
    x, y = med(f, a), med(f, b)
    if x is None or y is None:
        return
    r = x / y
    lines.append(f"- {label} ≤ {limit}×: {'met' if r <= limit else 'NOT met'} ({r:.2f}×, {x*1e3:.3f} ms vs {y*1e3:.3f} ms)")
ratio_line("P1 memorun hit vs cat", "p1.json", "memorun hit", "cat", 1.2)
x, y = med("p1.json", "memorun hit"), med("p1.json", "bkt hit")
if x is not None and y is not None:
    lines.append(f"- P1 memorun hit faster than bkt hit: {'met' if x < y else 'NOT met'} ({x*1e3:.3f} ms vs {y*1e3:.3f} ms)")
ratio_line("P2 memorun hit vs cat, to /dev/null,", "p2-null.json", "memorun hit", "cat", 1.3)
ratio_line("P2 memorun hit vs cat, to a pipe,", "p2-pipe.json", "memorun hit", "cat", 1.3)
p = os.path.join(d, "p2-rss.json")
if os.path.exists(p):
    rss = json.load(open(p))["memorun hit"]
    lines.append(f"- P2 memorun 100 MB hit peak RSS ≤ 32 MiB: {'met' if rss <= 32 else 'NOT met'} ({rss:.1f} MiB)")
x, y = med("p3-tiny.json", "memorun --force -- /bin/true"), med("p3-tiny.json", "/bin/true")
if x is not None and y is not None:
    delta = (x - y) * 1e3
    lines.append(f"- P3 tiny miss ≤ raw + 2 ms: {'met' if delta <= 2 else 'NOT met'} (+{delta:.3f} ms)")
ratio_line("P3 100 MB miss vs raw", "p3-big.json", "memorun --force -- cat big-file", "cat big-file", 1.2)
if lines:
    print("\n### Targets (medians)\n")
    print("\n".join(lines))
PY
}

for g in "${GROUPS_TO_RUN[@]}"; do
    "bench_$g"
done
verdicts

if [[ -n ${BENCH_RESULTS_DIR:-} ]]; then
    mkdir -p "$BENCH_RESULTS_DIR"
    cp "$RESULTS"/* "$BENCH_RESULTS_DIR"/ 2>/dev/null || true
    echo
    echo "raw results copied to $BENCH_RESULTS_DIR"
fi
