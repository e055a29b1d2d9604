#!/usr/bin/env python3
"""VMM start-up side by side: stalewalk and QEMU microvm booting the same
mini-guest ELF, run interleaved (stalewalk, QEMU, QEMU traced, then the
"spin" runs, next round ...) so both see the same host load.

Per run it records, from the harness's clock taken just before the spawn:
  - wall time to process exit (the guest writes 0 to the debug-exit port
    after its boot banner) and peak RSS (GNU time's %M);
  - the time of the first KVM_RUN (the guest's first instruction):
    stalewalk prints it with -v (first_run_unix_us=...); QEMU's is the
    first kvm_vcpu_ioctl type 0xae80 in its trace log (-trace
    kvm_vcpu_ioctl -msg timestamp=on), taken in a separate run so the
    tracing does not slow the untraced QEMU runs;
  - RSS beyond guest RAM: the guest runs scenario=spin (boot, then a
    CPL3 loop); once it prints spinning=1 the harness reads VmHWM from
    /proc/PID/status and the resident size of the guest-RAM mapping (the
    anonymous mapping of the guest's size) from /proc/PID/smaps, then
    sends SIGTERM.

Writes one JSON object (all samples) to --out.
"""

import argparse
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

GUEST_MIB = 128
# The guest-RAM mapping: QEMU may pad it for alignment (up to 2 MiB).
RAM_KIB_MIN = GUEST_MIB * 1024
RAM_KIB_MAX = RAM_KIB_MIN + 4096
SPIN_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 60.0
GNU_TIME = "/usr/bin/time"


def qemu_cmd(qemu, elf, extra):
    # Option ROMs stay on: QEMU 10's microvm firmware (SeaBIOS) boots a PVH
    # -kernel only through its linuxboot option ROM; with
    # x-option-roms=off it finds no boot device and loops forever.
    return [
        qemu, "-M", "microvm,rtc=off,pic=off,pit=off",
        "-enable-kvm", "-cpu", "kvm64", "-m", f"{GUEST_MIB}M", "-nodefaults",
        "-no-user-config", "-nographic", "-serial", "stdio",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", elf,
    ] + extra


def sw_cmd(sw, extra):
    return [sw, "run", "--memory", f"{GUEST_MIB}M"] + extra


