//! The ACPI tables as the guest sees them pass ACPICA's disassembler:
//! boots the mini guest with `--dump-acpi DIR` (library:
//! `platform.dump_acpi`), runs Debian's `iasl -d` on every dumped table
//! except `RSDP.dat` (iasl cannot load an RSDP from a file; its checksums
//! are checked here instead), and fails on any error, warning or checksum
//! complaint in iasl's output (iasl exits 0 even on a bad checksum).
//! Without iasl the test prints one `SKIPPED:` line and returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use stalewalk_integration::{require_kvm, skip};
use stalewalk_vmm::config::{SerialMode, VmConfig};

const TEST: &str = "platform_acpi_iasl";

/// A fresh scratch directory for `name`.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stalewalk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create the scratch directory");
    d
}

/// Whether `iasl` runs.
fn iasl_installed() -> bool {
    Command::new("iasl")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Disassembles `table` (in its own directory, where iasl writes the
/// `.dsl`); returns the complaints found: a non-zero exit, any line of its
/// output naming an error, a warning or a checksum, and an "Incorrect
/// checksum" comment in the disassembly.
fn iasl_complaints(table: &Path) -> Vec<String> {
    let dir = table.parent().expect("the table has a directory");
    let name = table.file_name().expect("the table has a name");
    let out = Command::new("iasl")
        .arg("-d")
        .arg(name)
        .current_dir(dir)
        .output()
        .expect("run iasl");
    let mut complaints = Vec::new();
    if !out.status.success() {
        complaints.push(format!("iasl exited with {}", out.status));
    }
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines() {
        let l = line.to_ascii_lowercase();
        if l.contains("error") || l.contains("warning") || l.contains("checksum") {
            complaints.push(line.to_string());
        }
    }
    let dsl = table.with_extension("dsl");
    match std::fs::read_to_string(&dsl) {
        Ok(s) => complaints.extend(
            s.lines()
                .filter(|l| l.to_ascii_lowercase().contains("incorrect checksum"))
                .map(|l| format!("{}: {l}", dsl.display())),
        ),
        Err(e) => complaints.push(format!("no disassembly {}: {e}", dsl.display())),
    }
    complaints
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// The RSDP's own checks (ACPI 6.x 5.2.5.3): signature, revision 2, the
/// 20-byte checksum, length 36, the extended checksum, and an XSDT
/// address.
fn rsdp_problems(rsdp: &[u8]) -> Vec<String> {
    let mut p = Vec::new();
    if rsdp.len() != 36 {
        p.push(format!("RSDP is {} bytes, expected 36", rsdp.len()));
        return p;
    }
    if &rsdp[..8] != b"RSD PTR " {
        p.push(format!("RSDP signature {:?}", &rsdp[..8]));
    }
    if rsdp[15] != 2 {
        p.push(format!("RSDP revision {}, expected 2", rsdp[15]));
    }
    if sum(&rsdp[..20]) != 0 {
        p.push(format!(
            "RSDP checksum: bytes 0..20 sum to {:#04x}",
            sum(&rsdp[..20])
        ));
    }
    let len = u32::from_le_bytes([rsdp[20], rsdp[21], rsdp[22], rsdp[23]]);
    if len != 36 {
        p.push(format!("RSDP length field {len}, expected 36"));
    }
    if sum(rsdp) != 0 {
        p.push(format!("RSDP extended checksum: sum {:#04x}", sum(rsdp)));
    }
    let mut x = [0u8; 8];
    x.copy_from_slice(&rsdp[24..32]);
    if u64::from_le_bytes(x) == 0 {
        p.push("RSDP has no XSDT address".to_string());
    }
    p
}

/// Boots the mini guest with `platform.dump_acpi = dir` (on a thread of
/// its own); exits 0.
fn dump_tables(dir: &Path) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = VmConfig {
        serial: SerialMode::Capture(buf.clone()),
        ..Default::default()
    };
    cfg.platform.dump_acpi = Some(dir.to_path_buf());
    // On its own thread: the run installs the VMM's seccomp filter on the
    // calling thread, and this thread runs iasl afterwards.
    let r = std::thread::spawn(move || stalewalk_vmm::run(&cfg))
        .join()
        .expect("the run thread");
    let serial = String::from_utf8_lossy(&buf.lock().expect("serial buffer")).into_owned();
    let r = r.unwrap_or_else(|e| panic!("run failed: {e}\n{serial}"));
    assert_eq!(r.exit_status, 0, "{serial}");
}

/// The dumped `*.dat` files, sorted.
fn tables(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the dump directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "dat"))
        .collect();
    v.sort();
    v
}

#[test]
fn platform_acpi_iasl() {
    if !iasl_installed() {
        // "SKIPPED: platform_acpi_iasl: iasl not installed (apt-get
        // install acpica-tools)", past the test harness's capture
        skip(TEST, "iasl not installed", "apt-get install acpica-tools");
        return;
    }
    if !require_kvm(TEST) {
        return;
    }
    let dir = scratch("acpi-iasl");
    dump_tables(&dir);
    let all = tables(&dir);
    let names: Vec<String> = all
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    for sig in ["APIC", "DMAR", "DSDT", "FACP", "MCFG", "RSDP", "XSDT"] {
        assert!(names.iter().any(|n| n == sig), "no {sig}.dat in {names:?}");
    }
    let mut problems = Vec::new();
    for t in &all {
        let bytes = std::fs::read(t).expect("read a table");
        if t.file_stem().is_some_and(|s| s == "RSDP") {
            problems.extend(rsdp_problems(&bytes));
            continue;
        }
        problems.extend(
            iasl_complaints(t)
                .into_iter()
                .map(|c| format!("{}: {c}", t.display())),
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The same check sees a bad table: a DMAR with a broken checksum makes
    // iasl complain (it still exits 0).
    let dmar = dir.join("DMAR.dat");
    let mut bytes = std::fs::read(&dmar).expect("read DMAR");
    bytes[9] = bytes[9].wrapping_add(1); // the header's checksum byte
    std::fs::write(&dmar, &bytes).expect("write DMAR");
    let complaints = iasl_complaints(&dmar);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        complaints
            .iter()
            .any(|c| c.to_ascii_lowercase().contains("checksum")),
        "iasl did not complain about a corrupted DMAR checksum: {complaints:?}"
    );
}

/// The RSDP checks catch a broken 20-byte checksum (and with it the
/// extended one) and a missing XSDT address.
#[test]
fn reject_corrupted_rsdp() {
    let mut rsdp = [0u8; 36];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    rsdp[15] = 2;
    rsdp[20] = 36;
    rsdp[24] = 0x40; // XSDT at 0x40
    rsdp[8] = 0u8.wrapping_sub(sum(&rsdp[..20]));
    rsdp[32] = 0u8.wrapping_sub(sum(&rsdp));
    assert!(
        rsdp_problems(&rsdp).is_empty(),
        "{:?}",
        rsdp_problems(&rsdp)
    );
    let mut bad = rsdp;
    bad[8] = bad[8].wrapping_add(1);
    let p = rsdp_problems(&bad);
    assert!(
        p.iter().any(|m| m.contains("RSDP checksum")) && p.iter().any(|m| m.contains("extended")),
        "{p:?}"
    );
    let mut no_xsdt = rsdp;
    no_xsdt[24] = 0;
    no_xsdt[32] = 0;
    no_xsdt[32] = 0u8.wrapping_sub(sum(&no_xsdt));
    let p = rsdp_problems(&no_xsdt);
    assert_eq!(p, ["RSDP has no XSDT address"], "{p:?}");
}
