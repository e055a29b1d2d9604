//! `stalewalk trace import-qemu`: QEMU's VT-d model as a second opinion.
//!
//! QEMU's intel-iommu prints, with `-trace 'vtd_inv_*' -trace vtd_dmar_fault
//! -trace vtd_frr_new -D LOG`, every invalidation descriptor it processes
//! as raw quadwords (`vtd_inv_desc invalidate desc type T high H low L`),
//! the queue slot it fetched before each (`vtd_inv_qi_head read head N`) and
//! every DMA remapping fault (`vtd_dmar_fault`, then `vtd_frr_new` when a
//! fault record was written). [`import_qemu`] decodes those descriptors
//! with the model's own decoder ([`viommu::descriptor::decode`]) and writes
//! them, with the faults, as a stalewalk trace, so `stalewalk trace diff`
//! sets what a guest driver sent to QEMU beside what the same guest sent to
//! stalewalk (docs/QEMU-COMPARE.md).
//!
//! QEMU 10 handles PASID-cache invalidation descriptors in scalable mode
//! without a `vtd_inv_desc` event: a slot it fetched with no descriptor
//! event after it is counted as [`ImportStats::untraced`] and written as a
//! marker, never guessed.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use viommu::descriptor::{QiError, decode};
use viommu::event::{Event, EventSink};

use super::writer::{TraceOptions, TraceWriter, WriteError};

/// The `-trace` patterns a log needs for [`import_qemu`].
pub const QEMU_TRACE_ARGS: &str = "-trace 'vtd_inv_*' -trace vtd_dmar_fault -trace vtd_frr_new";

/// What one import found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Descriptors decoded and written as `inv` records.
    pub descriptors: u64,
    /// Queue slots QEMU fetched without a `vtd_inv_desc` event (QEMU 10:
    /// PASID-cache descriptors); their slot numbers, in order.
    pub untraced: Vec<u32>,
    /// DMA remapping faults QEMU reported.
    pub faults: u64,
    /// Of those, the ones QEMU wrote a fault record for.
    pub faults_recorded: u64,
}

/// Why a log could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The log could not be read.
    #[error("cannot read QEMU trace log {path}: {reason}")]
    Read {
        /// The log.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// A line of a traced event did not have the shape QEMU prints.
    #[error("{path}:{line}: {why}: {text}")]
    BadLine {
        /// The log.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        why: String,
        /// The line (cut to 200 bytes).
        text: String,
    },
    /// A descriptor QEMU processed is one the model rejects.
    #[error("{path}:{line}: QEMU processed a descriptor the model rejects ({source}): {text}")]
    Undecodable {
        /// The log.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The model's reason.
        source: QiError,
        /// The line.
        text: String,
    },
    /// The log holds no invalidation event at all: the wrong `-trace`
    /// patterns, or a guest that never used queued invalidation.
    #[error(
        "{path}: no vtd_inv_qi_head or vtd_inv_desc line: run QEMU with {QEMU_TRACE_ARGS} -D {path}"
    )]
    Empty {
        /// The log.
        path: String,
    },
    /// Writing the stalewalk trace failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The writer dropped records (it cannot, with the capacity the import
    /// sets; kept so a trace is never silently short).
    #[error("the trace writer dropped {0} records")]
    Dropped(u64),
}

/// One event of the log, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Event(Event),
    /// A slot fetched without a descriptor event.
    Untraced(u32),
}

/// A fault seen but not yet known to be recorded (QEMU traces the record,
/// `vtd_frr_new`, after the fault).
#[derive(Debug, Clone, Copy)]
struct PendingFault {
    rid: u16,
    addr: u64,
    reason: u8,
}

/// The log's lines as events: the parser behind [`import_qemu`].
#[derive(Debug, Default)]
struct Parser {
    items: Vec<Item>,
    /// The slot of the last `vtd_inv_qi_head` with no descriptor yet.
    slot: Option<u32>,
    fault: Option<PendingFault>,
    saw_queue: bool,
}

/// `name args` of a trace line, without the `PID@SECONDS:` prefix QEMU adds
/// when timestamps are on.
fn event_of(line: &str) -> (&str, &str) {
    let body = match line.split_once(':') {
        Some((prefix, rest))
            if prefix.contains('@')
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'@' || b == b'.') =>
        {
            rest
        }
        _ => line,
    };
    let body = body.trim();
    body.split_once(' ').unwrap_or((body, ""))
}

/// The value after `key` in a `key value key value` argument list.
fn field<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    let mut words = args.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next();
        }
    }
    None
}

fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl Parser {
    fn flush_fault(&mut self, recorded: bool) {
        if let Some(f) = self.fault.take() {
            self.items.push(Item::Event(Event::Fault {
                rid: f.rid,
                // QEMU 10 names the RID_PASID of a request without PASID;
                // its trace line does not say which, so none is claimed.
                pasid: None,
                addr: f.addr,
                reason: f.reason,
                recorded,
            }));
        }
    }

    fn close_slot(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.items.push(Item::Untraced(slot));
        }
    }

    /// One line; `Err` carries what was wrong with it.
    fn line(&mut self, line: &str) -> Result<(), LineError> {
        let (name, args) = event_of(line);
        match name {
            "vtd_inv_qi_head" => {
                let head = field(args, "head")
                    .and_then(number)
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or(LineError::Shape("no 'head N'"))?;
                self.flush_fault(false);
                self.close_slot();
                self.slot = Some(head);
                self.saw_queue = true;
            }
            "vtd_inv_desc" => {
                let hi = field(args, "high").and_then(number);
                let lo = field(args, "low").and_then(number);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(LineError::Shape("no 'high 0x.. low 0x..'"));
                };
                self.flush_fault(false);
                // QEMU prints the low 128 bits; the types it traces keep
                // nothing in the upper half.
                let descriptor = decode([lo, hi, 0, 0]).map_err(LineError::Decode)?;
                self.items.push(Item::Event(Event::Invalidation {
                    slot: self.slot.take(),
                    descriptor,
                    // QEMU does not say how many cache entries went.
                    removed: 0,
                }));
                self.saw_queue = true;
            }
            "vtd_dmar_fault" => {
                let sid = field(args, "sid").and_then(number);
                let reason = field(args, "fault").and_then(number);
                let addr = field(args, "addr").and_then(number);
                let (Some(sid), Some(reason), Some(addr)) = (sid, reason, addr) else {
                    return Err(LineError::Shape("no 'sid .. fault .. addr ..'"));
                };
                let (Ok(rid), Ok(reason)) = (u16::try_from(sid), u8::try_from(reason)) else {
                    return Err(LineError::Shape("sid or fault reason out of range"));
                };
                self.flush_fault(false);
                self.fault = Some(PendingFault { rid, addr, reason });
            }
            "vtd_frr_new" => self.flush_fault(true),
            _ => {}
        }
        Ok(())
    }

    fn finish(mut self) -> (Vec<Item>, bool) {
        self.flush_fault(false);
        self.close_slot();
        (self.items, self.saw_queue)
    }
}

