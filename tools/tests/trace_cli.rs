//! The `stalewalk trace` subcommands on a small trace written by the real
//! writer (summary, diff, plot, export --chrome, grep), their clap parsing,
//! and the errors for truncated, corrupted and newer-version traces.

use std::path::{Path, PathBuf};

use clap::Parser;
use stalewalk_tools::trace::cli::run;
use stalewalk_tools::trace::{TraceCommand, TraceOptions, TraceWriter};
use viommu::checker::{StaleClass, StaleWalk};
use viommu::event::TranslationOutcome;
use viommu::qi::{IotlbGranularity, PiotlbGranularity};
use viommu::{Descriptor, Event, EventSink, HitLevels};

/// How the `stalewalk` CLI embeds the subcommands.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    trace: TraceCommand,
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("stalewalk-trace-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn piotlb(addr: u64, am: u8, ih: bool) -> Event {
    Event::Invalidation {
        slot: Some(0),
        descriptor: Descriptor::Piotlb {
            did: 1,
            pasid: 5,
            granularity: PiotlbGranularity::Page { addr, am, ih },
        },
        removed: 2,
    }
}

fn walk(pasid: u32, addr: u64) -> Event {
    Event::Translation {
        rid: 0x20,
        pasid: Some(pasid),
        addr,
        access: viommu::Access::Write,
        privileged: false,
        speculative: false,
        result: TranslationOutcome::Ok {
            output: 0x10_0000,
            size: 4096,
            pass_through: false,
        },
        hits: HitLevels {
            psc_level: Some(2),
            ..HitLevels::default()
        },
    }
}

/// A small trace: `kva_flushes` KVA invalidations, a stale walk when
/// `vulnerable`, translations, a fault, guest markers.
fn small_trace(name: &str, vulnerable: bool, kva_flushes: u32) -> PathBuf {
    let path = dir().join(name);
    let w = TraceWriter::create(
        &path,
        TraceOptions {
            command: format!("test {name}"),
            ..TraceOptions::default()
        },
    )
    .unwrap();
    let mut s = w.sink();
    w.marker("stalewalk-guest: scenario=kpgtable start");
    s.event(&walk(5, 0x40_0000));
    s.event(&walk(7, 0xffff_8880_0010_0000));
    for i in 0..kva_flushes {
        s.event(&piotlb(
            0xffff_8880_0000_0000 + u64::from(i) * 0x20_0000,
            9,
            false,
        ));
    }
    s.event(&piotlb(0x40_0000, 0, true));
    s.event(&Event::Invalidation {
        slot: Some(1),
        descriptor: Descriptor::Iotlb {
            granularity: IotlbGranularity::Global,
            dr: false,
            dw: false,
        },
        removed: 9,
    });
    if vulnerable {
        s.event(&Event::Hint {
            gpa: 0x7000,
            cached: true,
        });
        s.event(&Event::StaleWalk(StaleWalk {
            seq: 3,
            class: StaleClass::Reused,
            rid: 0x20,
            pasid: 7,
            addr: 0xffff_8880_0010_0000,
            level: 2,
            cached: 0x7067,
            memory: 0,
            table_page: 0x7000,
        }));
    }
    s.event(&Event::Fault {
        rid: 0x20,
        pasid: Some(5),
        addr: 0x50_0000,
        reason: 0x81,
        recorded: true,
    });
    w.marker("stalewalk-guest: done stale=1");
    w.finish().unwrap();
    path
}

