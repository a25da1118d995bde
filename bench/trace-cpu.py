#!/usr/bin/env python3
"""CPU time (user + system, of memorun and everything it runs) of a traced
run against the untraced one, side by side (issue 24, section 4).

    python3 bench/trace-cpu.py MEMORUN [ROUNDS]

MEMORUN is a release build (target/<host>/release/memorun). Two groups, each
measured in ROUNDS (default 15) rounds that rotate which command goes
first, so that the machine's drift stays out of the ratios:

  compile  a miss of `cc -O2 -c blake3.c` (the blake3 crate's C file from
           Cargo's registry): `memorun --force`, `memorun --force --trace`
           and `strace -f --seccomp-bpf -e trace=%file,execve`
  hit      a hit of `sh -c 'cat src/*.h'` over 1,000 headers edited an hour
           ago: untraced, and traced (1,000+ traced inputs checked)

Prints the median user+system time of each, and the ratios.
"""
import glob
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile


def cpu(cmd, cwd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, cwd=cwd, check=True, shell=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def group(title, cmds, rounds, cwd, warmup=2):
    names = list(cmds)
    for name in names:
        for _ in range(warmup):
            cpu(cmds[name], cwd)
    times = {n: [] for n in names}
    for r in range(rounds):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            times[name].append(cpu(cmds[name], cwd))
    base = statistics.median(times[names[0]])
    print(f"\n{title} ({rounds} rotated rounds; median user+sys CPU)\n")
    print("| command | CPU ms | ratio |")
    print("|---|---:|---:|")
    for n in names:
        m = statistics.median(times[n])
        print(f"| {n} | {m * 1000:.1f} | {m / base:.3f}x |")
    return times


def main():
    memorun = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    cargo = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    c_file = sorted(glob.glob(f"{cargo}/registry/src/*/blake3-*/c/blake3.c"))[-1]
    work = tempfile.mkdtemp(prefix="memorun-trace-cpu.")
    try:
        for f in glob.glob(os.path.join(os.path.dirname(c_file), "*.[ch]")):
            shutil.copy(f, work)
        m = f"{memorun} --cache-dir {work}/cache"
        compile_ = "cc -O2 -c blake3.c -o blake3.o"
        group("cc -O2 -c blake3.c, a miss", {
            "memorun miss": f"{m} --force -- {compile_}",
            "memorun --trace miss": f"{m} --force --trace -- {compile_}",
            "strace": f"strace -f --seccomp-bpf -e trace=%file,execve -o /dev/null {compile_}",
        }, rounds, work)
        os.mkdir(f"{work}/src")
        for i in range(1, 1001):
            with open(f"{work}/src/f{i}.h", "w") as fh:
                fh.write(f"int v{i} = {i};\n")
        subprocess.run(f"touch -d '1 hour ago' {work}/src/*.h", shell=True, check=True)
        cat = "sh -c 'cat src/*.h > /dev/null'"
        for traced in ("", "--trace"):
            subprocess.run(f"{m} {traced} -- {cat}", shell=True, cwd=work, check=True,
                           stdout=subprocess.DEVNULL)
        out = subprocess.run(f"{m} -v --trace -- {cat}", shell=True, cwd=work,
                             capture_output=True, text=True).stderr
        assert "traced inputs unchanged" in out, out
        print(f"\n- {out.strip()}")
        group("a hit over 1,000 unchanged inputs", {
            "memorun hit": f"{m} -- {cat}",
            "memorun --trace hit": f"{m} --trace -- {cat}",
        }, rounds * 3, work)
    finally:
        shutil.rmtree(work)


main()