def timed(cmd):
    """Runs cmd to exit: (t0_ns, wall_ms, peak_rss_kib, status, output).

    Peak RSS comes from GNU time, not from this process's wait4: a child
    forked from Python carries Python's high-water mark across exec."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        t0 = time.time_ns()
        try:
            p = subprocess.run([GNU_TIME, "-f", "%M", "-o", rss.name] + cmd,
                               stdout=out, stderr=subprocess.STDOUT, check=False,
                               timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            out.seek(0)
            sys.exit(f"boot.py: {cmd[0]} did not exit within {RUN_TIMEOUT_S:.0f} s:\n"
                     + out.read().decode(errors="replace")[-2000:])
        t1 = time.time_ns()
        out.seek(0)
        text = out.read().decode(errors="replace")
        peak = int(rss.read().split()[-1])
    return t0, (t1 - t0) / 1e6, peak, p.returncode, text


def check_banner(name, text):
    if "stalewalk-guest: exit=0" not in text:
        sys.exit(f"boot.py: {name}: the guest did not finish its boot:\n{text}")


def run_stalewalk(sw):
    t0, wall, rss, rc, text = timed(sw_cmd(sw, ["-v"]))
    check_banner("stalewalk", text)
    if rc != 0:
        sys.exit(f"boot.py: stalewalk exited {rc}:\n{text}")
    m = re.search(r"first_run_unix_us=(\d+)", text)
    if not m:
        sys.exit("boot.py: stalewalk -v printed no first_run_unix_us (vmm too old?)")
    first = (int(m.group(1)) * 1000 - t0) / 1e6
    return {"wall_ms": wall, "rss_kib": rss, "first_ms": first}


def run_qemu(qemu, elf):
    _, wall, rss, rc, text = timed(qemu_cmd(qemu, elf, []))
    check_banner("qemu", text)
    # isa-debug-exit turns the guest's 0 into (0 << 1) | 1.
    if rc != 1:
        sys.exit(f"boot.py: qemu exited {rc}, expected 1:\n{text}")
    return {"wall_ms": wall, "rss_kib": rss}


def run_qemu_traced(qemu, elf):
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        t0, _, _, _, text = timed(qemu_cmd(
            qemu, elf, ["-trace", "kvm_vcpu_ioctl", "-msg", "timestamp=on", "-D", log.name]))
        check_banner("qemu (traced)", text)
        with open(log.name, encoding="utf-8", errors="replace") as f:
            for line in f:
                # PID@SEC.USEC:kvm_vcpu_ioctl cpu_index 0, type 0xae80, ...
                m = re.match(r"\d+@(\d+)\.(\d+):kvm_vcpu_ioctl .*type 0xae80\b", line)
                if m:
                    t = int(m.group(1)) * 10**9 + int(m.group(2).ljust(6, "0")[:6]) * 1000
                    return {"first_ms": (t - t0) / 1e6}
    sys.exit("boot.py: no KVM_RUN in QEMU's trace (is its trace backend 'log'?)")


def guest_ram_rss_kib(pid):
    """Resident KiB of the guest-RAM mapping (largest matching mapping)."""
    best = None
    size = None
    with open(f"/proc/{pid}/smaps", encoding="utf-8") as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Rss:") and size is not None:
                if RAM_KIB_MIN <= size <= RAM_KIB_MAX:
                    rss = int(line.split()[1])
                    best = rss if best is None else max(best, rss)
                size = None
    if best is None:
        raise RuntimeError(f"no {GUEST_MIB} MiB mapping in /proc/{pid}/smaps")
    return best


def status_kib(pid, key):
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def run_spin(name, cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = b""
    deadline = time.monotonic() + SPIN_TIMEOUT_S
    try:
        while b"spinning=1" not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or p.poll() is not None:
                sys.exit(f"boot.py: {name} spin run: no spinning=1 line:\n{seen.decode(errors='replace')}")
            ready, _, _ = select.select([p.stdout], [], [], left)
            if ready:
                chunk = os.read(p.stdout.fileno(), 4096)
                seen += chunk
        hwm = status_kib(p.pid, "VmHWM")
        guest = guest_ram_rss_kib(p.pid)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
    return {"hwm_kib": hwm, "guest_ram_kib": guest, "overhead_kib": hwm - guest}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--stalewalk", required=True)
    ap.add_argument("--elf", required=True)
    ap.add_argument("--qemu", default="", help="qemu-system-x86_64; empty: stalewalk only")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    res = {"runs": a.runs, "guest_mib": GUEST_MIB, "stalewalk": [], "stalewalk_spin": [],
           "qemu": [], "qemu_traced": [], "qemu_spin": [], "qemu_version": None,
           "qemu_cmd": " ".join(qemu_cmd("qemu-system-x86_64", "<mini.elf>", [])),
           "stalewalk_cmd": " ".join(sw_cmd("stalewalk", ["-v"]))}
    if a.qemu:
        v = subprocess.run([a.qemu, "--version"], capture_output=True, text=True, check=True)
        res["qemu_version"] = v.stdout.splitlines()[0]
    # One uncounted warm-up of each (page cache, binaries).
    run_stalewalk(a.stalewalk)
    if a.qemu:
        run_qemu(a.qemu, a.elf)
    for _ in range(a.runs):
        res["stalewalk"].append(run_stalewalk(a.stalewalk))
        if a.qemu:
            res["qemu"].append(run_qemu(a.qemu, a.elf))
            res["qemu_traced"].append(run_qemu_traced(a.qemu, a.elf))
        res["stalewalk_spin"].append(
            run_spin("stalewalk", sw_cmd(a.stalewalk, ["--scenario", "spin"])))
        if a.qemu:
            res["qemu_spin"].append(
                run_spin("qemu", qemu_cmd(a.qemu, a.elf, ["-append", "scenario=spin"])))
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