fn cli(args: &[&str]) -> (u8, String, String) {
    let mut argv = vec!["trace"];
    argv.extend_from_slice(args);
    let cmd = Cli::try_parse_from(argv).unwrap().trace;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let rc = run(cmd, &mut out, &mut err);
    (
        rc,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn summary_counts_by_type_granularity_pasid_and_device() {
    let t = small_trace("summary.trace", true, 3);
    let (rc, out, err) = cli(&["summary", p(&t)]);
    assert_eq!(rc, 0, "{err}");
    for needle in [
        "invalidations: 5",
        "piotlb_page",
        "iotlb_global",
        "ih0 3, ih1 1, kva 3",
        "00:04.0",
        "reused 1",
        "busiest 2 MiB ranges",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    assert!(
        out.contains("\"table_page\":\"0x7000\""),
        "stale walk shown in full with hex: {out}"
    );
    let (rc, json, _) = cli(&["summary", "--json", p(&t)]);
    assert_eq!(rc, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["counters"]["kva_invalidations"], 3);
    assert_eq!(v["counters"]["stale_walks"]["reused"], 1);
    assert_eq!(v["invalidations"]["by_pasid"]["5"], 4);
    assert_eq!(v["walks"]["by_pasid"]["7"], 1);
    assert_eq!(v["faults"]["by_reason"]["0x81"], 1);
    assert_eq!(v["markers"], 2);
    // The translation, the first KVA flush and the stale walk share a range.
    let top = &v["busiest_ranges"][0];
    assert_eq!(top["start"], "0xffff888000000000");
    assert_eq!(
        (
            top["events"].as_u64(),
            top["invalidations"].as_u64(),
            top["stale"].as_u64()
        ),
        (Some(3), Some(1), Some(1))
    );
}

#[test]
fn diff_shows_deltas() {
    let a = small_trace("sync.trace", true, 0);
    let b = small_trace("deferred.trace", false, 4);
    let (rc, out, err) = cli(&["diff", p(&a), p(&b)]);
    assert_eq!(rc, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("invalidations.kva "))
        .unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        ["invalidations.kva", "0", "4", "+4"]
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("stale_walks.reused "))
        .unwrap();
    assert!(line.ends_with("-1"), "{line}");
    let (_, json, _) = cli(&["diff", "--json", p(&a), p(&b)]);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["counter"] == "freed_while_cached" && r["delta"] == -1)
    );
}

#[test]
fn plot_of_coloured_serial_lines_is_well_formed_svg() {
    // A guest that colours its output (ANSI escapes) once produced an SVG
    // no XML parser accepts.
    let path = dir().join("ansi.trace");
    let w = TraceWriter::create(&path, TraceOptions::default()).unwrap();
    w.marker("\u{1b}[1;31mFAIL\u{1b}[0m <b> & \u{7}bell");
    w.finish().unwrap();
    let svg = dir().join("ansi.svg");
    let (rc, _, err) = cli(&["plot", p(&path), "-o", p(&svg)]);
    assert_eq!(rc, 0, "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let labels: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(str::to_string))
        .collect();
    assert!(
        labels.iter().any(|t| t.contains("FAIL <b> & \u{fffd}bell")),
        "{labels:?}"
    );
}

#[test]
fn reject_plot_or_export_over_its_own_input() {
    for cmd in [["plot", "-o"], ["export", "-o"]] {
        let t = small_trace(&format!("self-{}.trace", cmd[0]), false, 1);
        let before = std::fs::read(&t).unwrap();
        let mut args = vec![cmd[0]];
        if cmd[0] == "export" {
            args.push("--chrome");
        }
        args.extend([p(&t), cmd[1], p(&t)]);
        let (rc, _, err) = cli(&args);
        assert_eq!(rc, 1, "{}: {err}", cmd[0]);
        assert!(err.contains("is the input"), "{err}");
        assert_eq!(
            std::fs::read(&t).unwrap(),
            before,
            "{}: input changed",
            cmd[0]
        );
    }
}

#[test]
fn plot_writes_well_formed_svg() {
    let t = small_trace("plot.trace", true, 5);
    let svg = dir().join("plot.svg");
    let (rc, _, err) = cli(&["plot", p(&t), "-o", p(&svg)]);
    assert_eq!(rc, 0, "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(root.attribute("width"), Some("1280"));
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("stalewalk-guest: done")),
        "guest marker label: {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("piotlb (6)")),
        "legend names the type and count: {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("1 stale walks")),
        "title counts stale walks: {texts:?}"
    );
    assert!(
        doc.descendants().any(|n| n.has_tag_name("polyline")),
        "invalidation lines"
    );
}

#[test]
fn export_chrome_is_trace_event_json() {
    let t = small_trace("export.trace", true, 2);
    let out_path = dir().join("export.json");
    let (rc, _, err) = cli(&["export", "--chrome", p(&t), "-o", p(&out_path)]);
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    let events = v["traceEvents"].as_array().unwrap();
    let stale = events
        .iter()
        .find(|e| e["name"] == "stale walk reused")
        .unwrap();
    assert_eq!(stale["ph"], "i");
    assert_eq!(stale["args"]["addr"], "0xffff888000100000");
    assert!(stale["ts"].as_f64().unwrap() >= 0.0);
    assert!(
        events
            .iter()
            .any(|e| e["ph"] == "M" && e["args"]["name"] == "invalidations")
    );
    assert!(
        events
            .iter()
            .any(|e| e["ph"] == "C" && e["args"]["piotlb"] == 3)
    );
    assert!(
        events
            .iter()
            .any(|e| e["name"] == "stalewalk-guest: done stale=1" && e["s"] == "g")
    );
    // The export flag is required: there is no other format.
    assert!(Cli::try_parse_from(["trace", "export", p(&t), "-o", "x"]).is_err());
}

