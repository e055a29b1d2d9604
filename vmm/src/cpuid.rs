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

/// Features a Linux guest would use although KVM's instruction emulator
/// (guest kernel mode on hosts without hardware virtualization) cannot run
/// their instructions or, for `movbe`, raises #UD on them, or runs them
/// far slower than the alternatives (`erms`, `fsrm`: the kernel's memcpy,
/// clear_page and copy_*_user then use `rep movsb`/`rep stosb`, emulated
/// one byte per iteration); by Linux's `clearcpuid=` names. XSAVE (and with it AVX, AVX-512 and the XSAVE
/// variants, which Linux makes depend on it) is switched off with
/// `noxsave` instead.
const LINUX_UNRUNNABLE: &[Feature] = &[
    ("fma", 1, 0, Reg::Ecx, 12),
    ("pcid", 1, 0, Reg::Ecx, 17),
    ("movbe", 1, 0, Reg::Ecx, 22),
    ("popcnt", 1, 0, Reg::Ecx, 23),
    ("avx", 1, 0, Reg::Ecx, 28),
    ("f16c", 1, 0, Reg::Ecx, 29),
    ("rdrand", 1, 0, Reg::Ecx, 30),
    ("fsgsbase", 7, 0, Reg::Ebx, 0),
    ("bmi1", 7, 0, Reg::Ebx, 3),
    ("avx2", 7, 0, Reg::Ebx, 5),
    ("bmi2", 7, 0, Reg::Ebx, 8),
    ("erms", 7, 0, Reg::Ebx, 9),
    ("invpcid", 7, 0, Reg::Ebx, 10),
    ("avx512f", 7, 0, Reg::Ebx, 16),
    ("rdseed", 7, 0, Reg::Ebx, 18),
    ("adx", 7, 0, Reg::Ebx, 19),
    ("smap", 7, 0, Reg::Ebx, 20),
    ("la57", 7, 0, Reg::Ecx, 16),
    ("rdpid", 7, 0, Reg::Ecx, 22),
    ("fsrm", 7, 0, Reg::Edx, 4),
    ("abm", 0x8000_0001, 0, Reg::Ecx, 5),
];

/// XSAVE: Linux's `noxsave`.
const XSAVE: Feature = ("xsave", 1, 0, Reg::Ecx, 26);

/// One CPUID leaf's registers (eax, ebx, ecx, edx).
pub type CpuidRegs = [u32; 4];

/// CPUID `leaf`/`sub` on the host CPU, as the VMM process sees it.
pub fn host_cpuid(leaf: u32, sub: u32) -> CpuidRegs {
    let max = std::arch::x86_64::__cpuid_count(leaf & 0x8000_0000, 0).eax;
    if leaf > max {
        return [0; 4];
    }
    let r = std::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}

fn bit_of(regs: CpuidRegs, reg: Reg, bit: u32) -> bool {
    let v = match reg {
        Reg::Ebx => regs[1],
        Reg::Ecx => regs[2],
        Reg::Edx => regs[3],
    };
    v & (1 << bit) != 0
}

fn entries_have(entries: &[kvm_cpuid_entry2], f: &Feature) -> bool {
    let &(_, leaf, sub, reg, bit) = f;
    entries
        .iter()
        .find(|e| e.function == leaf && e.index == sub)
        .is_some_and(|e| bit_of([e.eax, e.ebx, e.ecx, e.edx], reg, bit))
}

