# Shell functions the benchmark scripts share (sourced by bench/run.sh).

log() { printf '\n==> %s\n' "$*" >&2; }

# apt_install PACKAGE...: with sudo when not root, `apt-get update` once.
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
