//! CPUID profiles: what the guest is told about the CPU.
//!
//! On the development machines, guest kernel mode runs in KVM's instruction
//! emulator, which lacks many instructions (docs: KVM-NOTES.md). The
//! `emulation-safe` profile hides the features whose instructions it
//! cannot run, so a guest that honours CPUID never uses them; `host` passes
//! KVM's supported CPUID through, for hosts with hardware virtualization.
//! Both profiles then describe the VM's topology (APIC IDs, CPU count in
//! leaves 1 and 0xB).

use kvm_bindings::{KVM_CPUID_FLAG_SIGNIFCANT_INDEX, kvm_cpuid_entry2};

/// Which CPUID the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CpuProfile {
    /// Hide what KVM's instruction emulator cannot run (the default here).
    EmulationSafe,
    /// KVM's supported CPUID, unfiltered.
    Host,
}

impl std::fmt::Display for CpuProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CpuProfile::EmulationSafe => "emulation-safe",
            CpuProfile::Host => "host",
        })
    }
}

/// Which register of a leaf a feature bit is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    Ebx,
    Ecx,
    Edx,
}

/// A feature bit: name, leaf, subleaf, register, bit.
type Feature = (&'static str, u32, u32, Reg, u32);

/// What `emulation-safe` hides, and why: each either has instructions the
/// emulator fails on (cmpxchg16b, xsave/xrstor, VEX/EVEX-encoded vector
/// code, shlx and friends, rdrand/rdseed, lzcnt, movbe, invpcid) or changes
/// how the guest uses paging in ways only hardware needs (PCID, LA57).
const HIDDEN_EMULATION_SAFE: &[Feature] = &[
    ("fma", 1, 0, Reg::Ecx, 12),
    ("cx16", 1, 0, Reg::Ecx, 13),
    ("pcid", 1, 0, Reg::Ecx, 17),
    ("movbe", 1, 0, Reg::Ecx, 22),
    ("xsave", 1, 0, Reg::Ecx, 26),
    ("osxsave", 1, 0, Reg::Ecx, 27),
    ("avx", 1, 0, Reg::Ecx, 28),
    ("f16c", 1, 0, Reg::Ecx, 29),
    ("rdrand", 1, 0, Reg::Ecx, 30),
    ("bmi1", 7, 0, Reg::Ebx, 3),
    ("avx2", 7, 0, Reg::Ebx, 5),
    ("bmi2", 7, 0, Reg::Ebx, 8),
    ("invpcid", 7, 0, Reg::Ebx, 10),
    ("avx512f", 7, 0, Reg::Ebx, 16),
    ("avx512dq", 7, 0, Reg::Ebx, 17),
    ("rdseed", 7, 0, Reg::Ebx, 18),
    ("adx", 7, 0, Reg::Ebx, 19),
    ("avx512ifma", 7, 0, Reg::Ebx, 21),
    ("avx512pf", 7, 0, Reg::Ebx, 26),
    ("avx512er", 7, 0, Reg::Ebx, 27),
    ("avx512cd", 7, 0, Reg::Ebx, 28),
    ("avx512bw", 7, 0, Reg::Ebx, 30),
    ("avx512vl", 7, 0, Reg::Ebx, 31),
    ("avx512vbmi", 7, 0, Reg::Ecx, 1),
    ("avx512vbmi2", 7, 0, Reg::Ecx, 6),
    ("vaes", 7, 0, Reg::Ecx, 9),
    ("vpclmulqdq", 7, 0, Reg::Ecx, 10),
    ("avx512vnni", 7, 0, Reg::Ecx, 11),
    ("avx512bitalg", 7, 0, Reg::Ecx, 12),
    ("avx512vpopcntdq", 7, 0, Reg::Ecx, 14),
    ("la57", 7, 0, Reg::Ecx, 16),
    ("avx512_4vnniw", 7, 0, Reg::Edx, 2),
    ("avx512_4fmaps", 7, 0, Reg::Edx, 3),
    ("avx512fp16", 7, 0, Reg::Edx, 23),
    ("amx", 7, 0, Reg::Edx, 24),
    ("lzcnt", 0x8000_0001, 0, Reg::Ecx, 5),
    ("fma4", 0x8000_0001, 0, Reg::Ecx, 16),
    ("tbm", 0x8000_0001, 0, Reg::Ecx, 21),
];

/// Leaf 0xD (XSAVE state components) is dropped whole with `xsave`.
const LEAF_XSAVE: u32 = 0xd;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;

fn reg_mut(e: &mut kvm_cpuid_entry2, r: Reg) -> &mut u32 {
    match r {
        Reg::Ebx => &mut e.ebx,
        Reg::Ecx => &mut e.ecx,
        Reg::Edx => &mut e.edx,
    }
}

/// Applies `profile` to KVM's supported CPUID; returns the names of the
/// features it hid (those that were present).
pub fn apply_profile(
    entries: &mut Vec<kvm_cpuid_entry2>,
    profile: CpuProfile,
    la57: bool,
) -> Vec<&'static str> {
    let mut hidden = Vec::new();
    if profile == CpuProfile::Host {
        return hidden;
    }
    for e in entries.iter_mut() {
        for &(name, leaf, sub, reg, bit) in HIDDEN_EMULATION_SAFE {
            if la57 && name == "la57" {
                continue;
            }
            if e.function == leaf && e.index == sub {
                let r = reg_mut(e, reg);
                if *r & (1 << bit) != 0 {
                    *r &= !(1 << bit);
                    hidden.push(name);
                }
            }
        }
    }
    entries.retain(|e| e.function != LEAF_XSAVE);
    hidden
}

