//! Builds the mini guest (guest/mini) with the system gcc and leaves two
//! images in OUT_DIR: `mini.elf` (with the PVH note) and `mini-nopvh.elf`
//! (the same kernel without it, booted through its 64-bit ELF entry), and
//! `catalog.rs`: the scenario and knob tables of
//! guest/mini/scenarios/catalog.def as Rust (`stalewalk scenarios`).

use std::path::{Path, PathBuf};
use std::process::Command;

const CFLAGS: &[&str] = &[
    "-ffreestanding",
    "-nostdlib",
    "-mgeneral-regs-only",
    "-mno-red-zone",
    "-fno-pic",
    "-fno-pie",
    "-fno-stack-protector",
    "-fcf-protection=none",
    "-fno-asynchronous-unwind-tables",
    "-fno-builtin",
    "-O2",
    "-march=x86-64",
    "-mtune=generic",
    "-std=gnu11",
    "-Wall",
    "-Wextra",
    "-Werror",
];

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (the mini guest needs gcc)"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sources(&p, out);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("c" | "S" | "h" | "ld" | "def")
        ) {
            out.push(p);
        }
    }
}

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let src = manifest.join("../guest/mini");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let gcc = std::env::var("STALEWALK_GUEST_CC").unwrap_or_else(|_| "gcc".to_string());
    println!("cargo:rerun-if-env-changed=STALEWALK_GUEST_CC");
    println!("cargo:rerun-if-changed={}", src.display());

    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut objects = Vec::new();
    let mut pvh_note = None;
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "c" && ext != "S" {
            continue;
        }
        let rel = f
            .strip_prefix(&src)
            .unwrap_or(f)
            .to_string_lossy()
            .replace('/', "_");
        let obj = out.join(format!("mini-{rel}.o"));
        run(Command::new(&gcc)
            .args(CFLAGS)
            .arg("-c")
            .arg(f)
            .arg("-o")
            .arg(&obj));
        if rel == "pvhnote.S" {
            pvh_note = Some(obj);
        } else {
            objects.push(obj);
        }
    }
    let pvh_note = pvh_note.expect("guest/mini/pvhnote.S is missing");
    let link = |output: &Path, extra: Option<&Path>| {
        let mut cmd = Command::new(&gcc);
        cmd.args([
            "-nostdlib",
            "-static",
            "-no-pie",
            "-Wl,--build-id=none",
            "-Wl,-n",
            "-Wl,--no-warn-rwx-segments",
            "-Wl,-z,noexecstack",
            "-T",
        ])
        .arg(src.join("linker.ld"))
        .arg("-o")
        .arg(output)
        .args(&objects);
        if let Some(e) = extra {
            cmd.arg(e);
        }
        run(&mut cmd);
    };
    link(&out.join("mini.elf"), Some(&pvh_note));
    link(&out.join("mini-nopvh.elf"), None);
    catalog(&src.join("scenarios/catalog.def"), &out.join("catalog.rs"));
}

/// The arguments of one `NAME(...)` entry of catalog.def: identifiers and
/// double-quoted strings (no escapes), separated by commas.
fn entry_args(text: &str, line: usize) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_str = false;
    for c in text.chars() {
        match (c, in_str) {
            ('"', _) => in_str = !in_str,
            (',', false) => args.push(std::mem::take(&mut cur).trim().to_string()),
            ('\\', true) => panic!("catalog.def:{line}: no escapes in strings"),
            (c, _) => cur.push(c),
        }
    }
    assert!(!in_str, "catalog.def:{line}: unterminated string");
    args.push(cur.trim().to_string());
    args
}

/// Turns catalog.def (C X-macros, see the file) into Rust constants.
fn catalog(def: &Path, out: &Path) {
    let text = std::fs::read_to_string(def)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", def.display()));
    let mut scenarios = String::new();
    let mut knobs = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with("/*") || l.starts_with('*') {
            continue;
        }
        let (name, rest) = l
            .split_once('(')
            .unwrap_or_else(|| panic!("catalog.def:{line}: not an entry: {l}"));
        let inner = rest
            .strip_suffix(')')
            .unwrap_or_else(|| panic!("catalog.def:{line}: no closing parenthesis"));
        let a = entry_args(inner, line);
        match (name, a.as_slice()) {
            ("SCENARIO", [_, name, needs, what]) => {
                let needs = match needs.as_str() {
                    "" => "Needs::Nothing",
                    "sva" => "Needs::Sva",
                    "disk" => "Needs::Disk",
                    other => panic!("catalog.def:{line}: unknown need {other:?}"),
                };
                scenarios.push_str(&format!(
                    "    Scenario {{ name: {name:?}, needs: {needs}, what: {what:?} }},\n"
                ));
            }
            ("KNOB", [scenario, key, default, what]) => knobs.push_str(&format!(
                "    Knob {{ scenario: {scenario:?}, key: {key:?}, default: {default:?}, what: {what:?} }},\n"
            )),
            _ => panic!("catalog.def:{line}: expected SCENARIO(fn, name, needs, what) or KNOB(scenario, key, default, what)"),
        }
    }
    let rust = format!(
        "/// Every scenario, in catalog order.\npub const SCENARIOS: &[Scenario] = &[\n{scenarios}];\n\
         /// Every knob, in catalog order.\npub const KNOBS: &[Knob] = &[\n{knobs}];\n"
    );
    std::fs::write(out, rust).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
