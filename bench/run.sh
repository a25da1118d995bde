#!/usr/bin/env bash
# memorun benchmark suite.
#
#   bench/run.sh              # every group
#   bench/run.sh p1 p3        # only the named groups
#
# Groups:
#   p1  tiny hit: memorun -- cat small-file  vs  cat, bkt, /bin/true, and
#       memorun -- echo hello  vs  echo, bkt; and the floor under it: a
#       static program that starts, and one that also does the SQLite work
#       a hit did before hit records (bench/floor.c, built with cc)
#   p2  100 MB hit, to /dev/null and to a pipe, plus peak RSS
#   p3  miss overhead: memorun --force -- CMD  vs  CMD and bkt --force (tiny),
#       and with 100 MB of output vs CMD | tee spool | b3sum
#   p4  inputs: first run over 1 GiB in 10,000 files (-i DIR) vs b3sum; warm hit
#   p5  scale: a store of P5_ENTRIES entries (default 100,000) against one of
#       10, side by side: tiny hit; tiny miss (--force); stats; list -n 20;
#       list of every row (time, peak RSS); clear --older-than 1d of half of
#       them; the big store's disk use by part (records/, memorun.db, blobs/)
#       and the records' share; the stall of a miss that evicts
#   p6  16 concurrent identical misses: wall time and executions
#   p7  output files: a hit restoring 1 GiB in 10,000 files (-o DIR) vs cp -r
#   p8  output files already in place: hit with -o (verify, touch) vs without,
#       and for 100 files against a C floor (bench/floor.c: floor-inplace)
#   p9  remote cache: a hit with an empty local store (tiny and 100 MB) from
#       nginx and from Redis vs curl / redis-cli fetching the same objects;
#       a 100 MB miss that uploads vs the same miss without a remote
#       (starts its own nginx and redis-server on loopback; installs
#       nginx-light and redis-server with apt-get when missing)
#   p10 remote cache on S3: a 100 MB hit with an empty local store from
#       Garage vs curl fetching the same objects with presigned URLs
#       (starts its own single-node Garage on loopback; installs it with
#       cargo install --locked garage when missing)
#
# Environment:
#   P5_ENTRIES=N           entries in P5's big store (default 100000; BENCHMARKS.md's
#                          table is from P5_ENTRIES=1000000 bench/run.sh p5: about
#                          8 minutes and 4 GB of disk in the temp dir; 40 minutes
#                          and 15 GB with a hit record for every entry, schema 4)
#   BENCH_RESULTS_DIR=DIR  also copy the hyperfine JSON and the RSS/P6 results there
#   BENCH_DATA_DIR=DIR     where P4's 1 GiB of input files is made once and kept
#                          (default ${XDG_CACHE_HOME:-$HOME/.cache}/memorun-bench-data)
#                          (P7 makes its 1 GiB tree in the temp dir, next to
#                          the cache and cp's destination, and needs 4 GiB free)
#   XDG_CACHE_HOME         bkt and b3sum are installed under
#                          ${XDG_CACHE_HOME:-$HOME/.cache}/memorun-bench-tools
#
# Needs: cargo, python3, cc (gcc) with glibc's static library; installs
# hyperfine and time with apt-get, and bkt and b3sum with cargo install, when
# they are missing (bkt only for p1 and p2, b3sum only for p4).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

ALL_GROUPS=(p1 p2 p3 p4 p5 p6 p7 p8 p9 p10)
if (($# == 0)); then
    GROUPS_TO_RUN=("${ALL_GROUPS[@]}")
else
    GROUPS_TO_RUN=()
    for g in "$@"; do
        g=${g,,}
        case $g in
            p1 | p2 | p3 | p4 | p5 | p6 | p7 | p8 | p9 | p10) GROUPS_TO_RUN+=("$g") ;;
            -h | --help)
                sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
                exit 0
                ;;
            *)
                echo "bench/run.sh: unknown group '$g' (expected: ${ALL_GROUPS[*]})" >&2
                exit 2
                ;;
        esac
    done
fi

P5_ENTRIES=${P5_ENTRIES:-100000}
if ! [[ $P5_ENTRIES =~ ^[0-9]+$ ]] || ((P5_ENTRIES < 20)); then
    echo "bench/run.sh: P5_ENTRIES='$P5_ENTRIES' is not a number of entries of 20 or more" >&2
    exit 2
fi

