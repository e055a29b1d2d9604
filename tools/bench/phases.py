#!/usr/bin/env python3
"""Where stalewalk's time to the first guest instruction goes: runs
`strace -f -ttt` on RUNS boots of the mini guest and prints the median
time of each phase, from execve to the first KVM_RUN. strace slows every
system call, so the phases add up to more than an untraced start; their
proportions are what it shows.

usage: phases.py STALEWALK [RUNS]
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile

# (label, regex of the syscall line that ENDS the phase), in order.
PHASES = [
    ("execve to main (dynamic loader, Rust runtime)", r'openat\(AT_FDCWD, "/proc/self/maps"'),
    ("main to open(/dev/kvm): arguments, configuration", r'openat\(AT_FDCWD, "/dev/kvm"'),
    ("open(/dev/kvm) to KVM_CREATE_VM", r"ioctl\(\d+, KVM_CREATE_VM"),
    ("KVM_CREATE_VM, guest memory, irqchip, kernel load, boot tables, devices, ACPI",
     r"ioctl\(\d+, KVM_GET_SUPPORTED_CPUID"),
    ("CPUID, vCPU creation and registers", r"seccomp\("),
    ("seccomp filters, vCPU thread start, to the first KVM_RUN", r"ioctl\(\d+, KVM_RUN"),
]


def one(sw):
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as f:
        subprocess.run(["strace", "-f", "-ttt", "-o", f.name, sw, "run", "--memory", "128M"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        lines = f.read().splitlines()
    t0 = None
    marks = []
    i = 0
    for line in lines:
        m = re.match(r"(?:\d+ +)?(\d+\.\d+) (.*)", line)
        if not m:
            continue
        t, call = float(m.group(1)), m.group(2)
        if t0 is None and call.startswith("execve("):
            t0 = t
            continue
        if t0 is not None and i < len(PHASES) and re.search(PHASES[i][1], call):
            marks.append(t)
            i += 1
    if t0 is None or len(marks) != len(PHASES):
        return None
    prev = t0
    out = []
    for t in marks:
        out.append((t - prev) * 1e3)
        prev = t
    return out


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    sw = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) == 3 else 5
    got = [r for r in (one(sw) for _ in range(runs)) if r]
    if not got:
        sys.exit("phases.py: no strace run reached KVM_RUN")
    cols = list(zip(*got))
    total = statistics.median([sum(r) for r in got])
    print(f"execve to first KVM_RUN under strace -f: {total:.2f} ms (median of {len(got)})")
    for (label, _), col in zip(PHASES, cols):
        print(f"{statistics.median(col):7.2f} ms  {label}")


if __name__ == "__main__":
    os.environ.setdefault("LC_ALL", "C")
    main()
