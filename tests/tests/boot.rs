//! Boots the built-in mini guest under KVM and checks its serial output and
//! exit status, through the `stalewalk` library (what `stalewalk run`
//! does). Each test skips, with one `SKIPPED:` line on standard error,
//! where `/dev/kvm` is not usable.

use std::sync::{Arc, Mutex};

use stalewalk_integration::{require_kvm, skip};
use stalewalk_vmm::config::{KernelSource, SerialMode, VmConfig};
use stalewalk_vmm::{RunOutcome, VmError};

/// Runs the mini guest with `cmdline` and `cpus`; returns the outcome and
/// the serial output.
fn boot(cfg: VmConfig) -> (Result<RunOutcome, VmError>, String) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let cfg = VmConfig {
        serial: SerialMode::Capture(buf.clone()),
        ..cfg
    };
    let r = stalewalk_vmm::run(&cfg);
    let out = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
    (r, out)
}

fn mini(cmdline: &str, cpus: u32) -> VmConfig {
    VmConfig {
        cmdline: cmdline.to_string(),
        cpus,
        ..Default::default()
    }
}

#[test]
fn mini_guest_prints_banner_and_exits_0() {
    if !require_kvm("mini_guest_prints_banner_and_exits_0") {
        return;
    }
    let (r, out) = boot(mini("", 1));
    let r = r.unwrap_or_else(|e| panic!("run failed: {e}\n{out}"));
    assert_eq!(r.exit_status, 0, "{out}");
    assert!(out.starts_with("stalewalk mini guest"), "{out}");
    assert!(out.contains("stalewalk-guest: boot=pvh cpus=1 "), "{out}");
    assert!(out.contains("stalewalk-guest: exit=0"), "{out}");
}

#[test]
fn two_vcpus_come_online() {
    if !require_kvm("two_vcpus_come_online") {
        return;
    }
    let (r, out) = boot(mini("", 2));
    assert_eq!(
        r.map(|r| r.exit_status).map_err(|e| e.to_string()),
        Ok(0),
        "{out}"
    );
    assert!(out.contains("stalewalk-guest: boot=pvh cpus=2 "), "{out}");
}

#[test]
fn four_vcpus_come_online() {
    if !require_kvm("four_vcpus_come_online") {
        return;
    }
    let (r, out) = boot(mini("", 4));
    assert_eq!(
        r.map(|r| r.exit_status).map_err(|e| e.to_string()),
        Ok(0),
        "{out}"
    );
    assert!(out.contains("cpus=4 "), "{out}");
}

#[test]
fn smoke_scenario_round_trips_through_user_mode() {
    if !require_kvm("smoke_scenario_round_trips_through_user_mode") {
        return;
    }
    let (r, out) = boot(mini("scenario=smoke", 1));
    assert_eq!(
        r.map(|r| r.exit_status).map_err(|e| e.to_string()),
        Ok(0),
        "{out}"
    );
    assert!(
        out.contains("scenario=smoke user_result=499999500000 expected=499999500000 pass"),
        "{out}"
    );
}

/// `rep outsb` and `rep insb`: every element is its own port access, so the
/// whole line reaches the UART and every read returns the register.
#[test]
fn string_port_io_reaches_the_device_element_by_element() {
    if !require_kvm("string_port_io_reaches_the_device_element_by_element") {
        return;
    }
    let (r, out) = boot(mini("scenario=string-io", 1));
    assert_eq!(
        r.map(|r| r.exit_status).map_err(|e| e.to_string()),
        Ok(0),
        "{out}"
    );
    assert!(
        out.contains("\nstalewalk-guest: string_io=rep_outsb\n"),
        "{out}"
    );
    assert!(
        out.contains("scenario=string-io lsr=0x60 insb_same=8/8 pass"),
        "{out}"
    );
}

#[test]
fn guest_exception_is_reported_and_exits_3() {
    if !require_kvm("guest_exception_is_reported_and_exits_3") {
        return;
    }
    let (r, out) = boot(mini("scenario=fault-ud", 1));
    assert_eq!(
        r.map(|r| r.exit_status).map_err(|e| e.to_string()),
        Ok(3),
        "{out}"
    );
    assert!(
        out.contains("stalewalk-guest: exception=#UD vector=6"),
        "{out}"
    );
}