# log, apt_install and table: see bench/lib.sh.
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------- tools ----

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
# Only the tools the chosen groups compare against: bkt (p1, p2), b3sum (p4).
wants() { [[ " ${GROUPS_TO_RUN[*]} " =~ \ ($1)\  ]]; }
if wants 'p1|p2|p3'; then command -v bkt >/dev/null || missing+=(bkt); fi
if wants 'p3|p4'; then command -v b3sum >/dev/null || missing+=(b3sum); fi
if ((${#missing[@]})); then
    log "installing ${missing[*]} into $TOOLS (cargo install; takes a few minutes once)"
    cargo install --locked --root "$TOOLS" "${missing[@]}"
fi

log "building memorun (cargo build --release)"
# The binary's path comes from cargo itself: .cargo/config.toml builds for
# the host triple, so it is target/<host>/release/memorun.
MEMORUN=$(cargo build --release --message-format=json-render-diagnostics |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "memorun":
        print(m["executable"])')
[[ -x $MEMORUN ]] || { echo "bench/run.sh: $MEMORUN was not built" >&2; exit 1; }

# Nothing from the caller's environment may change memorun's behaviour here.
unset MEMORUN_DIR MEMORUN_DISABLE MEMORUN_MAX_SIZE BKT_TTL BKT_CACHE_DIR BKT_SCOPE
unset MEMORUN_REMOTE MEMORUN_REMOTE_TOKEN MEMORUN_REMOTE_READ_ONLY MEMORUN_REMOTE_TIMEOUT \
    MEMORUN_REMOTE_LOOKUP_TIMEOUT MEMORUN_REMOTE_RETRY \
    MEMORUN_REMOTE_MAX_SIZE MEMORUN_BASE_DIR MEMORUN_SECRET MEMORUN_S3_ADDRESSING \
    AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_REGION AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID \
    AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN

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
if wants 'p1|p2'; then echo "- bkt: $(bkt --version)"; fi
if wants 'p4'; then echo "- b3sum: $(b3sum --version)"; fi
if wants 'p7'; then echo "- cp: $(cp --version | head -1)"; fi
echo "- cat: $(cat --version | head -1)"
echo "- groups: ${GROUPS_TO_RUN[*]}"
if wants 'p5'; then echo "- P5_ENTRIES: $P5_ENTRIES"; fi

# ---------------------------------------------------------- helpers -------


# interleaved JSON ROUNDS NAME_A CMD_A NAME_B CMD_B HYPERFINE_OPTION...: like one
# `hyperfine -N` of the two commands, but in ROUNDS rounds that alternate
# which goes first (A B, B A, A B, ...), with the times of all rounds merged
# into one JSON file in hyperfine's format. On a shared VM the machine's speed
# drifts over tens of seconds; alternating keeps that drift out of a ratio
# that a target puts close to 1.
interleaved() {
    local json=$1 rounds=$2 na=$3 ca=$4 nb=$5 cb=$6
    shift 6
    local r parts=()
    for ((r = 0; r < rounds; r++)); do
        if ((r % 2 == 0)); then
            hyperfine -N "$@" --export-json "$json.$r" -n "$na" "$ca" -n "$nb" "$cb" >&2
        else
            hyperfine -N "$@" --export-json "$json.$r" -n "$nb" "$cb" -n "$na" "$ca" >&2
        fi
        parts+=("$json.$r")
    done
    python3 - "$json" "$na" "$nb" "${parts[@]}" <<'PY'
import json, statistics, sys
out, na, nb, parts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
times = {na: [], nb: []}
cpu = {na: [0.0, 0.0], nb: [0.0, 0.0]}  # user and system seconds, summed over runs
for p in parts:
    for r in json.load(open(p))["results"]:
        times[r["command"]].extend(r["times"])
        cpu[r["command"]][0] += r["user"] * len(r["times"])
        cpu[r["command"]][1] += r["system"] * len(r["times"])
res = [{"command": n, "times": t, "median": statistics.median(t), "mean": statistics.fmean(t),
        "stddev": statistics.stdev(t), "min": min(t), "max": max(t),
        "user": cpu[n][0] / len(t), "system": cpu[n][1] / len(t)} for n, t in times.items()]
json.dump({"results": res, "rounds": len(parts)}, open(out, "w"))
PY
    rm -f "${parts[@]}"
}

# commas N: N with thousands separators (1000000 -> 1,000,000).
commas() { python3 -c 'import sys; print(f"{int(sys.argv[1]):,}")' "$1"; }

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

# settle PATH...: wait until every file (under every directory) named was
# last changed (mtime and ctime) at least 3 s ago. memorun's stat cache
# re-hashes a file changed within 2 s of when it was hashed (the racy-timestamp
# guard), and so re-writes its stat-cache row: a benchmark that starts right
# after creating its files would measure that re-hashing, not a normal hit.
settle() {
    python3 - "$@" <<'PY'
import os, sys, time
newest = 0.0
def see(p):
    global newest
    st = os.stat(p)
    newest = max(newest, st.st_mtime, st.st_ctime)
for arg in sys.argv[1:]:
    if os.path.isdir(arg):
        for d, _, names in os.walk(arg):
            for n in names:
                see(os.path.join(d, n))
    else:
        see(arg)
wait = newest + 3 - time.time()
if wait > 0:
    time.sleep(wait)
PY
}

ensure_small_file() {
    [[ -f small-file ]] || printf 'hello\n' >small-file
    settle small-file
}
ensure_big_file() {
    if [[ ! -f big-file ]]; then
        log "generating big-file (100,000,000 random bytes)"
        head -c 100000000 /dev/urandom >big-file
    fi
    cat big-file >/dev/null # into the page cache
    settle big-file
}

# build_floor: compile bench/floor.c into $WORK/floor-hello and
# $WORK/floor-sqlite (static, against libsqlite3-sys's own copy of SQLite,
# with the options memorun's build gives it). Returns non-zero, with a
# warning, when that is not possible here.
build_floor() {
    local sqlite_dir flags
    sqlite_dir=$(cd "$ROOT" && cargo metadata --format-version 1 --locked |
        python3 -c 'import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "libsqlite3-sys":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "sqlite3"))')
    # libsqlite3-sys's own defaults (its build.rs), then LIBSQLITE3_FLAGS
    # from .cargo/config.toml, which adds to and removes (-U) from them.
    flags=$(python3 - "$ROOT/.cargo/config.toml" <<'PY'
import sys, tomllib
defaults = """-DSQLITE_CORE -DSQLITE_DEFAULT_FOREIGN_KEYS=1 -DSQLITE_ENABLE_API_ARMOR
-DSQLITE_ENABLE_COLUMN_METADATA -DSQLITE_ENABLE_DBSTAT_VTAB -DSQLITE_ENABLE_FTS3
-DSQLITE_ENABLE_FTS3_PARENTHESIS -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_JSON1
-DSQLITE_ENABLE_LOAD_EXTENSION=1 -DSQLITE_ENABLE_RTREE -DSQLITE_ENABLE_STAT4
-DSQLITE_SOUNDEX -DSQLITE_THREADSAFE=1 -DSQLITE_USE_URI -DHAVE_USLEEP=1
-DHAVE_ISNAN""".split()
extra = tomllib.load(open(sys.argv[1], "rb")).get("env", {}).get("LIBSQLITE3_FLAGS", "")
print(" ".join(defaults + extra.split()))
PY
)
    if [[ ! -f $sqlite_dir/sqlite3.c ]] ||
        ! cc -O2 -static -o "$WORK/floor-hello" "$ROOT/bench/floor.c" ||
        ! cc -O2 -static -DFLOOR_SQLITE -I"$sqlite_dir" $flags -o "$WORK/floor-sqlite" \
            "$ROOT/bench/floor.c" "$sqlite_dir/sqlite3.c" -lpthread -lm -ldl 2>"$WORK/floor-cc.txt"; then
        echo "WARNING: cannot build bench/floor.c; skipping the P1 floor (see $WORK/floor-cc.txt)" >&2
        return 1
    fi
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
    "$MEMORUN" --cache-dir "$MR_DIR" -- echo hello </dev/null >/dev/null
    bkt --cache-dir "$BKT_DIR" --ttl 1d -- echo hello </dev/null >/dev/null
    expect_hit P1 -- echo hello
    hyperfine -N --warmup 30 --runs 500 \
        --export-json "$RESULTS/p1-echo.json" \
        -n "memorun hit" "$MR -- echo hello" \
        -n "echo" "echo hello" \
        -n "bkt hit" "$BKT -- echo hello"
    table "$RESULTS/p1-echo.json" echo "P1 tiny hit: echo hello, output to /dev/null, hyperfine -N"
    # What bounds P1: a static program that only starts, and one that only
    # does the hit's SQLite work on the same store (bench/floor.c).
    if build_floor; then
        "$WORK/floor-sqlite" "$MR_DIR/memorun.db" >/dev/null
        hyperfine -N --warmup 30 --runs 500 \
            --export-json "$RESULTS/p1-floor.json" \
            -n "memorun hit" "$MR -- cat small-file" \
            -n "cat" "cat small-file" \
            -n "static hello (bench/floor.c)" "$WORK/floor-hello" \
            -n "static hello + the hit's SQLite work (bench/floor.c)" "$WORK/floor-sqlite $MR_DIR/memorun.db"
        table "$RESULTS/p1-floor.json" cat "P1 floor: starting a static program, and opening the store as a hit does, hyperfine -N"
    fi
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
    # A miss makes a few fsyncs (WAL and checkpoint), and on ext4 an fsync
    # also waits for other files' dirty data to reach the disk: flush what
    # setting up (big-file) and earlier groups (P2's blobs) wrote, so the
    # tiny miss measures memorun, not the write-back of 200 MB.
    sync
    hyperfine -N --warmup 30 --runs 300 \
        --export-json "$RESULTS/p3-tiny.json" \
        -n "memorun --force -- /bin/true" "$MR --force -- /bin/true" \
        -n "bkt --force -- /bin/true" "$BKT --force -- /bin/true" \
        -n "/bin/true" "/bin/true"
    table "$RESULTS/p3-tiny.json" /bin/true "P3 miss, tiny command, hyperfine -N"
    hyperfine -N --warmup 3 --runs 30 \
        --export-json "$RESULTS/p3-big.json" \
        -n "memorun --force -- cat big-file" "$MR --force -- cat big-file" \
        -n "cat big-file" "cat big-file"
    table "$RESULTS/p3-big.json" "cat big-file" "P3 miss, 100 MB output to /dev/null, hyperfine -N"
    # `cat` of a cached file to /dev/null is nearly free (one memory copy per
    # read; writes to /dev/null cost nothing and there is no pipe), so
    # memorun's capture through a pipe, which any wrapper needs, dominates
    # that ratio. A command that itself makes 100 MB through a pipe costs about
    # what the issue's reference command did (113 ms).
    printf '%s\n' "head -c 100000000 /dev/zero | tr '\\0' x" >gen100mb.sh
    settle gen100mb.sh # an auto input of the memorun run
    # The naive floor of a recording wrapper: the output copied to a spool
    # and hashed as it passes (tee and b3sum, through pipes).
    printf '%s\n' "sh gen100mb.sh | tee \"\$1\" | b3sum >/dev/null" >tee-b3sum.sh
    hyperfine -N --warmup 3 --runs 30 \
        --export-json "$RESULTS/p3-gen.json" \
        -n "memorun --force -- sh gen100mb.sh" "$MR --force -- sh gen100mb.sh" \
        -n "sh gen100mb.sh | tee spool | b3sum" "sh tee-b3sum.sh $WORK/p3-spool" \
        -n "sh gen100mb.sh" "sh gen100mb.sh"
    rm -f "$WORK/p3-spool"
    table "$RESULTS/p3-gen.json" "sh gen100mb.sh" \
        "P3 miss, a command generating 100 MB (head -c 100000000 /dev/zero | tr '\\0' x), to /dev/null, hyperfine -N"
}

# P4: hashing 1 GiB of inputs in 10,000 files, against b3sum.
#
# The data (100 directories x 100 files of ~107 KB of random bytes) is made
# once and kept in $P4_DATA for later runs of the suite. Every measurement
# runs with the page cache warm (the files are read once first): this
# compares hashing speed, not disk speed.
P4_DATA=${BENCH_DATA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/memorun-bench-data}/p4-inputs
ensure_p4_data() {
    if [[ ! -f $P4_DATA.complete ]]; then
        log "generating $P4_DATA: 1 GiB in 10,000 files (once; kept for later runs)"
        rm -rf "$P4_DATA"
        mkdir -p "$P4_DATA"
        python3 - "$P4_DATA" <<'PY'
import os, sys
root = sys.argv[1]
total, files = 1 << 30, 10_000
base, extra = divmod(total, files)
for i in range(files):
    d = os.path.join(root, f"d{i // 100:02d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i % 100:02d}"), "wb") as f:
        f.write(os.urandom(base + (1 if i < extra else 0)))
PY
        touch "$P4_DATA.complete"
    fi
    settle "$P4_DATA"
    find "$P4_DATA" -type f -print0 | xargs -0 cat >/dev/null # into the page cache
}

bench_p4() {
    if ! "$MEMORUN" --help | grep -q -- '--input'; then
        echo
        echo "P4 (inputs, 1 GiB in 10,000 files vs b3sum): skipped: --input is not yet implemented in this memorun"
        return
    fi
    log "P4: 1 GiB of --input in 10,000 files"
    ensure_p4_data
    local nfiles bytes
    nfiles=$(find "$P4_DATA" -type f | wc -l)
    bytes=$(find "$P4_DATA" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
    local P4_CACHE=$WORK/p4-cache
    local Q_DATA
    Q_DATA=$(printf '%q' "$P4_DATA")
    # First run: every run starts from an empty cache directory (new store,
    # cold stat cache), so all 1 GiB is hashed and 10,000 stat-cache rows are
    # written. Shell mode, because b3sum needs the file list expanded; hyperfine
    # subtracts the shell's own start-up.
    #  - "b3sum (all files as args)": one process given every path, like
    #    memorun's one process (the shell expands the glob; no directory walk).
    #  - "b3sum (find | xargs)": find walks the tree, as memorun must, and
    #    xargs starts a few b3sum processes.
    hyperfine --warmup 1 --runs 10 \
        --prepare "rm -rf $P4_CACHE" \
        --export-json "$RESULTS/p4-first.json" \
        -n "memorun --force -i DIR -- true (first run)" "$Q_MEMORUN --cache-dir $P4_CACHE --force -i $Q_DATA -- true" \
        -n "b3sum (all files as args)" "b3sum $Q_DATA/*/* >/dev/null" \
        -n "b3sum (find | xargs)" "find $Q_DATA -type f -print0 | xargs -0 b3sum >/dev/null"
    table "$RESULTS/p4-first.json" "b3sum (all files as args)" \
        "P4 first run over $nfiles files, $bytes bytes (cold stat cache, warm page cache), shell mode"

    # Warm hit: the result is recorded and the stat cache knows every file.
    rm -rf "$P4_CACHE"
    "$MEMORUN" --cache-dir "$P4_CACHE" -i "$P4_DATA" -- true </dev/null
    local err
    err=$("$MEMORUN" --cache-dir "$P4_CACHE" -v -i "$P4_DATA" -- true </dev/null 2>&1 || true)
    grep -q hit <<<"$err" || echo "WARNING: P4: the warm run was not a hit: $err" >&2
    # The floor: walking the tree and stat'ing each file, which any check
    # that no input changed must do.
    hyperfine -N --warmup 5 --runs 50 \
        --export-json "$RESULTS/p4-warm.json" \
        -n "memorun -i DIR -- true (warm hit)" "$Q_MEMORUN --cache-dir $P4_CACHE -i $Q_DATA -- true" \
        -n "find DIR -type f -size -1G (walk + stat)" "find $Q_DATA -type f -size -1G"
    table "$RESULTS/p4-warm.json" "find DIR -type f -size -1G (walk + stat)" \
        "P4 warm hit over the same $nfiles files (stat cache warm), hyperfine -N"
}

# P5: one store with 100,000 entries against one with 10.
#
# Running memorun 100,000 times would take far too long, so each store gets
# one real entry (the measured `echo hi`), and synthetic rows are inserted
# next to it with python3's sqlite3: copies of the real row with a random key,
# one of 10,000 commands, created/last-used times spread over the last 12 h,
# and (for --older-than) half of them last used 2 to 3 days ago. Their inline
# stdout is the real row's ("hi\n"), with its digest and order stream.
#
# Hit records: what memorun would have left. With schema 5's
# `entries.record` (src/store/record_budget.rs), records are a cache of the
# most recently used entries within a budget (a quarter of the database
# pages in use and blobs, at least 64 MiB, at most a quarter of the 5 GiB
# limit): the newest rows get one, as many as fit, each counted in
# `entries.record` and in the `record_bytes` counter. Without the column
# (schema 4), every entry has one. Either way checked against the real
# entry's own record, written by memorun.
p5_populate() { # DB TOTAL_ENTRIES
    # Each row carries a checksum (BLAKE3, see Entry::checksum in
    # src/store/mod.rs): python3's blake3 module computes it.
    python3 -c 'import blake3' 2>/dev/null || python3 -m pip install --quiet blake3
    python3 - "$1" "$2" <<'PY'
import os, random, sqlite3, struct, sys, time
import blake3
db, total = sys.argv[1], int(sys.argv[2])

def record(r):
    """The hit record of a row without outputs or blobs (src/store/records.rs,
    the entry as src/store/entry_bytes.rs lays it out)."""
    manifest = blake3.blake3(b"memorun manifest" + r["argv_digest"] + r["cwd"]).digest()
    body = b"mrr\x02" + r["key"]
    body += struct.pack("<qQi", r["created"], r["duration_ms"], r["exit_code"])
    for s in ("out", "err", "order"):
        inline = r[f"{s}_inline"]
        assert inline is not None, "the real entry has a blob"
        body += struct.pack("<Q", r[f"{s}_len"]) + r[f"{s}_digest"]
        body += b"\x01" + struct.pack("<I", len(inline)) + inline
    body += struct.pack("<IQ", 0, r["stdin_advance"])  # no output files
    body += manifest + struct.pack("<I", 0)  # no blob checks
    return body + blake3.blake3(body, derive_key_context="memorun 2026 hit record").digest()

def record_path(key):
    h = key.hex()
    return os.path.join(os.path.dirname(db), "records", h[:2], h)

def checksum(r):
    """Entry::checksum (src/store/mod.rs), for a row without outputs."""
    assert r["outputs"] is None
    h = blake3.blake3(derive_key_context="memorun 2026 entry checksum")
    h.update(struct.pack("<I", 2))  # CHECKSUM_VERSION
    h.update(r["key"])
    h.update(struct.pack("<qQi", r["created"], r["duration_ms"], r["exit_code"]))
    for s in ("out", "err", "order"):
        h.update(struct.pack("<Q", r[f"{s}_len"]))
        h.update(r[f"{s}_digest"])
        h.update(bytes([r[f"{s}_inline"] is not None]))
    h.update(struct.pack("<Q", 0))  # no outputs
    h.update(struct.pack("<Q", r["stdin_advance"]))
    return h.digest()

def write_record(r):
    """Publish r's hit record as memorun does; returns its disk space
    (records::disk_usage)."""
    path = record_path(r["key"])
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, record(r))
    space = os.fstat(fd).st_blocks * 512
    os.close(fd)
    return space

rng = random.Random(5)
conn = sqlite3.connect(db)
conn.row_factory = sqlite3.Row
real = conn.execute("SELECT * FROM entries").fetchall()
assert len(real) == 1, f"expected 1 real entry, found {len(real)}"
real = dict(real[0])
assert checksum(real) == real["checksum"], "the checksum recipe differs from memorun's"
assert open(record_path(real["key"]), "rb").read() == record(real), "the record recipe differs"
budgeted = "record" in real  # schema 5: records within a budget
if budgeted:
    st = os.stat(record_path(real["key"]))
    assert real["record"] == st.st_blocks * 512, "entries.record is not the record's disk space"
cols = list(real)
now = int(time.time() * 1000)
hour, day = 3_600_000, 86_400_000
n = total - 1
commands = [os.urandom(32) for _ in range(10_000)]
record_bytes = 0
def rows():
    global record_bytes
    for i in range(n):
        r = dict(real)
        g = i % len(commands)
        r["key"] = os.urandom(32)
        r["argv_digest"] = commands[g]
        r["display"] = f"./report.sh --id {g} --part {i // len(commands)}"
        if i < n // 2 + (n % 2):  # the older half: n=99,999 gives 50,000
            last = now - 2 * day - rng.randrange(day)
        else:
            last = now - rng.randrange(12 * hour)
        r["last_used"] = last
        r["created"] = last - rng.randrange(day)
        r["duration_ms"] = rng.randrange(10, 60_000)
        r["hits"] = rng.randrange(0, 20)
        r["checksum"] = checksum(r)
        if budgeted:
            r["record"] = None  # given below, to the newest that fit
        else:
            record_bytes += write_record(r)
        yield tuple(r[c] for c in cols)
with conn:
    conn.executemany(
        f"INSERT INTO entries ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows())
if budgeted:
    # The budget as record_budget::current_budget computes it (5 GiB limit).
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    blobs = conn.execute("SELECT COALESCE(SUM(len), 0) FROM blobs").fetchone()[0]
    budget = min(5 * 2**30 // 4, max(64 * 2**20, ((pages - free) * size + blobs) // 4))
    have = conn.execute(
        "SELECT COALESCE(SUM(value), 0) FROM counters WHERE name = 'record_bytes'").fetchone()[0]
    fit = max(0, (budget - have) // 4096)
    newest = conn.execute(
        "SELECT * FROM entries WHERE record IS NULL ORDER BY last_used DESC LIMIT ?", (fit,)).fetchall()
    with conn:
        for r in newest:
            if have + record_bytes + 4096 > budget:
                break
            space = write_record(dict(r))
            record_bytes += space
            conn.execute("UPDATE entries SET record = ? WHERE key = ?", (space, r["key"]))
with conn:
    conn.execute(
        "INSERT INTO counters (name, shard, value) VALUES ('record_bytes', 0, ?)"
        " ON CONFLICT (name, shard) DO UPDATE SET value = value + excluded.value",
        (record_bytes,))
count = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
old = conn.execute("SELECT COUNT(*) FROM entries WHERE last_used < ?", (now - day,)).fetchone()[0]
withrec = count
if budgeted:
    withrec = conn.execute("SELECT COUNT(*) FROM entries WHERE record IS NOT NULL").fetchone()[0]
conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
conn.close()
print(f"{count} entries, {old} last used more than a day ago, {withrec} with hit records")
PY
}

bench_p5() {
    local n=$P5_ENTRIES nn half
    nn=$(commas "$n")
    half=$(commas $(((n - 1) / 2 + (n - 1) % 2)))
    log "P5: scale (10 vs $nn entries)"
    local d=$WORK/p5
    mkdir -p "$d"
    local s10=$d/store-10 big=$d/store-big base=$d/store-big-base
    local n10 nbig t0
    # The real entry, recorded from the directory the benchmark runs in (cwd
    # is part of the key), with stdin on /dev/null as hyperfine gives it.
    "$MEMORUN" --cache-dir "$s10" -- echo hi </dev/null >/dev/null
    "$MEMORUN" --cache-dir "$big" -- echo hi </dev/null >/dev/null
    n10=$(p5_populate "$s10/memorun.db" 10)
    t0=$SECONDS
    nbig=$(p5_populate "$big/memorun.db" "$n")
    echo
    echo "P5 stores: 10-entry store: $n10; big store: $nbig (populated in $((SECONDS - t0)) s)"
    cp -a "$big" "$base"
    p5_disk "$base" "$RESULTS/p5-disk.json"
    local err
    for s in "$s10" "$big"; do
        err=$("$MEMORUN" --cache-dir "$s" -v -- echo hi </dev/null 2>&1 >/dev/null || true)
        grep -q hit <<<"$err" || echo "WARNING: P5: no hit in $s: $err" >&2
    done

    interleaved "$RESULTS/p5-hit.json" 6 \
        "hit, 10 entries" "$Q_MEMORUN --cache-dir $s10 -- echo hi" \
        "hit, $nn entries" "$Q_MEMORUN --cache-dir $big -- echo hi" \
        --warmup 20 --runs 100
    table "$RESULTS/p5-hit.json" "hit, 10 entries" \
        "P5 tiny hit (echo hi), 10 vs $nn entries, hyperfine -N, 6 interleaved rounds of 100 runs each"

    # The same entry re-recorded; far under any size limit, so that no
    # eviction is measured here (that is the stall below).
    MEMORUN_MAX_SIZE=1TiB interleaved "$RESULTS/p5-miss.json" 6 \
        "miss (--force), 10 entries" "$Q_MEMORUN --cache-dir $s10 --force -- echo hi" \
        "miss (--force), $nn entries" "$Q_MEMORUN --cache-dir $big --force -- echo hi" \
        --warmup 5 --runs 30
    table "$RESULTS/p5-miss.json" "miss (--force), 10 entries" \
        "P5 tiny miss (--force -- echo hi), 10 vs $nn entries, hyperfine -N, 6 interleaved rounds of 30 runs each"

    hyperfine -N --warmup 3 --runs 20 \
        --export-json "$RESULTS/p5-stats.json" \
        -n "stats, 10 entries" "$Q_MEMORUN stats --cache-dir $s10" \
        -n "stats, $nn entries" "$Q_MEMORUN stats --cache-dir $big" \
        -n "stats --json, $nn entries" "$Q_MEMORUN stats --json --cache-dir $big" \
        -n "list -n 20, 10 entries" "$Q_MEMORUN list -n 20 --cache-dir $s10" \
        -n "list -n 20, $nn entries" "$Q_MEMORUN list -n 20 --cache-dir $big"
    table "$RESULTS/p5-stats.json" "stats, 10 entries" "P5 stats and list -n 20, hyperfine -N"

    # Every row, to /dev/null (hyperfine -N), and the peak RSS of the same.
    local runs=10
    ((n < 500000)) || runs=3
    hyperfine -N --warmup 1 --runs "$runs" \
        --export-json "$RESULTS/p5-list.json" \
        -n "list, 10 entries" "$Q_MEMORUN list --cache-dir $s10" \
        -n "list, $nn entries" "$Q_MEMORUN list --cache-dir $big" \
        -n "list --json, $nn entries" "$Q_MEMORUN list --json --cache-dir $big"
    table "$RESULTS/p5-list.json" "list, 10 entries" "P5 list of every row, hyperfine -N"
    local rss10 rss rss_json
    rss10=$(peak_rss_mib "$MEMORUN" list --cache-dir "$s10")
    rss=$(peak_rss_mib "$MEMORUN" list --cache-dir "$big")
    rss_json=$(peak_rss_mib "$MEMORUN" list --json --cache-dir "$big")
    printf '{"list, 10 entries": %s, "list, %s entries": %s, "list --json, %s entries": %s}\n' \
        "$rss10" "$nn" "$rss" "$nn" "$rss_json" >"$RESULTS/p5-list-rss.json"
    echo
    echo "P5 list peak RSS (/usr/bin/time, best of 3): $rss10 MiB with 10 entries;" \
        "$rss MiB with $nn (--json: $rss_json MiB)"

    # clear --older-than 1d removes the entries last used 2-3 days ago (half
    # of them); each run starts from a fresh copy of the big store.
    printf 'rm -rf %q && cp -a %q %q\n' "$d/store-clear" "$base" "$d/store-clear" >"$d/restore.sh"
    sh "$d/restore.sh"
    local before after
    before=$(du -sB1 "$d/store-clear" | cut -f1)
    echo "P5 clear, one run: $("$MEMORUN" clear --older-than 1d --cache-dir "$d/store-clear" 2>&1 | tr '\n' ' ')"
    after=$(du -sB1 "$d/store-clear" | cut -f1)
    echo "P5 clear, entries left: $(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from entries').fetchone()[0])" "$d/store-clear/memorun.db");" \
        "du of the store went from $before to $after bytes ($(((before - after) / 1048576)) MiB freed)"
    local cruns=7 cwarm=1
    ((n < 500000)) || { cruns=3 cwarm=0; }
    hyperfine -N --warmup "$cwarm" --runs "$cruns" \
        --prepare "sh $d/restore.sh" \
        --export-json "$RESULTS/p5-clear.json" \
        -n "clear --older-than 1d ($half of $nn entries)" "$Q_MEMORUN clear --older-than 1d --cache-dir $d/store-clear"
    table "$RESULTS/p5-clear.json" "clear --older-than 1d ($half of $nn entries)" \
        "P5 clear --older-than 1d over $nn entries (a fresh copy each run), hyperfine -N"
    rm -rf "$d/store-clear"

    p5_evict "$big" "$nn"
}

# p5_evict STORE N: the stall of a miss that evicts (up to MAX_EVICT entries,
# src/store/evict.rs): the same miss under a MEMORUN_MAX_SIZE of half the
# store's size (so that every run is over it: each removes 100 entries, a
# few hundred KB) against one far above it, interleaved, both through env.
# Last, as it removes entries (4 rounds of 17 runs: 6,800, 7% of 100,000;
# a store too small to stay over the limit that long gets a warning).
p5_evict() {
    local store=$1 nn=$2 size limit
    local stat='import json, sys; print(json.load(sys.stdin)[sys.argv[1]])'
    size=$("$MEMORUN" stats --json --cache-dir "$store" | python3 -c "$stat" bytes_on_disk)
    limit=$((size / 2))
    echo
    echo "P5 eviction: the store takes $size bytes (stats); MEMORUN_MAX_SIZE=$limit for the evicting miss"
    local before after
    before=$("$MEMORUN" stats --json --cache-dir "$store" | python3 -c "$stat" evicted)
    interleaved "$RESULTS/p5-evict.json" 4 \
        "miss, no eviction, $nn entries" "env MEMORUN_MAX_SIZE=1TiB $Q_MEMORUN --cache-dir $store --force -- echo hi" \
        "miss that evicts, $nn entries" "env MEMORUN_MAX_SIZE=$limit $Q_MEMORUN --cache-dir $store --force -- echo hi" \
        --warmup 2 --runs 15
    table "$RESULTS/p5-evict.json" "miss, no eviction, $nn entries" \
        "P5 eviction stall: miss (--force -- echo hi) that evicts vs one that does not, $nn entries, hyperfine -N, 4 interleaved rounds of 15 runs each (and 2 warm-up)"
    after=$("$MEMORUN" stats --json --cache-dir "$store" | python3 -c "$stat" evicted)
    echo "P5 eviction: 68 evicting runs evicted $((after - before)) entries (100 each while over the limit)"
    if ((after - before < 6800)); then
        echo "WARNING: P5: the store fell under the limit: not every evicting run evicted" >&2
    fi
}

# p5_disk STORE JSON: the store's disk use (allocated blocks, du -B1) by
# part: hit records (records/), the database (memorun.db and its -wal and
# -shm), blobs (blobs/), the rest (tmp/, locks/, hits.log, secret).
p5_disk() {
    python3 - "$1" "$2" <<'PY'
import json, os, subprocess, sys
store, out = sys.argv[1], sys.argv[2]
def du(*paths):
    paths = [p for p in paths if os.path.lexists(p)]
    if not paths:
        return 0
    r = subprocess.run(["du", "-scB1", *paths], capture_output=True, text=True, check=True)
    return int(r.stdout.splitlines()[-1].split()[0])
j = lambda *p: os.path.join(store, *p)
parts = {
    "records/": du(j("records")),
    "memorun.db": du(j("memorun.db"), j("memorun.db-wal"), j("memorun.db-shm")),
    "blobs/": du(j("blobs")),
}
total = du(store)
parts["other"] = total - sum(parts.values())
parts["total"] = total
json.dump(parts, open(out, "w"))
print(f"\n### P5 disk use of the big store (du -B1, allocated)\n")
print("| part | bytes | MiB | share |")
print("|---|---:|---:|---:|")
for k, v in parts.items():
    print(f"| {k} | {v} | {v / 2**20:.1f} | {100 * v / total:.1f} % |")
PY
}

# P6: 16 concurrent identical misses; single-flight should run the command once.
bench_p6() {
    log "P6: 16 concurrent identical misses (sh -c 'echo x >> counter; sleep 1')"
    local trials=3 t
    : >"$RESULTS/p6.txt"
    : >"$RESULTS/p6-stderr.txt"
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
            for ((i = 0; i < 16; i++)); do
                sed "s/^/trial $t, run $i: /" "err.$i" >>"$RESULTS/p6-stderr.txt"
            done
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
    if [[ -s $RESULTS/p6-stderr.txt ]]; then
        echo
        echo "stderr of the 16 runs:"
        echo
        sed 's/^/    /' "$RESULTS/p6-stderr.txt"
    fi
}

# P7: a hit that restores 1 GiB of output files in 10,000 files, against
# `cp -r` of the same tree.
#
# The tree (100 directories x 100 files, sizes 50-150 KiB scaled to 1 GiB
# in all, random bytes from a fixed seed) is made in $WORK, so that it, the
# cache directory and cp's destination are on one file system. It is
# recorded once as `memorun -o dist -- ./gen.sh` (gen.sh: cp -r TREE dist);
# every measured run then starts without dist/, so memorun's hit restores
# the whole tree from verified blobs, and cp copies it from the tree.
#
# Before each run dist/ is moved into trash/ and its files truncated (their
# blocks freed, their inodes kept), then `sync`: neither command pays for
# the write-back of the run before. Not `rm -rf dist`: on an ext4 without a
# journal (this VM's), the inode allocator skips inodes freed in the last
# 60 s (ext4 ialloc.c, recently_deleted(), 360 s while their inode table
# block is dirty) and re-reads their inode table block for every one it
# skips, so each of 10,000 creations right after removing 10,000 files
# scans all of them, and that scan then takes most of either command's
# time (see BENCHMARKS.md, P7).
bench_p7() {
    log "P7: restore of 1 GiB in 10,000 output files vs cp -r"
    local d=$WORK/p7
    local avail_kb
    mkdir -p "$d"
    avail_kb=$(df -Pk "$d" | awk 'NR==2 {print $4}')
    if ((avail_kb < 4 * 1024 * 1024)); then
        echo
        echo "P7 (restore 1 GiB vs cp -r): skipped: $((avail_kb / 1024)) MiB free in $d, 4 GiB needed"
        return
    fi
    python3 - "$d/tree" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(15)
total, files = 1 << 30, 10_000
sizes = [rng.randint(50 * 1024, 150 * 1024) for _ in range(files)]
s = sum(sizes)
sizes = [x * total // s for x in sizes]
sizes[-1] += total - sum(sizes)
for i, n in enumerate(sizes):
    d = os.path.join(root, f"d{i // 100:02d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i % 100:02d}"), "wb") as f:
        f.write(rng.randbytes(n))
PY
    local nfiles bytes reflink
    nfiles=$(find "$d/tree" -type f | wc -l)
    bytes=$(find "$d/tree" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
    # Whether this file system shares extents (FICLONE), as memorun tries first.
    reflink=$(python3 - "$d/tree/d00/f00" "$d/ficlone-test" <<'PY'
import fcntl, os, sys
src = os.open(sys.argv[1], os.O_RDONLY)
dst = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
try:
    fcntl.ioctl(dst, 0x40049409, src)  # FICLONE
    print("yes")
except OSError as e:
    print(f"no ({os.strerror(e.errno)}), so memorun copies by read and write, cp by copy_file_range")
os.unlink(sys.argv[2])
PY
)
    printf '#!/bin/sh\ncp -r %q dist\n' "$d/tree" >"$d/gen.sh"
    chmod +x "$d/gen.sh"
    cat >"$d/prepare.sh" <<'SH'
#!/bin/sh
# Run before each measured run, in $d: dist/ out of the way, its blocks freed.
set -e
if [ -e dist ]; then
    t=trash/$(date +%s%N)
    mkdir -p trash
    mv dist "$t"
    find "$t" -type f -exec truncate -s 0 {} +
fi
sync
SH
    chmod +x "$d/prepare.sh"
    settle "$d/gen.sh" # an auto input
    local P7_CACHE=$d/cache Q_CACHE Q_TREE
    Q_CACHE=$(printf '%q' "$P7_CACHE")
    Q_TREE=$(printf '%q' "$d/tree")
    (
        cd "$d"
        "$MEMORUN" --cache-dir "$P7_CACHE" -o dist -- ./gen.sh </dev/null
        ./prepare.sh
        local err
        err=$("$MEMORUN" --cache-dir "$P7_CACHE" -v -o dist -- ./gen.sh </dev/null 2>&1 || true)
        grep -q "hit, restored $nfiles files" <<<"$err" ||
            echo "WARNING: P7: the hit did not restore $nfiles files: $err" >&2
        diff -r "$d/tree" dist >/dev/null || echo "WARNING: P7: the restored dist/ differs from the tree" >&2
        find "$d/tree" -type f -print0 | xargs -0 cat >/dev/null # into the page cache
        interleaved "$RESULTS/p7.json" 3 \
            "memorun -o dist -- ./gen.sh (hit, restores 1 GiB)" "$Q_MEMORUN --cache-dir $Q_CACHE -o dist -- ./gen.sh" \
            "cp -r TREE dist" "cp -r $Q_TREE dist" \
            --warmup 1 --runs 3 --prepare ./prepare.sh
    )
    echo
    echo "P7 tree: $nfiles files, $bytes bytes in 100 directories; cache $(du -sh "$P7_CACHE" | cut -f1); reflink (FICLONE) on $(df -T "$d" | awk 'NR==2 {print $2}'): $reflink"
    table "$RESULTS/p7.json" "cp -r TREE dist" \
        "P7 restore of $nfiles files ($bytes bytes) vs cp -r, each run without dist/ (--prepare: move dist/ aside, truncate, sync), hyperfine -N, 3 interleaved rounds of 3 runs"
    # On a loaded VM a run waits for a CPU as well: the CPU time each took.
    python3 - "$RESULTS/p7.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
print("\nCPU time per run (mean, hyperfine's user + system):\n")
for r in res:
    print(f"- {r['command']}: {(r['user'] + r['system']) * 1e3:.0f} ms "
          f"(user {r['user'] * 1e3:.0f}, system {r['system'] * 1e3:.0f})")
PY
    rm -rf "$d"
}

# P8: a hit whose outputs are already in place and unchanged (memorun must
# hash them and set their mtime), against the same command's hit without -o.
#
# Each command is a script that writes its output from a file of random
# bytes (16 KiB, 1 MiB, and a directory of 100 files of 1-8 KiB: some
# stored inline in the entry, most as blobs). Without -o the output is not
# named on the command line, so it is no automatic output either: that hit
# only checks the script and replays. Each variant has its own cache dir.
#
# The directory case is also measured against its floor, in the same
# hyperfine rounds: bench/floor.c built as floor-inplace makes only the
# calls such a hit cannot do without (list the directory; per file open,
# fstat, read, set the mtime, close), and as floor-hello only starts. The
# target: (hit with -o − hit without -o) ≤ 1.25 × (floor-inplace −
# floor-hello).
bench_p8() {
    log "P8: hit with outputs already in place (-o) vs the same hit without -o"
    local d=$WORK/p8
    mkdir -p "$d/data"
    python3 - "$d/data" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(8)
for name, n in (("obj-16k", 16 << 10), ("obj-1m", 1 << 20)):
    with open(os.path.join(root, name), "wb") as f:
        f.write(rng.randbytes(n))
os.makedirs(os.path.join(root, "objs"), exist_ok=True)
for i in range(100):
    with open(os.path.join(root, "objs", f"m{i:02d}.o"), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 8192)))
PY
    local Q_DATA floor=0
    Q_DATA=$(printf '%q' "$d/data")
    printf '#!/bin/sh\ncat %s/obj-16k >out-16k.o\n' "$Q_DATA" >"$d/cc-16k.sh"
    printf '#!/bin/sh\ncat %s/obj-1m >out-1m.o\n' "$Q_DATA" >"$d/cc-1m.sh"
    printf '#!/bin/sh\nrm -rf objs && cp -r %s/objs objs\n' "$Q_DATA" >"$d/cc-dir.sh"
    chmod +x "$d"/cc-*.sh
    if cc -O2 -static -o "$d/floor-hello" "$ROOT/bench/floor.c" 2>"$d/floor-cc.txt" &&
        cc -O2 -static -DFLOOR_INPLACE -o "$d/floor-inplace" "$ROOT/bench/floor.c" 2>>"$d/floor-cc.txt"; then
        floor=1
    else
        echo "WARNING: cannot build bench/floor.c; P8 without its floor (see $d/floor-cc.txt)" >&2
    fi
    settle "$d"/cc-*.sh # auto inputs
    local case script out label
    for case in "16k out-16k.o 16 KiB file" "1m out-1m.o 1 MiB file" "dir objs directory of 100 files of 1-8 KiB"; do
        read -r script out label <<<"$case"
        (
            cd "$d"
            "$MEMORUN" --cache-dir "$d/cache-o-$script" -o "$out" -- "./cc-$script.sh" </dev/null
            "$MEMORUN" --cache-dir "$d/cache-plain-$script" -- "./cc-$script.sh" </dev/null
            settle "$out"
            local err
            err=$("$MEMORUN" --cache-dir "$d/cache-o-$script" -v -o "$out" -- "./cc-$script.sh" </dev/null 2>&1 || true)
            if ! grep -q 'hit' <<<"$err" || grep -q 'restored' <<<"$err"; then
                echo "WARNING: P8 $label: the -o run was not a hit that kept its outputs: $err" >&2
            fi
            err=$("$MEMORUN" --cache-dir "$d/cache-plain-$script" -v -- "./cc-$script.sh" </dev/null 2>&1 || true)
            grep -q 'hit' <<<"$err" || echo "WARNING: P8 $label: the run without -o was not a hit: $err" >&2
            local cmds=(
                "hit, -o $out (in place: verify, touch)" "$Q_MEMORUN --cache-dir $d/cache-o-$script -o $out -- ./cc-$script.sh"
                "hit, no -o" "$Q_MEMORUN --cache-dir $d/cache-plain-$script -- ./cc-$script.sh"
            )
            if [[ $script == dir && $floor == 1 ]]; then
                cmds+=(
                    "floor: list, open, fstat, read, set mtime, close (bench/floor.c)" "$d/floor-inplace objs"
                    "floor: a static program that starts (bench/floor.c)" "$d/floor-hello"
                )
            fi
            interleaved_all "$RESULTS/p8-$script.json" 6 --warmup 20 --runs 100 -- "${cmds[@]}"
        )
        table "$RESULTS/p8-$script.json" "hit, no -o" \
            "P8 hit with outputs in place, $label (./cc-$script.sh), -o vs no -o, hyperfine -N, 6 interleaved rounds of 100 runs"
    done
    python3 - "$RESULTS/p8-dir.json" <<'PY'
import json, sys
by = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
o = [r for c, r in by.items() if c.startswith("hit, -o")][0]
plain = by["hit, no -o"]
floor = [r for c, r in by.items() if c.startswith("floor: list")]
hello = [r for c, r in by.items() if c.startswith("floor: a static")]
if floor and hello:
    a = o["median"] - plain["median"]
    b = floor[0]["median"] - hello[0]["median"]
    cpu = lambda r: r["user"] + r["system"]
    print(f"\nP8 directory of 100 files, what keeping them in place adds: memorun {a * 1e3:.3f} ms "
          f"(-o minus no -o), the floor {b * 1e3:.3f} ms (floor-inplace minus floor-hello): "
          f"{a / b:.2f}× (medians); CPU time (means, user + system): memorun "
          f"{(cpu(o) - cpu(plain)) * 1e3:.3f} ms, the floor {(cpu(floor[0]) - cpu(hello[0])) * 1e3:.3f} ms")
PY
}

# interleaved_all JSON ROUNDS HYPERFINE_OPTION... -- NAME CMD [NAME CMD]...: like
# `interleaved`, for any number of commands: each round runs them all, in
# order in even rounds and in reverse order in odd ones.
interleaved_all() {
    local json=$1 rounds=$2
    shift 2
    local opts=()
    while [[ $1 != -- ]]; do
        opts+=("$1")
        shift
    done
    shift
    local fwd=() rev=() r parts=() i
    for ((i = 0; i < $#; i += 2)); do
        local n=$((i + 1)) c=$((i + 2))
        fwd+=(-n "${!n}" "${!c}")
        rev=(-n "${!n}" "${!c}" "${rev[@]}")
    done
    for ((r = 0; r < rounds; r++)); do
        if ((r % 2 == 0)); then
            hyperfine -N "${opts[@]}" --export-json "$json.$r" "${fwd[@]}" >&2
        else
            hyperfine -N "${opts[@]}" --export-json "$json.$r" "${rev[@]}" >&2
        fi
        parts+=("$json.$r")
    done
    python3 - "$json" "${parts[@]}" <<'PY'
import json, statistics, sys
out, parts = sys.argv[1], sys.argv[2:]
times, cpu = {}, {}
for p in parts:
    for r in json.load(open(p))["results"]:
        times.setdefault(r["command"], [])
        cpu.setdefault(r["command"], [0.0, 0.0])
        times[r["command"]].extend(r["times"])
        cpu[r["command"]][0] += r["user"] * len(r["times"])
        cpu[r["command"]][1] += r["system"] * len(r["times"])
# In the order given (the first round's).
order = [r["command"] for r in json.load(open(parts[0]))["results"]]
res = [{"command": n, "times": times[n], "median": statistics.median(times[n]),
        "mean": statistics.fmean(times[n]), "stddev": statistics.stdev(times[n]),
        "min": min(times[n]), "max": max(times[n]),
        "user": cpu[n][0] / len(times[n]), "system": cpu[n][1] / len(times[n])} for n in order]
json.dump({"results": res, "rounds": len(parts)}, open(out, "w"))
PY
    rm -f "${parts[@]}"
}

# P9: the remote tier. nginx (WebDAV PUT) and redis-server run on loopback
# ports in $WORK, as the tests run them (tests/servers.rs). A remote hit is
# measured with an empty local store (hyperfine --prepare removes it), so
# every run downloads, verifies, installs and replays. The references fetch
# the very objects memorun fetches: curl (one process, one connection, each
# object to /dev/null, and once more to files, as memorun must install
# them) and redis-cli (one process, one GET per value, printed to
# /dev/null).
P9_SECRET=0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978
P9_PIDS=()
p9_stop() {
    local p
    for p in "${P9_PIDS[@]}"; do
        # Each server leads its own process group (setsid): nginx's
        # workers go with it.
        kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
    done
    P9_PIDS=()
}
p9_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
p9_wait_port() {
    local i
    for ((i = 0; i < 500; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.01
    done
    echo "bench/run.sh: nothing listens on port $1" >&2
    return 1
}
p9_servers() {
    [[ -x /usr/sbin/nginx ]] || apt_install nginx-light
    [[ -x /usr/bin/redis-server ]] || apt_install redis-server
    local d=$WORK/nginx user=""
    mkdir -p "$d/logs" "$d/tmp" "$d/dav/cache"
    [[ $(id -u) -ne 0 ]] || user="user root;"
    P9_HTTP_PORT=$(p9_free_port)
    cat >"$d/nginx.conf" <<NGINX
$user
daemon off; worker_processes 1; pid $d/nginx.pid; error_log $d/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log off; client_body_temp_path $d/tmp/body; proxy_temp_path $d/tmp/p;
  fastcgi_temp_path $d/tmp/f; uwsgi_temp_path $d/tmp/u; scgi_temp_path $d/tmp/s;
  server { listen 127.0.0.1:$P9_HTTP_PORT; root $d/dav;
    location /cache/ { dav_methods PUT DELETE; create_full_put_path on; client_max_body_size 0; }
  }
}
NGINX
    setsid /usr/sbin/nginx -p "$d" -c "$d/nginx.conf" -e "$d/logs/stderr.log" &
    P9_PIDS+=($!)
    P9_DAV=$d/dav/cache
    P9_REDIS_PORT=$(p9_free_port)
    setsid /usr/bin/redis-server --bind 127.0.0.1 --port "$P9_REDIS_PORT" --save '' --appendonly no \
        --daemonize no --dir "$WORK" --maxmemory 1gb --maxmemory-policy allkeys-lru \
        --logfile "$WORK/redis.log" &
    P9_PIDS+=($!)
    trap 'p9_stop; cleanup' EXIT
    p9_wait_port "$P9_HTTP_PORT"
    p9_wait_port "$P9_REDIS_PORT"
    P9_HTTP=http://127.0.0.1:$P9_HTTP_PORT/cache
    P9_REDIS=redis://127.0.0.1:$P9_REDIS_PORT
}

# p9_hit NAME RUNS CMD...: a remote hit of CMD with an empty local store,
# from nginx and from Redis, against curl and redis-cli fetching the same
# objects.
p9_hit() {
    local name=$1 runs=$2
    shift 2
    local cmd="$*" url kind o ref
    local objects=() keys=()
    export MEMORUN_SECRET=$P9_SECRET
    rm -rf "${P9_DAV:?}/memorun"
    redis-cli -p "$P9_REDIS_PORT" FLUSHALL >/dev/null
    # Record it once, uploading to both servers.
    for url in "$P9_HTTP" "$P9_REDIS"; do
        rm -rf "$WORK/p9-rec"
        # shellcheck disable=SC2086 # CMD is words
        "$MEMORUN" --cache-dir "$WORK/p9-rec" --remote "$url" -- $cmd </dev/null >/dev/null
    done
    mapfile -t objects < <(cd "$P9_DAV" && find memorun -type f | sort)
    mapfile -t keys < <(redis-cli -p "$P9_REDIS_PORT" --scan --pattern 'memorun/*' | sort)
    {
        printf 'curl -s'
        for o in "${objects[@]}"; do printf ' -o /dev/null %s/%s' "$P9_HTTP" "$o"; done
        printf '\n'
    } >"$WORK/p9-curl.sh"
    # The same, written to files, as memorun must (it installs them locally).
    {
        printf 'curl -s --create-dirs'
        for o in "${objects[@]}"; do printf ' -o %s/p9-out/%s %s/%s' "$WORK" "${o##*/}" "$P9_HTTP" "$o"; done
        printf '\n'
    } >"$WORK/p9-curl-files.sh"
    printf 'GET %s\n' "${keys[@]}" >"$WORK/p9-get.txt"
    printf 'redis-cli -p %s <%s >/dev/null\n' "$P9_REDIS_PORT" "$WORK/p9-get.txt" >"$WORK/p9-redis.sh"
    echo
    echo "P9 $name: ${#objects[@]} HTTP objects, ${#keys[@]} Redis values, $(find "$P9_DAV/memorun" -type f -printf '%s\n' | awk '{ n += $1 } END { print n }') bytes"
    for kind in http redis; do
        url=$P9_HTTP ref=curl
        [[ $kind == http ]] || { url=$P9_REDIS ref=redis-cli; }
        local more=()
        [[ $kind == redis ]] || more=(-n "curl, to files" "sh $WORK/p9-curl-files.sh")
        hyperfine -N --warmup 3 --runs "$runs" --prepare "rm -rf $WORK/p9-empty $WORK/p9-out" \
            --export-json "$RESULTS/p9-$name-$kind.json" \
            -n "memorun remote hit ($kind)" "$Q_MEMORUN --cache-dir $WORK/p9-empty --remote $url -- $cmd" \
            -n "$ref" "sh $WORK/p9-$([[ $kind == http ]] && echo curl || echo redis).sh" "${more[@]}"
        table "$RESULTS/p9-$name-$kind.json" "$ref" \
            "P9 remote hit, $name, empty local store, from $kind, hyperfine -N"
    done
    unset MEMORUN_SECRET
}

bench_p9() {
    log "P9: remote cache"
    p9_servers
    ensure_small_file
    p9_hit tiny 100 cat small-file
    printf '%s\n' "head -c 100000000 /dev/zero | tr '\\0' x" >gen100mb.sh
    settle gen100mb.sh
    p9_hit 100mb 15 sh gen100mb.sh
    # A miss that uploads 100 MB (the remote emptied before each run, so
    # that every run uploads) against the same miss without a remote.
    sync
    MEMORUN_SECRET=$P9_SECRET hyperfine -N --warmup 2 --runs 15 \
        --prepare "rm -rf $P9_DAV/memorun" \
        --export-json "$RESULTS/p9-upload.json" \
        -n "memorun --force --remote (nginx) -- sh gen100mb.sh" "$MR --force --remote $P9_HTTP -- sh gen100mb.sh" \
        -n "memorun --force -- sh gen100mb.sh" "$MR --force -- sh gen100mb.sh"
    table "$RESULTS/p9-upload.json" "memorun --force -- sh gen100mb.sh" \
        "P9 miss that uploads 100 MB to nginx, against the same miss without a remote, hyperfine -N"
    p9_stop
}

# ------------------------------------------------------------------ P10 ----
# A single-node Garage (an S3-compatible store) on loopback, as the tests
# start it (tests/servers.rs): bucket "memorun", one read-write key.
P10_PID=""
p10_stop() {
    [[ -z $P10_PID ]] || kill -KILL -- "-$P10_PID" 2>/dev/null || kill -KILL "$P10_PID" 2>/dev/null || true
    P10_PID=""
}
p10_garage() {
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    if ! command -v garage >/dev/null; then
        log "installing garage (cargo install; about 13 minutes on 2 cores, once)"
        cargo install --locked garage
    fi
    local d=$WORK/garage rpc s3
    mkdir -p "$d"
    rpc=$(p9_free_port)
    s3=$(p9_free_port)
    cat >"$d/garage.toml" <<TOML
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
TOML
    RUST_LOG=warn setsid garage -c "$d/garage.toml" server >"$d/garage.log" 2>&1 &
    P10_PID=$!
    trap 'p9_stop; p10_stop; cleanup' EXIT
    p9_wait_port "$s3"
    local g=(garage -c "$d/garage.toml") id i out
    for ((i = 0; i < 100; i++)); do
        id=$("${g[@]}" node id -q 2>/dev/null) && break
        sleep 0.1
    done
    "${g[@]}" layout assign -z dc1 -c 1G "${id%%@*}" >/dev/null
    "${g[@]}" layout apply --version 1 >/dev/null
    "${g[@]}" bucket create memorun >/dev/null
    out=$("${g[@]}" key create bench)
    "${g[@]}" bucket allow --read --write --owner memorun --key bench >/dev/null
    export AWS_ENDPOINT_URL=http://127.0.0.1:$s3 AWS_REGION=garage
    AWS_ACCESS_KEY_ID=$(awk '/^Key ID:/ { print $3 }' <<<"$out")
    AWS_SECRET_ACCESS_KEY=$(awk '/^Secret key:/ { print $3 }' <<<"$out")
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
}

# p10_presign KEY...: a presigned GET URL (SigV4, query string, an hour)
# for each object KEY of the bucket, or for the bucket's listing of
# memorun/ when KEY is "?list". Python's standard library only.
p10_presign() {
    python3 - "$@" <<'PY'
import datetime, hashlib, hmac, os, sys, urllib.parse
endpoint, region = os.environ["AWS_ENDPOINT_URL"], os.environ["AWS_REGION"]
ak, sk = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
host = endpoint.split("://", 1)[1]
now = datetime.datetime.now(datetime.timezone.utc)
amz_date, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
scope = f"{date}/{region}/s3/aws4_request"
q = lambda s: urllib.parse.quote(s, safe="-_.~")
def mac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()
k = mac(mac(mac(mac(("AWS4" + sk).encode(), date), region), "s3"), "aws4_request")
for key in sys.argv[1:]:
    params = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": f"{ak}/{scope}",
              "X-Amz-Date": amz_date, "X-Amz-Expires": "3600", "X-Amz-SignedHeaders": "host"}
    if key == "?list":
        path = "/memorun/"
        params.update({"list-type": "2", "prefix": "memorun/"})
    else:
        path = "/memorun/" + urllib.parse.quote(key, safe="/-_.~")
    query = "&".join(f"{q(a)}={q(b)}" for a, b in sorted(params.items()))
    creq = f"GET\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    print(f"{endpoint}{path}?{query}&X-Amz-Signature={sig}")
PY
}

bench_p10() {
    log "P10: remote cache on S3 (Garage)"
    p10_garage
    printf '%s\n' "head -c 100000000 /dev/zero | tr '\\0' x" >gen100mb.sh
    settle gen100mb.sh
    local url=s3://memorun objects=() o
    export MEMORUN_SECRET=$P9_SECRET
    rm -rf "$WORK/p10-rec"
    "$MEMORUN" --cache-dir "$WORK/p10-rec" --remote "$url" -- sh gen100mb.sh </dev/null >/dev/null
    mapfile -t objects < <(curl -s "$(p10_presign '?list')" | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g')
    # The same objects memorun fetches, with presigned URLs: to /dev/null,
    # and to files (memorun installs them in its local store).
    {
        printf 'curl -s'
        p10_presign "${objects[@]}" | while read -r o; do printf " -o /dev/null '%s'" "$o"; done
        printf '\n'
    } >"$WORK/p10-curl.sh"
    {
        printf 'curl -s'
        local i=0
        p10_presign "${objects[@]}" | while read -r o; do
            i=$((i + 1))
            printf " -o %s/p10-out/%d '%s'" "$WORK" "$i" "$o"
        done
        printf '\n'
    } >"$WORK/p10-curl-files.sh"
    mkdir -p "$WORK/p10-out"
    echo
    echo "P10: ${#objects[@]} objects in the bucket"
    hyperfine -N --warmup 3 --runs 15 --prepare "rm -rf $WORK/p10-empty $WORK/p10-out/*" \
        --export-json "$RESULTS/p10.json" \
        -n "memorun remote hit (s3)" "$Q_MEMORUN --cache-dir $WORK/p10-empty --remote $url -- sh gen100mb.sh" \
        -n "curl, presigned" "sh $WORK/p10-curl.sh" \
        -n "curl, presigned, to files" "sh $WORK/p10-curl-files.sh"
    table "$RESULTS/p10.json" "curl, presigned" \
        "P10 remote hit, 100 MB, empty local store, from Garage (S3), hyperfine -N"
    unset MEMORUN_SECRET AWS_ENDPOINT_URL AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    p10_stop
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
for f, raw in (("p1.json", "cat"), ("p1-echo.json", "echo")):
    ratio_line(f"P1 memorun hit vs {raw}", f, "memorun hit", raw, 1.2)
    x, y = med(f, "memorun hit"), med(f, "bkt hit")
    if x is not None and y is not None:
        lines.append(f"- P1 memorun hit faster than bkt hit ({raw}): {'met' if x < y else 'NOT met'} ({x*1e3:.3f} ms vs {y*1e3:.3f} ms)")
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
    b = med("p3-tiny.json", "bkt --force -- /bin/true")
    if b is not None:
        bd = (b - y) * 1e3
        lines.append(f"- P3 tiny miss overhead less than bkt's: {'met' if delta < bd else 'NOT met'} (+{delta:.3f} ms vs +{bd:.3f} ms)")
ratio_line("P3 100 MB miss vs raw (cat big-file)", "p3-big.json", "memorun --force -- cat big-file", "cat big-file", 1.2)
ratio_line("P3 100 MB miss vs raw (generator)", "p3-gen.json", "memorun --force -- sh gen100mb.sh", "sh gen100mb.sh", 1.2)
x, y = med("p3-gen.json", "memorun --force -- sh gen100mb.sh"), med("p3-gen.json", "sh gen100mb.sh | tee spool | b3sum")
if x is not None and y is not None:
    lines.append(f"- P3 100 MB miss faster than cmd | tee spool | b3sum: {'met' if x < y else 'NOT met'} ({x*1e3:.1f} ms vs {y*1e3:.1f} ms)")
    def cpu(name):
        r = [r for r in json.load(open(os.path.join(d, "p3-gen.json")))["results"] if r["command"] == name][0]
        return r["user"] + r["system"]
    per_mb = (cpu("memorun --force -- sh gen100mb.sh") - cpu("sh gen100mb.sh")) / 100 * 1e3
    lines.append(f"- P3 100 MB miss: CPU beyond the command's own: {per_mb:.2f} ms per MB (user + system, means)")
first = med("p4-first.json", "memorun --force -i DIR -- true (first run)")
if first is not None:
    refs = {c: med("p4-first.json", c) for c in ("b3sum (all files as args)", "b3sum (find | xargs)")}
    best = min(refs, key=refs.get)
    for c, v in refs.items():
        r = first / v
        tag = " (the faster b3sum: the verdict)" if c == best else ""
        lines.append(f"- P4 first run ≤ 1.25× {c}{tag}: {'met' if r <= 1.25 else 'NOT met'} ({r:.2f}×, {first*1e3:.1f} ms vs {v*1e3:.1f} ms)")
warm = med("p4-warm.json", "memorun -i DIR -- true (warm hit)")
if warm is not None:
    lines.append(f"- P4 warm hit ≤ 50 ms: {'met' if warm <= 0.050 else 'NOT met'} ({warm*1e3:.1f} ms)")
for size in ("tiny", "100mb"):
    ratio_line(f"P9 remote hit ({size}, nginx) vs curl", f"p9-{size}-http.json", "memorun remote hit (http)", "curl", 1.3)
    ratio_line(f"P9 remote hit ({size}, Redis) vs redis-cli", f"p9-{size}-redis.json", "memorun remote hit (redis)", "redis-cli", 1.3)
ratio_line("P10 remote hit (100 MB, Garage) vs curl of presigned URLs", "p10.json", "memorun remote hit (s3)", "curl, presigned", 1.3)
p = os.path.join(d, "p5-disk.json")
if os.path.exists(p):
    # The labels carry the big store's size: read it off the hit's.
    big = [r["command"] for r in json.load(open(os.path.join(d, "p5-hit.json")))["results"]
           if r["command"] != "hit, 10 entries"][0].removeprefix("hit, ")
    ratio_line(f"P5 hit with {big} vs 10", "p5-hit.json", f"hit, {big}", "hit, 10 entries", 1.1)
    ratio_line(f"P5 miss (--force) with {big} vs 10", "p5-miss.json",
               f"miss (--force), {big}", "miss (--force), 10 entries", 1.2)
    for label, f, cmd in (("stats", "p5-stats.json", f"stats, {big}"),
                          ("list -n 20", "p5-stats.json", f"list -n 20, {big}")):
        x = med(f, cmd)
        if x is not None:
            lines.append(f"- P5 {label} with {big} < 1 s: {'met' if x < 1 else 'NOT met'} ({x*1e3:.1f} ms)")
    x = med("p5-list.json", f"list, {big}")
    rss = json.load(open(os.path.join(d, "p5-list-rss.json")))
    r10, rbig, rjson = rss["list, 10 entries"], rss[f"list, {big}"], rss[f"list --json, {big}"]
    ok = max(rbig, rjson) <= r10 + 8
    lines.append(f"- P5 list of all {big} streams, peak RSS within 8 MiB of the 10-entry store's: "
                 f"{'met' if ok else 'NOT met'} ({rbig:.1f} MiB, --json {rjson:.1f} MiB, vs {r10:.1f} MiB; "
                 f"{x:.2f} s for all rows)")
    x = [r for r in json.load(open(os.path.join(d, "p5-clear.json")))["results"]][0]
    lines.append(f"- P5 {x['command']} < 30 s: {'met' if x['median'] < 30 else 'NOT met'} ({x['median']:.2f} s)")
    disk = json.load(open(p))
    share = disk["records/"] / disk["total"]
    lines.append(f"- P5 hit records ≤ 25 % of the store's disk at {big}: {'met' if share <= 0.25 else 'NOT met'} "
                 f"({100 * share:.1f} %: records/ {disk['records/'] / 2**20:.0f} MiB, memorun.db "
                 f"{disk['memorun.db'] / 2**20:.0f} MiB, blobs/ {disk['blobs/'] / 2**20:.0f} MiB, "
                 f"total {disk['total'] / 2**20:.0f} MiB)")
    x, y = med("p5-evict.json", f"miss that evicts, {big}"), med("p5-evict.json", f"miss, no eviction, {big}")
    if x is not None and y is not None:
        delta = (x - y) * 1e3
        lines.append(f"- P5 a miss that evicts ≤ 50 ms more than one that does not, at {big}: "
                     f"{'met' if delta <= 50 else 'NOT met'} (+{delta:.1f} ms: {x*1e3:.1f} ms vs {y*1e3:.1f} ms)")
p = os.path.join(d, "p6.txt")
if os.path.exists(p):
    trials = [l.split() for l in open(p) if l.strip()]
    execs = [int(t[2]) for t in trials]
    walls = sorted(float(t[1]) for t in trials)
    ok = all(e == 1 for e in execs) and walls[len(walls) // 2] <= 1.5
    lines.append(f"- P6 16 concurrent misses: 1 execution, ~1 s wall: {'met' if ok else 'NOT met'} "
                 f"(executions per trial: {', '.join(map(str, execs))}; median wall {walls[len(walls) // 2]:.2f} s)")
ratio_line("P7 restore of 1 GiB in 10,000 files vs cp -r", "p7.json",
           "memorun -o dist -- ./gen.sh (hit, restores 1 GiB)", "cp -r TREE dist", 1.2)
for case, label in (("16k", "16 KiB file"), ("1m", "1 MiB file")):
    p = os.path.join(d, f"p8-{case}.json")
    if os.path.exists(p):
        with_o = [r["command"] for r in json.load(open(p))["results"] if r["command"] != "hit, no -o"]
        ratio_line(f"P8 hit with outputs in place ({label}), -o vs no -o,", f"p8-{case}.json",
                   with_o[0], "hit, no -o", 1.1)
p = os.path.join(d, "p8-dir.json")
if os.path.exists(p):
    by = {r["command"].split(" (")[0]: r["median"] for r in json.load(open(p))["results"]}
    o = [v for c, v in by.items() if c.startswith("hit, -o")]
    fl = by.get("floor: list, open, fstat, read, set mtime, close")
    hello = by.get("floor: a static program that starts")
    if o and fl is not None and hello is not None:
        a, b = o[0] - by["hit, no -o"], fl - hello
        r = a / b
        lines.append(f"- P8 hit with 100 files in place: (-o − no -o) ≤ 1.25 × (floor − static start): "
                     f"{'met' if r <= 1.25 else 'NOT met'} ({r:.2f}×, {a*1e3:.3f} ms vs {b*1e3:.3f} ms)")
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