/// The words to add to a Linux guest's command line under the
/// `emulation-safe` profile (docs/EMULATION.md): on KVM hosts whose
/// instruction emulator runs guest kernel mode, the guest sees the host
/// CPU's features whatever `KVM_SET_CPUID2` says, except those in KVM's
/// supported CPUID (which the profile can hide). So each feature of
/// [`LINUX_UNRUNNABLE`] the host CPU has (`host`) and KVM's supported
/// CPUID lacks (`supported`) goes into `clearcpuid=`, and XSAVE into
/// `noxsave`. What the user already gave wins: no `noxsave` when `cmdline`
/// has it, no `clearcpuid=` when it has one.
pub fn linux_switches(
    supported: &[kvm_cpuid_entry2],
    host: &dyn Fn(u32, u32) -> CpuidRegs,
    cmdline: &str,
) -> Vec<String> {
    let leaks = |f: &Feature| {
        let &(_, leaf, sub, reg, bit) = f;
        bit_of(host(leaf, sub), reg, bit) && !entries_have(supported, f)
    };
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let mut out = Vec::new();
    if leaks(&XSAVE) && !words.contains(&"noxsave") {
        out.push("noxsave".to_string());
    }
    let clear: Vec<&str> = LINUX_UNRUNNABLE
        .iter()
        .filter(|f| leaks(f))
        .map(|f| f.0)
        .collect();
    if !clear.is_empty() && !words.iter().any(|w| w.starts_with("clearcpuid=")) {
        out.push(format!("clearcpuid={}", clear.join(",")));
    }
    out
}

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

    /// A host like the development machines': XSAVE, AVX, POPCNT, MOVBE,
    /// BMI1/2, SMAP, CX16 and LZCNT, of which KVM supports only CX16.
    fn dev_host(leaf: u32, sub: u32) -> CpuidRegs {
        match (leaf, sub) {
            (1, 0) => [0, 0, 0xfffa_3203, 0x178b_fbff],
            (7, 0) => [0, 0xf1bf_07ab, 0x0040_5fc6, 0x10],
            (0x8000_0001, 0) => [0, 0, 0x0040_03f3, 0],
            _ => [0; 4],
        }
    }

    fn dev_supported() -> Vec<kvm_cpuid_entry2> {
        vec![
            entry(1, 0, 0x0002_0800, 0x8120_2000, 0x078b_fbff),
            entry(7, 0, 0x0180_0002, 0x104, 0x2000_0000),
            entry(0x8000_0001, 0, 0x4000_0000, 0x0040_0393, 0x23d3_fbff),
        ]
    }

    #[test]
    fn linux_gets_noxsave_and_clearcpuid_for_what_cpuid_cannot_hide() {
        let w = linux_switches(&dev_supported(), &dev_host, "console=ttyS0");
        assert_eq!(
            w,
            vec![
                "noxsave".to_string(),
                "clearcpuid=fma,pcid,movbe,popcnt,avx,f16c,rdrand,fsgsbase,bmi1,avx2,bmi2,erms,\
                 invpcid,avx512f,rdseed,adx,smap,rdpid,fsrm,abm"
                    .to_string()
            ]
        );
        // cx16 is in KVM's supported CPUID (the profile hides it), la57 is
        // not on this host: neither is listed.
        assert!(!w[1].contains("cx16") && !w[1].contains("la57"));
    }

    #[test]
    fn what_the_user_gave_wins() {
        let w = linux_switches(&dev_supported(), &dev_host, "noxsave clearcpuid=popcnt");
        assert!(w.is_empty(), "{w:?}");
        let w = linux_switches(&dev_supported(), &dev_host, "clearcpuid=popcnt");
        assert_eq!(w, vec!["noxsave".to_string()]);
    }

    #[test]
    fn nothing_is_added_where_kvm_supports_the_features() {
        // A hardware-virtualization host: KVM supports what the CPU has,
        // so the profile hides it through CPUID.
        let supported = vec![
            entry(1, 0, 0, 0xfffa_3203, 0x178b_fbff),
            entry(7, 0, 0xf1bf_07ab, 0x0040_5fc6, 0x10),
            entry(0x8000_0001, 0, 0, 0x0040_03f3, 0),
        ];
        assert!(linux_switches(&supported, &dev_host, "").is_empty());
    }

    #[test]
    fn host_cpuid_reads_the_vendor_leaf() {
        let r = host_cpuid(0, 0);
        assert!(r[0] >= 1, "max basic leaf {r:?}");
        assert_eq!(host_cpuid(0x7fff_ffff, 0), [0; 4], "beyond the max leaf");
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