#[derive(Debug)]
enum LineError {
    Shape(&'static str),
    Decode(QiError),
}

/// Reads QEMU's trace log at `log` and writes its invalidations and faults
/// as a stalewalk trace at `output`; `command` goes in the header.
pub fn import_qemu(log: &Path, output: &Path, command: &str) -> Result<ImportStats, ImportError> {
    let path = log.display().to_string();
    let read_err = |e: std::io::Error| ImportError::Read {
        path: path.clone(),
        reason: e.to_string(),
    };
    let mut reader = BufReader::new(File::open(log).map_err(read_err)?);
    let mut parser = Parser::default();
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(read_err)? == 0 {
            break;
        }
        number += 1;
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end();
        parser.line(text).map_err(|e| {
            let cut: String = text.chars().take(200).collect();
            match e {
                LineError::Shape(why) => ImportError::BadLine {
                    path: path.clone(),
                    line: number,
                    why: format!("not a QEMU trace line ({why})"),
                    text: cut,
                },
                LineError::Decode(source) => ImportError::Undecodable {
                    path: path.clone(),
                    line: number,
                    source,
                    text: cut,
                },
            }
        })?;
    }
    let (items, saw_queue) = parser.finish();
    if !saw_queue {
        return Err(ImportError::Empty { path });
    }
    let options = TraceOptions {
        command: command.to_string(),
        // Every item fits: nothing is dropped.
        capacity: items.len() + 1,
        ..TraceOptions::default()
    };
    let writer = TraceWriter::create(output, options)?;
    let mut sink = writer.sink();
    let mut stats = ImportStats::default();
    for item in &items {
        match item {
            Item::Event(event) => {
                match event {
                    Event::Invalidation { .. } => stats.descriptors += 1,
                    Event::Fault { recorded, .. } => {
                        stats.faults += 1;
                        stats.faults_recorded += u64::from(*recorded);
                    }
                    _ => {}
                }
                sink.event(event);
            }
            Item::Untraced(slot) => {
                stats.untraced.push(*slot);
                sink.marker(&format!(
                    "qemu: slot {slot}: descriptor fetched without a vtd_inv_desc event \
                     (QEMU 10 handles PASID-cache descriptors without one)"
                ));
            }
        }
    }
    let totals = writer.finish()?;
    if totals.dropped_total() > 0 {
        return Err(ImportError::Dropped(totals.dropped_total()));
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use viommu::descriptor::{Descriptor, PiotlbGranularity};

    fn parse(text: &str) -> Vec<Item> {
        let mut p = Parser::default();
        for line in text.lines() {
            p.line(line).expect("line parses");
        }
        p.finish().0
    }

    #[test]
    fn descriptors_decode_with_their_slots() {
        let items = parse(
            "vtd_inv_qi_head read head 6\n\
             vtd_inv_desc invalidate desc type p-iotlb high 0xffffa040 low 0x30036\n\
             12@1733480000.000001:vtd_inv_qi_head read head 7\n\
             12@1733480000.000002:vtd_inv_desc invalidate desc type wait high 0x812008 low 0x400000065\n",
        );
        assert_eq!(items.len(), 2);
        let Item::Event(Event::Invalidation {
            slot: Some(6),
            descriptor:
                Descriptor::Piotlb {
                    did: 3,
                    pasid: 0,
                    granularity:
                        PiotlbGranularity::Page {
                            addr,
                            am: 0,
                            ih: true,
                        },
                },
            ..
        }) = &items[0]
        else {
            panic!("not the p-iotlb descriptor: {:?}", items[0]);
        };
        assert_eq!(*addr, 0xffff_a000);
        assert!(matches!(
            items[1],
            Item::Event(Event::Invalidation {
                slot: Some(7),
                descriptor: Descriptor::Wait { .. },
                ..
            })
        ));
    }

    #[test]
    fn a_slot_without_descriptor_event_is_untraced_not_guessed() {
        let items = parse(
            "vtd_inv_qi_head read head 2\n\
             vtd_inv_qi_head read head 3\n\
             vtd_inv_desc invalidate desc type wait high 0x812008 low 0x200000065\n\
             vtd_inv_qi_head read head 4\n",
        );
        assert_eq!(items[0], Item::Untraced(2));
        assert!(matches!(
            items[1],
            Item::Event(Event::Invalidation { slot: Some(3), .. })
        ));
        assert_eq!(items[2], Item::Untraced(4));
    }

    #[test]
    fn faults_know_whether_a_record_was_written() {
        let items = parse(
            "vtd_dmar_fault sid 0x8 fault 113 addr 0x400000 write 1\n\
             vtd_frr_new index 0 high 0x7180000008 low 0x400000\n\
             vtd_dmar_fault sid 0x8 fault 113 addr 0x401000 write 1\n\
             vtd_fsts_ppf FSTS PPF bit set to 0\n\
             vtd_inv_qi_head read head 0\n",
        );
        let faults: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                Item::Event(Event::Fault {
                    rid,
                    addr,
                    reason,
                    recorded,
                    ..
                }) => Some((*rid, *addr, *reason, *recorded)),
                _ => None,
            })
            .collect();
        assert_eq!(
            faults,
            vec![(8, 0x400000, 0x71, true), (8, 0x401000, 0x71, false)]
        );
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for line in [
            "vtd_inv_qi_head read head",
            "vtd_inv_qi_head read head 0x1ffffffff",
            "vtd_inv_desc invalidate desc type wait high zz low 0x1",
            "vtd_dmar_fault sid 0x10000 fault 1 addr 0",
            "vtd_dmar_fault sid 1 fault 256 addr 0",
        ] {
            assert!(Parser::default().line(line).is_err(), "{line}");
        }
        // A reserved descriptor type is the model's error, with its reason.
        assert!(matches!(
            Parser::default().line("vtd_inv_desc invalidate desc type x high 0x0 low 0xf"),
            Err(LineError::Decode(_))
        ));
        // Lines of other events, and noise, are ignored.
        for line in [
            "",
            "@",
            "vtd_reg_write addr 0x88",
            "qemu-system-x86_64: warning",
        ] {
            assert!(Parser::default().line(line).is_ok(), "{line}");
        }
    }

    #[test]
    fn import_writes_a_trace_the_reader_accepts() {
        let dir = std::env::temp_dir().join(format!("sw-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join("qemu.log");
        let out = dir.join("qemu.trace");
        std::fs::write(
            &log,
            "vtd_inv_qi_head read head 0\n\
             vtd_inv_desc invalidate desc type context-cache high 0x0 low 0x11\n\
             vtd_inv_qi_head read head 1\n\
             vtd_inv_qi_head read head 2\n\
             vtd_inv_desc invalidate desc type wait high 0x812008 low 0x100000065\n",
        )
        .expect("write log");
        let stats = import_qemu(&log, &out, "test").expect("import");
        assert_eq!(stats.descriptors, 2);
        assert_eq!(stats.untraced, vec![1]);
        let s = crate::trace::summary::summarize(&out, Default::default()).expect("summary");
        let c = s.counters();
        assert_eq!(c["invalidations"]["context"], 1, "{c:#}");
        assert_eq!(c["invalidations"]["wait"], 1, "{c:#}");
        // A log without queue events is refused with the flags to use.
        std::fs::write(&log, "vtd_reg_write addr 0x88 size 0x8 value 0x0\n").expect("write");
        let e = import_qemu(&log, &out, "test").expect_err("empty");
        assert!(e.to_string().contains("-trace 'vtd_inv_*'"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
