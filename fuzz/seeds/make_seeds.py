#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the structured fuzz targets into
fuzz/corpus/<target>/ (the byte layouts follow each target's `Input` reads:
little-endian, one opcode byte per operation). Run from anywhere:
    python3 fuzz/seeds/make_seeds.py
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")


def u8(v): return struct.pack("<B", v & 0xff)
def u16(v): return struct.pack("<H", v & 0xffff)
def u32(v): return struct.pack("<I", v & 0xffffffff)
def u64(v): return struct.pack("<Q", v & 0xffffffffffffffff)


def save(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------- viommu_qi_walk
def pte(page, idx, to_page, flags=0x7, xd=0):
    """op 1: entry at (page, idx) -> to_page with flags."""
    return u8(1) + u8(page) + u16(idx) + u8(to_page) + u16(flags) + u8(xd)


def request(rid=0x20, pasid=1, addr_page=1, access=0, priv=0):
    # wide rid? no; rid u8; pasid mode 1 -> below(64); addr mode 1 -> page << 12
    return u8(0) + u8(rid) + u8(1) + u32(pasid) + u8(1) + u32(addr_page) + u16(access) + u8(priv)


# PML4 (page 0x10) -> PDPT 0x11 -> PD 0x12 -> PT 0x13 -> data page 0x20.
MAP = pte(0x10, 0, 0x11) + pte(0x11, 0, 0x12) + pte(0x12, 0, 0x13) + pte(0x13, 1, 0x20)


def qi(qw):
    return u8(5) + b"".join(u64(q) for q in qw)


# PASID-based IOTLB invalidation, PASID 1, DID 2, all (granularity 2 << 4).
PIOTLB = [0x6 | (2 << 4) | (2 << 16) | (1 << 32), 0, 0, 0]
# Invalidation wait with status write of 1 to 0x7000.
WAIT = [0x5 | (1 << 5) | (1 << 32), 0x7000, 0, 0]

save("viommu_qi_walk", "map-translate", u8(0) + MAP + u8(2) + request())
save("viommu_qi_walk", "map-translate-unmap-flush",
     u8(0) + MAP + u8(2) + request() + pte(0x13, 1, 0, 0) + u8(2) + request()
     + qi(PIOTLB) + qi(WAIT) + u8(2) + request() + u8(8))
save("viommu_qi_walk", "speculative-kernel-hint",
     u8(0) + MAP + u8(3) + request(priv=1) + u8(9) + u32(0x13) + u8(8))
save("viommu_qi_walk", "page-request",
     u8(0) + u8(7) + request(addr_page=5) + u8(1) + u8(1) + u8(0) + u8(1) + u16(3) + u64(0) + u8(8))

# ------------------------------------------------------------- viommu_regs
# op 4: driver set-up; op 6: translate; op 0: known register write.
save("viommu_regs", "setup-translate",
     u8(1) + u8(4) + u8(6) + u8(0x20) + u8(1) + u32(1) + u32(1) + u16(0) + u8(0))
save("viommu_regs", "setup-gcmd-off",
     u8(1) + u8(4) + u8(0) + u16(3) + u16(0) + u64(0) + u8(3) + u16(0x1c) + u8(3))

# ----------------------------------------------------------- viommu_tables
save("viommu_tables", "zero", bytes(64))
# rid 0x20, pasid 1, root 0x1000, addr 0x1000, 4 levels, haw 48.
hdr = u16(0x20) + u32(1) + u32(0x1000) + u64(0x1000) + u8(0) + u8(0) + u32(9)
raw = u64(0x6 | (2 << 4)) + u64(0) + u64(0) + u64(0)
mem = bytearray(0x6000)
struct.pack_into("<Q", mem, 0x1000, 0x2000 | 1)
struct.pack_into("<Q", mem, 0x2000 + 0x20 * 32, 0x3000 | 0x1d)
struct.pack_into("<Q", mem, 0x3000, 0x4000 | 1)
struct.pack_into("<Q", mem, 0x4000 + 64, 1 | (1 << 6))
struct.pack_into("<Q", mem, 0x4000 + 64 + 8, 2)
struct.pack_into("<Q", mem, 0x4000 + 64 + 16, 0x1000 | 1)
save("viommu_tables", "tables", hdr + raw + bytes(mem))

# -------------------------------------------------------------- pci_config
# op 0: ECAM write (number pick, off, len pick, value); op 2: read; op 5: cf8.
def ecam_w(num_idx, off, v, len_idx=2):
    return u8(0) + u16(num_idx) + u16(off) + u16(len_idx) + u32(v)


def ecam_r(num_idx, off, len_idx=2):
    return u8(2) + u16(num_idx) + u16(off) + u16(len_idx)


seed = b""
for n in range(5):
    seed += ecam_r(n, 0) + ecam_w(n, 0x10, 0xffffffff) + ecam_r(n, 0x10) + ecam_w(n, 4, 6)
seed += u8(6) + u16(4) + u16(0) + u8(3)
save("pci_config", "bars-all-devices", seed)
save("pci_config", "cf8", u8(5) + u16(4) + u8(0) + u32(0) + u8(0) + u8(5) + u16(1) + u8(0x34) + u32(0) + u8(0))

# ----------------------------------------------------------- virtio_viommu
# header: translation on? qsize default?; then ops: device pick u16, queue u8, op u8.
def desc(dev, q, idx, addr, ln, flags, nxt):
    return u16(dev) + u8(q) + u8(0) + u16(idx) + u8(1) + u32(addr) + u32(ln) + u16(flags) + u16(nxt)


def kick(dev, q, head):
    return u16(dev) + u8(q) + u8(2) + u16(head) + u8(1)


# virtio-blk read of sector 0: header (out), data (in), status (in).
blk = (desc(1, 0, 0, 0x9000, 16, 1, 1) + desc(1, 0, 1, 0xa000, 512, 3, 2)
       + desc(1, 0, 2, 0xb000, 1, 2, 0) + kick(1, 0, 0))
rng = desc(2, 0, 0, 0xc000, 64, 2, 0) + kick(2, 0, 0)
con = desc(0, 1, 0, 0xd000, 32, 0, 0) + kick(0, 1, 0)
save("virtio_viommu", "blk-rng-console-direct", u8(0) + u8(1) + blk + rng + con)
save("virtio_viommu", "blk-rng-console-viommu", u8(1) + u8(1) + blk + rng + con)

# ----------------------------------------------------------------- sva_ring
def sva_desc(opcode, flags, pasid, a_mode, a, b_mode, b, ln):
    d = u8(0) + u8(opcode) + u8(flags)
    if flags & 1:
        d += u32(pasid)
    d += u8(a_mode) + (u32(a) if a_mode == 0 else u64(a))
    d += u8(b_mode) + (u32(b) if b_mode == 0 else u64(b))
    d += u8(0) + u16(ln) + u64(0x1122334455667788)
    return d


doorbell = u8(2) + u8(1)
ops = (sva_desc(1, 4, 0, 0, 0x10000, 0, 0x20000, 4096)
       + sva_desc(2, 0, 0, 0, 0, 0, 0x30000, 100)
       + sva_desc(3, 0, 0, 0, 0x10000, 0, 0x20000, 4096)
       + sva_desc(4, 1, 1, 0, 0x1000, 0, 0, 0)
       + doorbell)
save("sva_ring", "copy-fill-compare-probe-direct", u8(0) + u8(1) + ops)
save("sva_ring", "copy-fill-compare-probe-viommu", u8(1) + u8(1) + ops)

# ----------------------------------------------------------- queue_and_walk
# The target binds PASID 1 of rid 0x20 to a first-stage table at 0x10000 and
# a queue at 0x8000. Op 6 writes a present table entry (index from 0x10000),
# op 5 any qword, op 2 translates, op 4 walks speculatively, op 7 puts a
# descriptor at the queue tail and rings IQT, op 8 is a page request, op 9 a
# page-freed hint, op 10 a register read.
def qw_pte(table, idx, to):
    return u8(6) + u16(((table - 0x10000) >> 3) + idx) + u64(to | 0x7)


def qw_translate(addr, p=1):
    return u8(2) + u8(p) + u64(addr)


def qw_desc(qw):
    return u8(7) + b"".join(u64(q) for q in qw)


# PML4 0x10000 -> PDPT 0x11000 -> PD 0x12000 -> PT 0x13000 -> data 0x20000.
QW_MAP = (qw_pte(0x10000, 0, 0x11000) + qw_pte(0x11000, 0, 0x12000)
          + qw_pte(0x12000, 0, 0x13000) + qw_pte(0x13000, 1, 0x20000))
# Unlink the PT (PDE cleared) so a cached walk goes stale.
QW_UNLINK = u8(5) + u32(0x12000) + u64(0)
QW_FLUSH = qw_desc(PIOTLB) + qw_desc(WAIT) + u8(10) + u16(0x34)

for cfg, name in [(0x00, "adversarial"), (0x02, "lru4"), (0x10, "check-off")]:
    save("queue_and_walk", f"map-unlink-flush-{name}",
         u8(cfg) + QW_MAP + qw_translate(0x1000) + QW_UNLINK
         + qw_translate(0x1000) + QW_FLUSH + qw_translate(0x1000))
save("queue_and_walk", "speculative-then-hint",
     u8(0) + QW_MAP + u8(4) + u64(0x1000) + u8(9) + u64(0x13000)
     + qw_translate(0x1000, p=0x41))
save("queue_and_walk", "page-request-fault",
     u8(0) + qw_translate(0x5000) + u8(8) + u64(0x5000) + u16(0x23) + u8(10) + u16(0xdc))