#[test]
fn grep_filters_by_pasid_address_and_kind() {
    let t = small_trace("grep.trace", true, 2);
    let count = |args: &[&str]| {
        let (rc, out, err) = cli(args);
        assert_eq!(rc, 0, "{err}");
        for l in out.lines() {
            serde_json::from_str::<serde_json::Value>(l).expect("grep prints JSON lines");
        }
        out.lines().count()
    };
    assert_eq!(count(&["grep", p(&t), "--kind", "stale"]), 1);
    assert_eq!(count(&["grep", p(&t), "--kind", "inv,fault"]), 5);
    assert_eq!(
        count(&["grep", p(&t), "--pasid", "7"]),
        2,
        "translation and stale walk"
    );
    // The first KVA flush covers 0xffff888000000000-0xffff8880001fffff; the
    // global IOTLB invalidation covers everything.
    let range = "0xffff888000100000-0xffff888000100fff";
    assert_eq!(count(&["grep", p(&t), "--addr", range, "--kind", "inv"]), 2);
    assert_eq!(
        count(&["grep", p(&t), "--addr", "0x400000", "--kind", "walk"]),
        1
    );
    let (rc, _, err) = cli(&["grep", p(&t), "--addr", "0x2-0x1"]);
    assert_eq!(rc, 1);
    assert!(err.contains("bad address range"), "{err}");
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn reject_truncated_trace_unless_allowed() {
    let t = small_trace("trunc.trace", true, 1);
    let mut lines = lines_of(&t);
    lines.pop(); // the end record
    let n = lines.len();
    std::fs::write(&t, lines.join("\n") + "\n").unwrap();
    let (rc, _, err) = cli(&["summary", p(&t)]);
    assert_eq!(rc, 1);
    assert!(
        err.contains(&format!(
            "trace is truncated after line {n} (no end record)"
        )),
        "{err}"
    );
    let (rc, out, err) = cli(&["summary", "--allow-truncated", p(&t)]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        err.contains("warning") && out.contains(&format!("truncated after line {n}")),
        "{out}"
    );
    // A crash mid-write: the last line is cut short.
    let mut text = lines[..n - 1].join("\n") + "\n";
    text.push_str(&lines[n - 1][..10]);
    std::fs::write(&t, text).unwrap();
    let (rc, _, err) = cli(&["summary", p(&t)]);
    assert_eq!(rc, 1);
    assert!(
        err.contains(&format!("truncated after line {}", n - 1)),
        "{err}"
    );
    // Every subcommand reads it up to there when allowed, with a warning.
    let svg = dir().join("trunc.svg");
    let json = dir().join("trunc.json");
    for args in [
        vec!["plot", "--allow-truncated", p(&t), "-o", p(&svg)],
        vec![
            "export",
            "--chrome",
            "--allow-truncated",
            p(&t),
            "-o",
            p(&json),
        ],
        vec!["grep", "--allow-truncated", p(&t), "--kind", "inv"],
        vec!["diff", "--allow-truncated", p(&t), p(&t)],
    ] {
        let (rc, _, err) = cli(&args);
        assert_eq!(rc, 0, "{args:?}: {err}");
        assert!(
            err.contains(&format!("truncated after line {}", n - 1)),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn reject_corrupted_trace_with_line_number() {
    let t = small_trace("corrupt.trace", true, 1);
    let mut lines = lines_of(&t);
    lines[3] = lines[3].replace("\"seq\":3", "\"seq\":3,,");
    std::fs::write(&t, lines.join("\n") + "\n").unwrap();
    let (rc, _, err) = cli(&["summary", p(&t)]);
    assert_eq!(rc, 1);
    assert!(err.contains("line 4 is corrupted"), "{err}");
    // A lost line shows as a sequence gap.
    let mut lines = lines_of(&small_trace("gap.trace", true, 1));
    lines.remove(2);
    std::fs::write(&t, lines.join("\n") + "\n").unwrap();
    let (rc, _, err) = cli(&["grep", p(&t), "--kind", "inv"]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("line 3 is corrupted: sequence number 3 where 2 was expected"),
        "{err}"
    );
}

#[test]
fn reject_newer_major_version() {
    let t = small_trace("v2.trace", false, 1);
    let mut lines = lines_of(&t);
    lines[0] = lines[0].replace("\"version\":\"1.0\"", "\"version\":\"2.0\"");
    std::fs::write(&t, lines.join("\n") + "\n").unwrap();
    for args in [
        vec!["summary", p(&t)],
        vec!["export", "--chrome", p(&t), "-o", "/dev/null"],
    ] {
        let (rc, _, err) = cli(&args);
        assert_eq!(rc, 1);
        assert!(
            err.contains("trace format version 2.0 is newer than this reader supports (1.x)"),
            "{err}"
        );
    }
}

#[test]
fn newer_minor_version_with_unknown_kinds_is_read() {
    let t = small_trace("v1_1.trace", false, 1);
    let mut lines = lines_of(&t);
    lines[0] = lines[0].replace("\"version\":\"1.0\"", "\"version\":\"1.1\"");
    // Insert a record of a future kind, renumbering the ones after it.
    let future = r#"{"seq":1,"t_ns":0,"kind":"future_kind","data":{}}"#.to_string();
    lines.insert(1, future);
    let renumbered: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                return l.clone();
            }
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["seq"] = serde_json::json!(i);
            if v["kind"] == "end" {
                v["records"] = serde_json::json!(i);
            }
            v.to_string()
        })
        .collect();
    std::fs::write(&t, renumbered.join("\n") + "\n").unwrap();
    let (rc, out, err) = cli(&["summary", "--json", p(&t)]);
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["events"]["future_kind"], 1);
}