/// Describes `cpus` CPUs in one package, one thread per core, and makes
/// the entries those of vCPU `id` (its APIC ID).
pub fn set_topology(entries: &mut Vec<kvm_cpuid_entry2>, id: u32, cpus: u32) {
    let cpus = cpus.max(1);
    let shift = u32::BITS - (cpus - 1).leading_zeros();
    entries.retain(|e| e.function != LEAF_TOPOLOGY && e.function != LEAF_TOPOLOGY_V2);
    for e in entries.iter_mut() {
        match e.function {
            0 => e.eax = e.eax.max(LEAF_TOPOLOGY),
            1 => {
                e.ebx =
                    (e.ebx & 0x0000_ffff) | ((id & 0xff) << 24) | ((cpus.min(255) & 0xff) << 16);
                if cpus > 1 {
                    e.edx |= 1 << 28; // HTT: leaf 1 EBX[23:16] is valid
                }
            }
            _ => {}
        }
    }
    let level = |index: u32, ebx: u32, kind: u32, eax: u32| kvm_cpuid_entry2 {
        function: LEAF_TOPOLOGY,
        index,
        flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
        eax,
        ebx,
        ecx: (kind << 8) | index,
        edx: id,
        ..Default::default()
    };
    // Level 0: SMT (one thread per core); level 1: core (all CPUs);
    // level 2: invalid, ends the enumeration.
    entries.push(level(0, 1, 1, 0));
    entries.push(level(1, cpus, 2, shift));
    entries.push(level(2, 0, 0, 0));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    fn host_like() -> Vec<kvm_cpuid_entry2> {
        vec![
            kvm_cpuid_entry2 {
                function: 0,
                eax: 0xd,
                ..Default::default()
            },
            entry(1, 0, 0x0010_0800, 0xffff_ffff, 0xffff_ffff),
            entry(7, 0, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff),
            entry(0xd, 0, 7, 0, 0),
            entry(0xd, 1, 1, 0, 0),
            entry(0x8000_0001, 0, 0, 0xffff_ffff, 0xffff_ffff),
        ]
    }

    #[test]
    fn emulation_safe_hides_what_the_emulator_cannot_run() {
        let mut e = host_like();
        let hidden = apply_profile(&mut e, CpuProfile::EmulationSafe, false);
        for name in [
            "cx16", "xsave", "osxsave", "avx", "avx2", "bmi1", "bmi2", "fma", "rdrand", "rdseed",
            "pcid", "invpcid", "la57",
        ] {
            assert!(hidden.contains(&name), "{name} not hidden");
        }
        let l1 = e.iter().find(|x| x.function == 1).unwrap();
        assert_eq!(l1.ecx & (1 << 13), 0);
        assert_eq!(l1.ecx & (1 << 26), 0);
        assert_ne!(l1.ecx & (1 << 0), 0, "sse3 stays");
        assert_eq!(l1.edx, 0xffff_ffff, "leaf 1 edx untouched");
        let l7 = e.iter().find(|x| x.function == 7).unwrap();
        assert_eq!(l7.ebx & (1 << 8), 0);
        assert_eq!(l7.ecx & (1 << 16), 0);
        assert!(!e.iter().any(|x| x.function == 0xd), "xsave leaf dropped");
    }

    #[test]
    fn la57_can_be_asked_for() {
        let mut e = host_like();
        let hidden = apply_profile(&mut e, CpuProfile::EmulationSafe, true);
        assert!(!hidden.contains(&"la57"));
        assert_ne!(
            e.iter().find(|x| x.function == 7).unwrap().ecx & (1 << 16),
            0
        );
    }

    #[test]
    fn host_passes_everything_through() {
        let mut e = host_like();
        let before = e.clone();
        assert!(apply_profile(&mut e, CpuProfile::Host, false).is_empty());
        assert_eq!(e, before);
    }

    #[test]
    fn topology_names_the_cpu_and_the_count() {
        let mut e = host_like();
        set_topology(&mut e, 3, 4);
        let l1 = e.iter().find(|x| x.function == 1).unwrap();
        assert_eq!(l1.ebx >> 24, 3);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_eq!(l1.ebx & 0xffff, 0x0800, "low bits kept");
        assert_eq!(e[0].eax, 0xd);
        let core = e
            .iter()
            .find(|x| x.function == 0xb && x.index == 1)
            .unwrap();
        assert_eq!(core.ebx, 4);
        assert_eq!(core.eax, 2);
        assert_eq!(core.edx, 3);
        assert_eq!((core.ecx >> 8) & 0xff, 2);
        let end = e
            .iter()
            .find(|x| x.function == 0xb && x.index == 2)
            .unwrap();
        assert_eq!((end.ecx >> 8) & 0xff, 0);
    }
}