#[test]
fn unknown_scenario_exits_2() {
    if !require_kvm("unknown_scenario_exits_2") {
        return;
    }
    let (r, out) = boot(mini("scenario=nope", 1));
    assert_eq!(
        r.map(|r| r.exit_status).map_err(|e| e.to_string()),
        Ok(2),
        "{out}"
    );
    assert!(
        out.contains("error=unknown_scenario scenario=nope"),
        "{out}"
    );
    assert!(out.contains("scenario_available=smoke"), "{out}");
}

#[test]
fn i8042_reset_ends_the_run() {
    if !require_kvm("i8042_reset_ends_the_run") {
        return;
    }
    let (r, out) = boot(mini("scenario=reset", 2));
    let r = r.unwrap_or_else(|e| panic!("run failed: {e}\n{out}"));
    assert_eq!(r.reason, devices::legacy::ShutdownReason::Reset);
    assert_eq!(r.exit_status, 0);
}

#[test]
fn triple_fault_is_an_error() {
    if !require_kvm("triple_fault_is_an_error") {
        return;
    }
    let (r, out) = boot(mini("scenario=triple-fault", 2));
    match r {
        Err(e @ VmError::TripleFault { vcpu: 0, .. }) => {
            assert!(
                e.to_string()
                    .starts_with("the guest triple-faulted on vCPU 0 at RIP 0x"),
                "{e}"
            );
        }
        other => panic!("expected a triple fault, got {other:?}\n{out}"),
    }
}

#[test]
fn emulation_failure_names_rip_and_bytes() {
    if !require_kvm("emulation_failure_names_rip_and_bytes") {
        return;
    }
    // Today's behaviour: with the VMM's emulation off, the instruction KVM
    // cannot run stops the guest.
    let (r, out) = boot(VmConfig {
        emulate_in_vmm: false,
        ..mini("scenario=emulation-failure", 1)
    });
    match r {
        Err(e @ VmError::EmulationFailure { .. }) => {
            let s = e.to_string();
            assert!(
                s.starts_with("KVM could not emulate an instruction on vCPU 0 at RIP 0x"),
                "{s}"
            );
            // lock cmpxchg16b (f0 48 0f c7 /1), read through the guest's page tables.
            assert!(s.contains("instruction bytes: f0 48 0f c7 0d"), "{s}");
            assert!(s.contains("--cpu-profile"), "{s}");
        }
        Ok(_) if out.contains("emulation_failure=not_triggered") => skip(
            "emulation_failure_names_rip_and_bytes",
            "needs KVM's instruction emulator",
            "this host runs guest kernel mode natively",
        ),
        other => panic!("expected an emulation failure, got {other:?}\n{out}"),
    }
}

#[test]
fn elf_without_pvh_note_boots_through_the_64bit_entry() {
    if !require_kvm("elf_without_pvh_note_boots_through_the_64bit_entry") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("stalewalk-nopvh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mini-nopvh.elf");
    std::fs::write(&path, stalewalk_vmm::guest::MINI_GUEST_ELF_NO_PVH).unwrap();
    let (r, out) = boot(VmConfig {
        kernel: KernelSource::Path(path),
        cmdline: "scenario=smoke".into(),
        cpus: 2,
        ..Default::default()
    });
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        r.map(|r| r.exit_status).map_err(|e| e.to_string()),
        Ok(0),
        "{out}"
    );
    assert!(
        out.contains("stalewalk-guest: boot=linux64 cpus=2 "),
        "{out}"
    );
    assert!(out.contains("scenario=smoke user_result="), "{out}");
}

#[test]
fn memory_above_the_hole_boots() {
    if !require_kvm("memory_above_the_hole_boots") {
        return;
    }
    let (r, out) = boot(VmConfig {
        memory: 3584 << 20,
        ..mini("", 1)
    });
    assert_eq!(
        r.map(|r| r.exit_status).map_err(|e| e.to_string()),
        Ok(0),
        "{out}"
    );
    // The guest counts RAM below 4 GiB: 3 GiB minus the first MiB and itself.
    assert!(out.contains("mem_mib=30"), "{out}");
}

#[test]
fn missing_kernel_file_is_reported() {
    // Fails before KVM is touched only when /dev/kvm opens; either way the
    // error names the problem.
    let cfg = VmConfig {
        kernel: KernelSource::Path("/nonexistent/bzImage".into()),
        ..Default::default()
    };
    let e = stalewalk_vmm::run(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("kernel file /nonexistent/bzImage not found") || e.contains("/dev/kvm"),
        "{e}"
    );
}