/// A QEMU 10 log (the lines its intel-iommu prints for the mini guest's
/// vtd-blk) imports into a trace that `trace diff` reads: the untraced
/// PASID-cache slot is said, not guessed; bad input is an error, not a
/// panic, and the output may not overwrite the log.
#[test]
fn import_qemu_log_then_diff() {
    let d = dir();
    let log = d.join("qemu-vtd.log");
    std::fs::write(
        &log,
        "vtd_inv_qi_head read head 0\n\
         vtd_inv_desc invalidate desc type context-cache high 0x0 low 0x11\n\
         vtd_inv_desc_cc_global context invalidate globally\n\
         vtd_inv_qi_head read head 1\n\
         vtd_inv_desc invalidate desc type wait high 0x812008 low 0x100000065\n\
         vtd_inv_qi_head read head 2\n\
         vtd_inv_qi_head read head 3\n\
         vtd_inv_desc invalidate desc type wait high 0x812008 low 0x200000065\n\
         vtd_inv_qi_head read head 6\n\
         vtd_inv_desc invalidate desc type p-iotlb high 0x400001 low 0x20036\n\
         vtd_dmar_fault sid 0x10 fault 113 addr 0x400000 write 1\n\
         vtd_frr_new index 0 high 0x7180000010 low 0x400000\n",
    )
    .unwrap();
    let t = d.join("qemu-vtd.trace");
    let (code, out, err) = cli(&["import-qemu", p(&log), "-o", p(&t)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("4 descriptors, 1 faults (1 recorded)"),
        "{out}"
    );
    assert!(out.contains("untraced 1") && out.contains("[2]"), "{out}");
    let (code, out, err) = cli(&["diff", p(&t), p(&t), "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["counter"] == name)
            .unwrap_or_else(|| panic!("no {name} row in {out}"))
            .clone()
    };
    assert_eq!(row("invalidations.by_type.piotlb")["a"], 1, "{out}");
    assert_eq!(row("faults.recorded")["a"], 1, "{out}");

    // Refusals: the output is the log; a broken line; no queue events.
    let (code, _, err) = cli(&["import-qemu", p(&log), "-o", p(&log)]);
    assert_eq!(code, 1);
    assert!(err.contains("is the input"), "{err}");
    std::fs::write(&log, "vtd_inv_desc invalidate desc type wait high 0x1\n").unwrap();
    let (code, _, err) = cli(&["import-qemu", p(&log), "-o", p(&t)]);
    assert_eq!(code, 1);
    assert!(err.contains(":1: not a QEMU trace line"), "{err}");
    std::fs::write(&log, "vtd_reg_read addr 0x0 size 0x4\n").unwrap();
    let (code, _, err) = cli(&["import-qemu", p(&log), "-o", p(&t)]);
    assert_eq!(code, 1);
    assert!(err.contains("-trace vtd_frr_new"), "{err}");
}
