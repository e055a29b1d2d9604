//! The scenario language: turns the text of a `.sw` file into a checked
//! [`Scenario`] (a configuration plus numbered commands).
//!
//! The language is line based: `#` starts a comment anywhere on a line, blank
//! lines are ignored, numbers are decimal or `0x` hexadecimal. Every value is
//! range-checked here, so the harness only sees commands it can carry out;
//! a malformed line becomes a [`ParseError`] naming the line and what was
//! expected. The reference is `docs/SCENARIOS.md`. Nothing here touches the
//! IOMMU model: parsing is pure text processing and never panics.

use std::collections::HashSet;
use std::fmt;

use thiserror::Error;

/// Bytes at the top of guest memory that belong to the harness (root,
/// context and PASID tables, the invalidation queue, wait status words and the
/// page-request queue). Scenario writes must stay below this area.
pub const HARNESS_AREA: u64 = 1 << 20;
/// Default guest memory size (`mem=64M`).
pub const DEFAULT_MEM: u64 = 64 << 20;
/// Smallest accepted `mem=`: the harness area plus 1 MiB for the scenario.
pub const MIN_MEM: u64 = 2 << 20;
/// Largest accepted `mem=`: guest memory is an anonymous mapping touched
/// lazily, but the limit keeps a scenario from reserving more address space
/// than a test host can map.
pub const MAX_MEM: u64 = 64 << 30;
/// Largest accepted `cache=lru:N`: entries per cache; bounds what a scenario
/// can make the model allocate.
pub const MAX_LRU_ENTRIES: u32 = 1 << 20;
/// Largest scenario text accepted, in bytes (bounds memory use and run time).
pub const MAX_SCENARIO_BYTES: usize = 16 << 20;
/// Largest PASID (20 bits).
pub const MAX_PASID: u64 = (1 << 20) - 1;
/// Largest domain id (16 bits).
pub const MAX_DID: u64 = u16::MAX as u64;
/// Largest address mask of a page-selective invalidation: 2^(52+12) bytes
/// cover the whole 64-bit address space.
pub const MAX_AM: u64 = 52;
/// Entries in a page-table page.
pub const TABLE_ENTRIES: u64 = 512;
/// Size of a page (and of a page-table page).
pub const PAGE_SIZE: u64 = 4096;

/// The requester used when a line gives no `rid=` (the first SVA test device).
pub const DEFAULT_RID: Rid = Rid {
    bus: 0,
    device: 4,
    function: 0,
};
/// The domain id used when a line gives no `did=` (what Linux uses for SVA).
pub const DEFAULT_DID: u16 = 1;

/// A PCI requester id, written `BB:DD.F` in hexadecimal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rid {
    /// Bus number.
    pub bus: u8,
    /// Device number (0..=0x1f).
    pub device: u8,
    /// Function number (0..=7).
    pub function: u8,
}

impl Rid {
    /// The 16-bit source id: bus in 15:8, device in 7:3, function in 2:0.
    pub fn source_id(self) -> u16 {
        (u16::from(self.bus) << 8) | u16::from(self.devfn())
    }

    /// Device and function as one byte (the index into a bus's context
    /// entries).
    pub fn devfn(self) -> u8 {
        ((self.device & 0x1f) << 3) | (self.function & 0x7)
    }
}

impl fmt::Display for Rid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus, self.device, self.function
        )
    }
}

/// Paging-structure cache policy of the model (`cache=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CachePolicy {
    /// Cache every present non-leaf entry of every walk, never evict.
    Adversarial,
    /// At most N entries per cache, least recently used evicted first.
    Lru(u32),
    /// No caching.
    None,
}

/// Stale-walk checker mode (`check=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckMode {
    /// Check every translation that used a cached entry.
    All,
    /// No checking.
    Off,
}

/// The `config` line (or its defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScenarioConfig {
    /// Guest memory size in bytes; a multiple of 4 KiB.
    pub mem: u64,
    /// First-stage paging levels, 4 or 5.
    pub levels: u8,
    /// Cache policy.
    pub cache: CachePolicy,
    /// Checker mode.
    pub check: CheckMode,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            mem: DEFAULT_MEM,
            levels: 4,
            cache: CachePolicy::Adversarial,
            check: CheckMode::All,
        }
    }
}

impl ScenarioConfig {
    /// First guest-physical address of the harness area; scenario writes end
    /// at or below it.
    pub fn harness_base(&self) -> u64 {
        self.mem.saturating_sub(HARNESS_AREA)
    }
}

/// Kind of a device access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read request (`access=r`).
    Read,
    /// Write request (`access=w`).
    Write,
    /// Execute request (`access=x`).
    Execute,
}

/// Size of a device-TLB invalidation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevtlbSize {
    /// 2^N pages starting at the (aligned) address.
    Pages {
        /// log2 of the number of 4 KiB pages (0..=51).
        order: u8,
    },
    /// Every address (`size=all`).
    All,
}

/// One invalidation descriptor (`inv ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Page-selective-within-PASID PASID-based IOTLB invalidation.
    PiotlbPage {
        /// PASID.
        pasid: u32,
        /// Domain id.
        did: u16,
        /// Page-aligned address.
        addr: u64,
        /// Address mask: 2^am pages.
        am: u8,
        /// Invalidation hint: only leaves changed.
        ih: bool,
    },
    /// PASID-selective PASID-based IOTLB invalidation.
    PiotlbPasid {
        /// PASID.
        pasid: u32,
        /// Domain id.
        did: u16,
    },
    /// PASID-selective PASID-cache invalidation.
    PasidCache {
        /// PASID.
        pasid: u32,
        /// Domain id.
        did: u16,
    },
    /// Domain-selective PASID-cache invalidation (every PASID of a domain).
    PasidCacheDomain {
        /// Domain id.
        did: u16,
    },
    /// Global PASID-cache invalidation.
    PasidCacheGlobal,
    /// Global IOTLB invalidation.
    IotlbGlobal,
    /// Domain-selective IOTLB invalidation.
    IotlbDomain {
        /// Domain id.
        did: u16,
    },
    /// Page-selective-within-domain IOTLB invalidation (every PASID of the
    /// domain).
    IotlbPage {
        /// Domain id.
        did: u16,
        /// Page-aligned address.
        addr: u64,
        /// Address mask: 2^am pages.
        am: u8,
        /// Invalidation hint: only leaves changed.
        ih: bool,
    },
    /// Global context-cache invalidation.
    ContextGlobal,
    /// Device-TLB invalidation: PASID-based (type 8) with a PASID, else the
    /// plain device-TLB descriptor (type 3).
    Devtlb {
        /// Requester whose device TLB is invalidated.
        rid: Rid,
        /// PASID, for the PASID-based form.
        pasid: Option<u32>,
        /// Start address, aligned to the size.
        addr: u64,
        /// Size.
        size: DevtlbSize,
    },
}

/// One command of a scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `write GPA VALUE`.
    Write {
        /// Guest-physical address (any alignment).
        gpa: u64,
        /// Little-endian u64 stored there.
        value: u64,
    },
    /// `table GPA INDEX VALUE`.
    Table {
        /// Page-aligned table page.
        gpa: u64,
        /// Entry index (0..=511).
        index: u16,
        /// Entry value.
        value: u64,
    },
    /// `bind pasid=P pgd=GPA [did=D] [sre=0|1] [rid=BB:DD.F]`.
    Bind {
        /// PASID.
        pasid: u32,
        /// Page-aligned first-stage root table.
        pgd: u64,
        /// Domain id.
        did: u16,
        /// Supervisor requests enabled.
        sre: bool,
        /// Requester.
        rid: Rid,
    },
    /// `dma pasid=P addr=VA access=r|w|x [priv=0|1] [rid=..]`.
    Dma {
        /// PASID.
        pasid: u32,
        /// Input address.
        addr: u64,
        /// Access kind.
        access: Access,
        /// Supervisor (privileged) request.
        privileged: bool,
        /// Requester.
        rid: Rid,
    },
    /// `walk pasid=P addr=VA [rid=..]`.
    Walk {
        /// PASID.
        pasid: u32,
        /// Input address.
        addr: u64,
        /// Requester.
        rid: Rid,
    },
    /// `inv ...`.
    Inv(Invalidation),
    /// `wait`.
    Wait,
    /// `free GPA`.
    Free {
        /// Page-aligned page-table page.
        gpa: u64,
    },
    /// `expect KEY=VALUE ...`.
    Expect(Vec<(String, u64)>),
}

/// A command with the line it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the scenario text.
    pub number: usize,
    /// The command.
    pub command: Command,
}

/// A parsed, checked scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Configuration (defaults when there is no `config` line).
    pub config: ScenarioConfig,
    /// Commands in order (comments, blank lines and `config` left out).
    pub lines: Vec<Line>,
}

/// What was wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseErrorKind {
    /// The first word is no command.
    #[error(
        "unknown command `{0}`; expected one of config, write, table, bind, dma, walk, inv, wait, free, expect"
    )]
    UnknownCommand(String),
    /// `inv` with an unknown descriptor kind.
    #[error(
        "unknown invalidation `{0}`; expected inv piotlb, inv pasid-cache, inv iotlb, inv context or inv devtlb"
    )]
    UnknownInvalidation(String),
    /// `config` after another command.
    #[error("`config` must be the first line that is not blank or a comment")]
    ConfigNotFirst,
    /// A required key is missing.
    #[error("`{command}` needs `{key}=`; expected: {usage}")]
    MissingKey {
        /// Command.
        command: &'static str,
        /// Missing key.
        key: &'static str,
        /// The command's syntax.
        usage: &'static str,
    },
    /// A key the command does not take.
    #[error("`{command}` takes no key `{key}`; expected: {usage}")]
    UnknownKey {
        /// Command.
        command: &'static str,
        /// The key found.
        key: String,
        /// The command's syntax.
        usage: &'static str,
    },
    /// A key given twice.
    #[error("key `{0}` given twice")]
    DuplicateKey(String),
    /// A bare word where a `KEY=VALUE` was expected.
    #[error("unexpected word `{found}`; expected: {usage}")]
    UnexpectedWord {
        /// The word found.
        found: String,
        /// The command's syntax.
        usage: &'static str,
    },
    /// Wrong number of positional arguments.
    #[error("wrong number of arguments; expected: {usage}")]
    WrongArgumentCount {
        /// The command's syntax.
        usage: &'static str,
    },
    /// Keys that exclude each other, or a required choice missing.
    #[error("{problem}; expected: {usage}")]
    BadCombination {
        /// What is wrong.
        problem: &'static str,
        /// The command's syntax.
        usage: &'static str,
    },
    /// Not a number.
    #[error("`{what}`: `{found}` is not a number (decimal or 0x hexadecimal)")]
    BadNumber {
        /// Key or argument.
        what: &'static str,
        /// Text found.
        found: String,
    },
    /// A number out of its range.
    #[error("`{what}`: {found:#x} is out of range; expected {range}")]
    OutOfRange {
        /// Key or argument.
        what: &'static str,
        /// Value found.
        found: u64,
        /// The accepted range.
        range: &'static str,
    },
    /// A value that is none of the accepted words.
    #[error("`{what}`: `{found}` is not valid; expected {expected}")]
    BadValue {
        /// Key or argument.
        what: &'static str,
        /// Text found.
        found: String,
        /// Accepted values.
        expected: &'static str,
    },
    /// An address that is not aligned.
    #[error("`{what}`: {found:#x} is not aligned to {align:#x}")]
    NotAligned {
        /// Key or argument.
        what: &'static str,
        /// Value found.
        found: u64,
        /// Required alignment.
        align: u64,
    },
    /// A write that reaches the harness area or past guest memory.
    #[error(
        "`{what}`: {start:#x}..{end:#x} is not below the harness area at {limit:#x} (the top 1 MiB of mem)"
    )]
    OutsideScenarioMemory {
        /// Key or argument.
        what: &'static str,
        /// First byte written.
        start: u64,
        /// One past the last byte written (saturating).
        end: u64,
        /// First byte of the harness area.
        limit: u64,
    },
    /// `expect` with a key that is not a report counter.
    #[error(
        "`expect`: unknown report key `{0}`; expected a key that names a number in the report, such as translations or stale_walks.reused (see docs/SCENARIOS.md)"
    )]
    UnknownReportKey(String),
    /// `expect` without any `KEY=VALUE`.
    #[error("`expect` needs at least one KEY=VALUE")]
    EmptyExpect,
    /// The scenario text is too large.
    #[error("scenario is larger than {MAX_SCENARIO_BYTES} bytes")]
    TooLarge,
}

/// A malformed scenario: the 1-based line and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line number (0 for errors about the whole text).
    pub line: usize,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

type Result<T> = std::result::Result<T, ParseErrorKind>;

const USAGE_CONFIG: &str =
    "config [mem=SIZE] [levels=4|5] [cache=adversarial|lru:N|none] [check=all|off]";
const USAGE_WRITE: &str = "write GPA VALUE";
const USAGE_TABLE: &str = "table GPA INDEX VALUE";
const USAGE_BIND: &str = "bind pasid=P pgd=GPA [did=D] [sre=0|1] [rid=BB:DD.F]";
const USAGE_DMA: &str = "dma pasid=P addr=VA access=r|w|x [priv=0|1] [rid=BB:DD.F]";
const USAGE_WALK: &str = "walk pasid=P addr=VA [rid=BB:DD.F]";
const USAGE_PIOTLB: &str =
    "inv piotlb pasid=P [did=D] addr=VA am=N ih=0|1, or inv piotlb pasid=P [did=D] all";
const USAGE_PASID_CACHE: &str =
    "inv pasid-cache pasid=P [did=D], inv pasid-cache did=D, or inv pasid-cache global";
const USAGE_IOTLB: &str =
    "inv iotlb global, inv iotlb did=D, or inv iotlb [did=D] addr=VA am=N ih=0|1";
const USAGE_CONTEXT: &str = "inv context global";
const USAGE_DEVTLB: &str = "inv devtlb [rid=BB:DD.F] [pasid=P] addr=VA [size=N|all]";
const USAGE_WAIT: &str = "wait";
const USAGE_FREE: &str = "free GPA";
const USAGE_EXPECT: &str = "expect KEY=VALUE ...";

/// Parses a scenario, checking `expect` keys with `known_key`.
pub fn parse_with(
    text: &str,
    known_key: &dyn Fn(&str) -> bool,
) -> std::result::Result<Scenario, ParseError> {
    if text.len() > MAX_SCENARIO_BYTES {
        return Err(ParseError {
            line: 0,
            kind: ParseErrorKind::TooLarge,
        });
    }
    let mut config: Option<ScenarioConfig> = None;
    let mut lines = Vec::new();
    let mut seen_command = false;
    for (index, raw) in text.lines().enumerate() {
        let number = index.saturating_add(1);
        let content = match raw.find('#') {
            Some(pos) => raw.get(..pos).unwrap_or(""),
            None => raw,
        };
        let tokens: Vec<&str> = content.split_whitespace().collect();
        let Some((&first, rest)) = tokens.split_first() else {
            continue;
        };
        let at = |kind| ParseError { line: number, kind };
        if first == "config" {
            if seen_command {
                return Err(at(ParseErrorKind::ConfigNotFirst));
            }
            seen_command = true;
            config = Some(parse_config(rest).map_err(at)?);
            continue;
        }
        seen_command = true;
        let cfg = config.unwrap_or_default();
        let command = parse_command(first, rest, &cfg, known_key).map_err(at)?;
        lines.push(Line { number, command });
    }
    Ok(Scenario {
        config: config.unwrap_or_default(),
        lines,
    })
}

fn parse_command(
    first: &str,
    rest: &[&str],
    cfg: &ScenarioConfig,
    known_key: &dyn Fn(&str) -> bool,
) -> Result<Command> {
    match first {
        "write" => {
            let [gpa, value] = positional::<2>(rest, USAGE_WRITE)?;
            let gpa = parse_number("GPA", gpa)?;
            let value = parse_number("VALUE", value)?;
            check_below_harness("GPA", gpa, 8, cfg)?;
            Ok(Command::Write { gpa, value })
        }
        "table" => {
            let [gpa, index, value] = positional::<3>(rest, USAGE_TABLE)?;
            let gpa = parse_number("GPA", gpa)?;
            let index = parse_number("INDEX", index)?;
            let value = parse_number("VALUE", value)?;
            check_aligned("GPA", gpa, PAGE_SIZE)?;
            check_below_harness("GPA", gpa, PAGE_SIZE, cfg)?;
            let index = in_range("INDEX", index, TABLE_ENTRIES - 1, "0..=511")?;
            let index = u16::try_from(index).map_err(|_| ParseErrorKind::OutOfRange {
                what: "INDEX",
                found: index,
                range: "0..=511",
            })?;
            Ok(Command::Table { gpa, index, value })
        }
        "bind" => {
            let args = Args::new(
                "bind",
                USAGE_BIND,
                rest,
                &["pasid", "pgd", "did", "sre", "rid"],
                &[],
            )?;
            let pasid = args.pasid()?;
            let pgd = args.required_number("pgd")?;
            check_aligned("pgd", pgd, PAGE_SIZE)?;
            check_below_harness("pgd", pgd, PAGE_SIZE, cfg)?;
            let did = args.did()?;
            let sre = args.flag("sre")?;
            let rid = args.rid()?;
            Ok(Command::Bind {
                pasid,
                pgd,
                did,
                sre,
                rid,
            })
        }
        "dma" => {
            let args = Args::new(
                "dma",
                USAGE_DMA,
                rest,
                &["pasid", "addr", "access", "priv", "rid"],
                &[],
            )?;
            let pasid = args.pasid()?;
            let addr = args.required_number("addr")?;
            let access = match args.required("access")? {
                "r" => Access::Read,
                "w" => Access::Write,
                "x" => Access::Execute,
                other => {
                    return Err(ParseErrorKind::BadValue {
                        what: "access",
                        found: other.to_string(),
                        expected: "r, w or x",
                    });
                }
            };
            let privileged = args.flag("priv")?;
            let rid = args.rid()?;
            Ok(Command::Dma {
                pasid,
                addr,
                access,
                privileged,
                rid,
            })
        }
        "walk" => {
            let args = Args::new("walk", USAGE_WALK, rest, &["pasid", "addr", "rid"], &[])?;
            let pasid = args.pasid()?;
            let addr = args.required_number("addr")?;
            let rid = args.rid()?;
            Ok(Command::Walk { pasid, addr, rid })
        }
        "inv" => parse_inv(rest).map(Command::Inv),
        "wait" => {
            positional::<0>(rest, USAGE_WAIT)?;
            Ok(Command::Wait)
        }
        "free" => {
            let [gpa] = positional::<1>(rest, USAGE_FREE)?;
            // The hint names a page: the page containing GPA.
            let gpa = parse_number("GPA", gpa)? & !(PAGE_SIZE - 1);
            Ok(Command::Free { gpa })
        }
        "expect" => parse_expect(rest, known_key),
        other => Err(ParseErrorKind::UnknownCommand(other.to_string())),
    }
}

fn parse_config(rest: &[&str]) -> Result<ScenarioConfig> {
    let args = Args::new(
        "config",
        USAGE_CONFIG,
        rest,
        &["mem", "levels", "cache", "check"],
        &[],
    )?;
    let mut config = ScenarioConfig::default();
    if let Some(mem) = args.optional("mem") {
        let mem = parse_size("mem", mem)?;
        if !(MIN_MEM..=MAX_MEM).contains(&mem) {
            return Err(ParseErrorKind::OutOfRange {
                what: "mem",
                found: mem,
                range: "2M..=64G",
            });
        }
        check_aligned("mem", mem, PAGE_SIZE)?;
        config.mem = mem;
    }
    if let Some(levels) = args.optional("levels") {
        config.levels = match levels {
            "4" => 4,
            "5" => 5,
            other => {
                return Err(ParseErrorKind::BadValue {
                    what: "levels",
                    found: other.to_string(),
                    expected: "4 or 5",
                });
            }
        };
    }
    if let Some(cache) = args.optional("cache") {
        config.cache = match cache {
            "adversarial" => CachePolicy::Adversarial,
            "none" => CachePolicy::None,
            other => match other.strip_prefix("lru:") {
                Some(n) => {
                    let n = parse_number("cache=lru:N", n)?;
                    if n == 0 || n > u64::from(MAX_LRU_ENTRIES) {
                        return Err(ParseErrorKind::OutOfRange {
                            what: "cache=lru:N",
                            found: n,
                            range: "1..=1048576",
                        });
                    }
                    CachePolicy::Lru(u32::try_from(n).unwrap_or(MAX_LRU_ENTRIES))
                }
                None => {
                    return Err(ParseErrorKind::BadValue {
                        what: "cache",
                        found: other.to_string(),
                        expected: "adversarial, lru:N or none",
                    });
                }
            },
        };
    }
    if let Some(check) = args.optional("check") {
        config.check = match check {
            "all" => CheckMode::All,
            "off" => CheckMode::Off,
            other => {
                return Err(ParseErrorKind::BadValue {
                    what: "check",
                    found: other.to_string(),
                    expected: "all or off",
                });
            }
        };
    }
    Ok(config)
}

fn parse_inv(rest: &[&str]) -> Result<Invalidation> {
    let Some((&kind, rest)) = rest.split_first() else {
        return Err(ParseErrorKind::UnknownInvalidation(String::new()));
    };
    match kind {
        "piotlb" => {
            let args = Args::new(
                "inv piotlb",
                USAGE_PIOTLB,
                rest,
                &["pasid", "did", "addr", "am", "ih"],
                &["all"],
            )?;
            let pasid = args.pasid()?;
            let did = args.did()?;
            if args.word("all") {
                if args.has_any(&["addr", "am", "ih"]) {
                    return Err(ParseErrorKind::BadCombination {
                        problem: "`all` takes no addr=, am= or ih=",
                        usage: USAGE_PIOTLB,
                    });
                }
                return Ok(Invalidation::PiotlbPasid { pasid, did });
            }
            // Bits 11:0 of the descriptor's address quadword hold IH and AM:
            // the invalidation names the page containing VA.
            let addr = args.required_number("addr")? & !(PAGE_SIZE - 1);
            let am = in_range("am", args.required_number("am")?, MAX_AM, "0..=52")?;
            let am = u8::try_from(am).unwrap_or(0);
            let ih = args.required_flag("ih")?;
            Ok(Invalidation::PiotlbPage {
                pasid,
                did,
                addr,
                am,
                ih,
            })
        }
        "pasid-cache" => {
            let args = Args::new(
                "inv pasid-cache",
                USAGE_PASID_CACHE,
                rest,
                &["pasid", "did"],
                &["global"],
            )?;
            match (
                args.word("global"),
                args.has_any(&["pasid"]),
                args.has_any(&["did"]),
            ) {
                (true, false, false) => Ok(Invalidation::PasidCacheGlobal),
                (true, _, _) => Err(ParseErrorKind::BadCombination {
                    problem: "`global` takes no pasid= or did=",
                    usage: USAGE_PASID_CACHE,
                }),
                (false, true, _) => Ok(Invalidation::PasidCache {
                    pasid: args.pasid()?,
                    did: args.did()?,
                }),
                (false, false, true) => Ok(Invalidation::PasidCacheDomain { did: args.did()? }),
                (false, false, false) => Err(ParseErrorKind::BadCombination {
                    problem: "`inv pasid-cache` needs `pasid=`, `did=` or `global`",
                    usage: USAGE_PASID_CACHE,
                }),
            }
        }
        "iotlb" => {
            let args = Args::new(
                "inv iotlb",
                USAGE_IOTLB,
                rest,
                &["did", "addr", "am", "ih"],
                &["global"],
            )?;
            let global = args.word("global");
            let page = args.has_any(&["addr", "am", "ih"]);
            match (global, page, args.has_any(&["did"])) {
                (true, false, false) => Ok(Invalidation::IotlbGlobal),
                (true, _, _) => Err(ParseErrorKind::BadCombination {
                    problem: "`global` takes no did=, addr=, am= or ih=",
                    usage: USAGE_IOTLB,
                }),
                (false, true, _) => {
                    // As for `inv piotlb`: bits 11:0 hold IH and AM.
                    let addr = args.required_number("addr")? & !(PAGE_SIZE - 1);
                    let am = in_range("am", args.required_number("am")?, MAX_AM, "0..=52")?;
                    Ok(Invalidation::IotlbPage {
                        did: args.did()?,
                        addr,
                        am: u8::try_from(am).unwrap_or(0),
                        ih: args.required_flag("ih")?,
                    })
                }
                (false, false, true) => Ok(Invalidation::IotlbDomain { did: args.did()? }),
                (false, false, false) => Err(ParseErrorKind::BadCombination {
                    problem: "`inv iotlb` needs `global`, `did=` or `addr= am= ih=`",
                    usage: USAGE_IOTLB,
                }),
            }
        }
        "context" => {
            let args = Args::new("inv context", USAGE_CONTEXT, rest, &[], &["global"])?;
            if args.word("global") {
                Ok(Invalidation::ContextGlobal)
            } else {
                Err(ParseErrorKind::BadCombination {
                    problem: "`inv context` needs `global`",
                    usage: USAGE_CONTEXT,
                })
            }
        }
        "devtlb" => {
            let args = Args::new(
                "inv devtlb",
                USAGE_DEVTLB,
                rest,
                &["rid", "pasid", "addr", "size"],
                &[],
            )?;
            let rid = args.rid()?;
            let pasid = if args.has_any(&["pasid"]) {
                Some(args.pasid()?)
            } else {
                None
            };
            let size = match args.optional("size") {
                None => DevtlbSize::Pages { order: 0 },
                Some("all") => DevtlbSize::All,
                Some(text) => {
                    let bytes = parse_size("size", text)?;
                    if !bytes.is_power_of_two() || bytes < PAGE_SIZE {
                        return Err(ParseErrorKind::OutOfRange {
                            what: "size",
                            found: bytes,
                            range: "a power of two >= 4096, or all",
                        });
                    }
                    let order = bytes.trailing_zeros().saturating_sub(12);
                    DevtlbSize::Pages {
                        order: u8::try_from(order).unwrap_or(0),
                    }
                }
            };
            let addr = match (size, args.optional("addr")) {
                (_, Some(text)) => parse_number("addr", text)?,
                (DevtlbSize::All, None) => 0,
                (DevtlbSize::Pages { .. }, None) => {
                    return Err(ParseErrorKind::MissingKey {
                        command: "inv devtlb",
                        key: "addr",
                        usage: USAGE_DEVTLB,
                    });
                }
            };
            // The ATS size encoding names an aligned block: the one
            // containing VA.
            let addr = match size {
                DevtlbSize::Pages { order } => addr & !((PAGE_SIZE << order) - 1),
                DevtlbSize::All => 0,
            };
            Ok(Invalidation::Devtlb {
                rid,
                pasid,
                addr,
                size,
            })
        }
        other => Err(ParseErrorKind::UnknownInvalidation(other.to_string())),
    }
}

fn parse_expect(rest: &[&str], known_key: &dyn Fn(&str) -> bool) -> Result<Command> {
    if rest.is_empty() {
        return Err(ParseErrorKind::EmptyExpect);
    }
    let mut seen = HashSet::new();
    let mut pairs = Vec::with_capacity(rest.len());
    for token in rest {
        let Some((key, value)) = split_pair(token) else {
            return Err(ParseErrorKind::UnexpectedWord {
                found: (*token).to_string(),
                usage: USAGE_EXPECT,
            });
        };
        if !seen.insert(key) {
            return Err(ParseErrorKind::DuplicateKey(key.to_string()));
        }
        if !known_key(key) {
            return Err(ParseErrorKind::UnknownReportKey(key.to_string()));
        }
        let value = parse_number("expect value", value)?;
        pairs.push((key.to_string(), value));
    }
    Ok(Command::Expect(pairs))
}

/// Splits `key=value` with both sides non-empty.
fn split_pair(token: &str) -> Option<(&str, &str)> {
    let (key, value) = token.split_once('=')?;
    if key.is_empty() || value.is_empty() {
        None
    } else {
        Some((key, value))
    }
}

/// Exactly N positional arguments, none of them `key=value`.
fn positional<'a, const N: usize>(rest: &[&'a str], usage: &'static str) -> Result<[&'a str; N]> {
    <[&str; N]>::try_from(rest).map_err(|_| ParseErrorKind::WrongArgumentCount { usage })
}

/// The `key=value` and bare-word arguments of a command.
struct Args<'a> {
    command: &'static str,
    usage: &'static str,
    pairs: Vec<(&'a str, &'a str)>,
    words: Vec<&'a str>,
}

impl<'a> Args<'a> {
    fn new(
        command: &'static str,
        usage: &'static str,
        tokens: &[&'a str],
        keys: &[&str],
        words: &[&str],
    ) -> Result<Self> {
        let mut args = Args {
            command,
            usage,
            pairs: Vec::new(),
            words: Vec::new(),
        };
        for &token in tokens {
            if let Some((key, value)) = split_pair(token) {
                if !keys.contains(&key) {
                    return Err(ParseErrorKind::UnknownKey {
                        command,
                        key: key.to_string(),
                        usage,
                    });
                }
                if args.pairs.iter().any(|(k, _)| *k == key) {
                    return Err(ParseErrorKind::DuplicateKey(key.to_string()));
                }
                args.pairs.push((key, value));
            } else if words.contains(&token) {
                if args.words.contains(&token) {
                    return Err(ParseErrorKind::DuplicateKey(token.to_string()));
                }
                args.words.push(token);
            } else {
                return Err(ParseErrorKind::UnexpectedWord {
                    found: token.to_string(),
                    usage,
                });
            }
        }
        Ok(args)
    }

    fn optional(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn has_any(&self, keys: &[&str]) -> bool {
        self.pairs.iter().any(|(k, _)| keys.contains(k))
    }

    fn word(&self, word: &str) -> bool {
        self.words.contains(&word)
    }

    fn required(&self, key: &'static str) -> Result<&'a str> {
        self.optional(key).ok_or(ParseErrorKind::MissingKey {
            command: self.command,
            key,
            usage: self.usage,
        })
    }

    fn required_number(&self, key: &'static str) -> Result<u64> {
        parse_number(key, self.required(key)?)
    }

    fn pasid(&self) -> Result<u32> {
        let pasid = in_range(
            "pasid",
            self.required_number("pasid")?,
            MAX_PASID,
            "0..=0xfffff",
        )?;
        Ok(u32::try_from(pasid).unwrap_or(0))
    }

    fn did(&self) -> Result<u16> {
        match self.optional("did") {
            None => Ok(DEFAULT_DID),
            Some(text) => {
                let did = in_range("did", parse_number("did", text)?, MAX_DID, "0..=0xffff")?;
                Ok(u16::try_from(did).unwrap_or(0))
            }
        }
    }

    fn flag(&self, key: &'static str) -> Result<bool> {
        match self.optional(key) {
            None => Ok(false),
            Some(text) => parse_flag(key, text),
        }
    }

    fn required_flag(&self, key: &'static str) -> Result<bool> {
        parse_flag(key, self.required(key)?)
    }

    fn rid(&self) -> Result<Rid> {
        match self.optional("rid") {
            None => Ok(DEFAULT_RID),
            Some(text) => parse_rid(text),
        }
    }
}

fn parse_flag(what: &'static str, text: &str) -> Result<bool> {
    match text {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(ParseErrorKind::BadValue {
            what,
            found: other.to_string(),
            expected: "0 or 1",
        }),
    }
}

/// A decimal or `0x` hexadecimal u64.
pub fn parse_number(what: &'static str, text: &str) -> Result<u64> {
    let bad = || ParseErrorKind::BadNumber {
        what,
        found: text.to_string(),
    };
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    // from_str_radix accepts a leading sign; the language does not.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    u64::from_str_radix(digits, radix).map_err(|_| bad())
}

/// A size: a number with an optional `K`, `M` or `G` suffix (powers of 1024,
/// either case).
pub fn parse_size(what: &'static str, text: &str) -> Result<u64> {
    let (number, shift) = match text.char_indices().last() {
        Some((pos, 'k' | 'K')) => (text.get(..pos).unwrap_or(""), 10),
        Some((pos, 'm' | 'M')) => (text.get(..pos).unwrap_or(""), 20),
        Some((pos, 'g' | 'G')) => (text.get(..pos).unwrap_or(""), 30),
        _ => (text, 0),
    };
    let value = parse_number(what, number)?;
    value
        .checked_mul(1u64 << shift)
        .ok_or(ParseErrorKind::BadNumber {
            what,
            found: text.to_string(),
        })
}

/// A requester id `BB:DD.F` (hexadecimal bus and device, function 0..=7).
pub fn parse_rid(text: &str) -> Result<Rid> {
    let bad = || ParseErrorKind::BadValue {
        what: "rid",
        found: text.to_string(),
        expected: "BB:DD.F (hex bus 00..ff, device 00..1f, function 0..7)",
    };
    let (bus, rest) = text.split_once(':').ok_or_else(bad)?;
    let (device, function) = rest.split_once('.').ok_or_else(bad)?;
    let hex = |s: &str, max_len: usize| -> Option<u8> {
        if s.is_empty() || s.len() > max_len || !s.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u8::from_str_radix(s, 16).ok()
    };
    let bus = hex(bus, 2).ok_or_else(bad)?;
    let device = hex(device, 2).filter(|d| *d <= 0x1f).ok_or_else(bad)?;
    let function = hex(function, 1).filter(|f| *f <= 7).ok_or_else(bad)?;
    Ok(Rid {
        bus,
        device,
        function,
    })
}

fn in_range(what: &'static str, value: u64, max: u64, range: &'static str) -> Result<u64> {
    if value > max {
        Err(ParseErrorKind::OutOfRange {
            what,
            found: value,
            range,
        })
    } else {
        Ok(value)
    }
}

fn check_aligned(what: &'static str, value: u64, align: u64) -> Result<()> {
    if align != 0 && value % align != 0 {
        Err(ParseErrorKind::NotAligned {
            what,
            found: value,
            align,
        })
    } else {
        Ok(())
    }
}

/// `[start, start + len)` must end at or below the harness area.
fn check_below_harness(
    what: &'static str,
    start: u64,
    len: u64,
    cfg: &ScenarioConfig,
) -> Result<()> {
    let limit = cfg.harness_base();
    match start.checked_add(len) {
        Some(end) if end <= limit => Ok(()),
        end => Err(ParseErrorKind::OutsideScenarioMemory {
            what,
            start,
            end: end.unwrap_or(u64::MAX),
            limit,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_key(key: &str) -> bool {
        matches!(key, "translations" | "stale_walks.reused" | "faults")
    }

    fn parse(text: &str) -> std::result::Result<Scenario, ParseError> {
        parse_with(text, &any_key)
    }

    fn one(text: &str) -> Command {
        let scenario = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(scenario.lines.len(), 1, "{text}");
        scenario.lines[0].command.clone()
    }

    fn err(text: &str) -> ParseError {
        match parse(text) {
            Ok(s) => panic!("{text}: parsed as {s:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_without_config() {
        let s = parse("# nothing\n\n   \n").unwrap();
        assert_eq!(s.config, ScenarioConfig::default());
        assert_eq!(s.config.mem, 64 << 20);
        assert_eq!(s.config.levels, 4);
        assert_eq!(s.config.cache, CachePolicy::Adversarial);
        assert_eq!(s.config.check, CheckMode::All);
        assert!(s.lines.is_empty());
    }

    #[test]
    fn config_values() {
        let s =
            parse("# header\nconfig mem=1G levels=5 cache=lru:8 check=off # trailing\n").unwrap();
        assert_eq!(
            s.config,
            ScenarioConfig {
                mem: 1 << 30,
                levels: 5,
                cache: CachePolicy::Lru(8),
                check: CheckMode::Off
            }
        );
        assert_eq!(
            parse("config cache=none").unwrap().config.cache,
            CachePolicy::None
        );
        assert_eq!(parse("config mem=0x200000").unwrap().config.mem, 0x20_0000);
        assert_eq!(parse("config mem=4194304").unwrap().config.mem, 4 << 20);
        assert_eq!(parse("config mem=4096k").unwrap().config.mem, 4 << 20);
        assert_eq!(parse("config").unwrap().config, ScenarioConfig::default());
    }

    #[test]
    fn reject_config_not_first() {
        let e = err("wait\nconfig mem=64M\n");
        assert_eq!(e.line, 2);
        assert_eq!(e.kind, ParseErrorKind::ConfigNotFirst);
        assert_eq!(err("config\nconfig\n").kind, ParseErrorKind::ConfigNotFirst);
    }

    #[test]
    fn reject_bad_config_values() {
        for text in [
            "config mem=1M",
            "config mem=4096",
            "config mem=65G",
            "config mem=0x200001",
            "config mem=64X",
            "config mem=",
            "config levels=3",
            "config cache=lru:0",
            "config cache=lru:",
            "config cache=lru:x",
            "config cache=fifo",
            "config check=sampled",
            "config mem=64M mem=64M",
            "config size=1",
            "config fast",
            "config mem=0xffffffffffffffffG",
        ] {
            assert_eq!(err(text).line, 1, "{text}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("n", "0").unwrap(), 0);
        assert_eq!(parse_number("n", "0x10").unwrap(), 16);
        assert_eq!(parse_number("n", "0XfF").unwrap(), 255);
        assert_eq!(parse_number("n", "010").unwrap(), 10);
        assert_eq!(parse_number("n", "18446744073709551615").unwrap(), u64::MAX);
        assert_eq!(parse_number("n", "0xffffffffffffffff").unwrap(), u64::MAX);
        for bad in [
            "",
            "0x",
            "-1",
            "+1",
            "1_000",
            "0x1g",
            "18446744073709551616",
            "0x10000000000000000",
            "1.0",
            "٣",
        ] {
            assert!(parse_number("n", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rids() {
        assert_eq!(parse_rid("00:04.0").unwrap(), DEFAULT_RID);
        let rid = parse_rid("ff:1f.7").unwrap();
        assert_eq!(rid.source_id(), 0xffff);
        assert_eq!(rid.to_string(), "ff:1f.7");
        assert_eq!(parse_rid("1:2.3").unwrap().source_id(), 0x0113);
        for bad in [
            "", "00:04", "00.04:0", "00:20.0", "00:04.8", "100:00.0", "0g:00.0", ":.", "00:04.00",
        ] {
            assert!(parse_rid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands() {
        assert_eq!(
            one("write 0x1000 0x1234567 # c"),
            Command::Write {
                gpa: 0x1000,
                value: 0x1234567
            }
        );
        assert_eq!(
            one("write 0x1003 7"),
            Command::Write {
                gpa: 0x1003,
                value: 7
            }
        );
        assert_eq!(
            one("table 0x2000 511 0x3003"),
            Command::Table {
                gpa: 0x2000,
                index: 511,
                value: 0x3003
            }
        );
        assert_eq!(
            one("bind pasid=1 pgd=0x1000"),
            Command::Bind {
                pasid: 1,
                pgd: 0x1000,
                did: 1,
                sre: false,
                rid: DEFAULT_RID
            }
        );
        assert_eq!(
            one("bind rid=00:05.1 sre=1 did=0x22 pgd=0x2000 pasid=0xfffff"),
            Command::Bind {
                pasid: 0xfffff,
                pgd: 0x2000,
                did: 0x22,
                sre: true,
                rid: Rid {
                    bus: 0,
                    device: 5,
                    function: 1
                }
            }
        );
        assert_eq!(
            one("dma pasid=2 addr=0xffff888000001234 access=w priv=1"),
            Command::Dma {
                pasid: 2,
                addr: 0xffff_8880_0000_1234,
                access: Access::Write,
                privileged: true,
                rid: DEFAULT_RID
            }
        );
        assert_eq!(
            one("walk pasid=2 addr=0x400000 rid=01:00.0"),
            Command::Walk {
                pasid: 2,
                addr: 0x40_0000,
                rid: Rid {
                    bus: 1,
                    device: 0,
                    function: 0
                }
            }
        );
        assert_eq!(one("wait"), Command::Wait);
        assert_eq!(one("free 0x5000"), Command::Free { gpa: 0x5000 });
        assert_eq!(one("free 0x5fff"), Command::Free { gpa: 0x5000 });
        assert_eq!(
            one("expect translations=3 stale_walks.reused=0x1"),
            Command::Expect(vec![
                ("translations".to_string(), 3),
                ("stale_walks.reused".to_string(), 1)
            ])
        );
    }

    #[test]
    fn invalidations() {
        let inv = |text| match one(text) {
            Command::Inv(inv) => inv,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            inv("inv piotlb pasid=1 addr=0xffff888000000000 am=9 ih=0"),
            Invalidation::PiotlbPage {
                pasid: 1,
                did: 1,
                addr: 0xffff_8880_0000_0000,
                am: 9,
                ih: false
            }
        );
        assert_eq!(
            inv("inv piotlb pasid=1 did=3 addr=0 am=52 ih=1"),
            Invalidation::PiotlbPage {
                pasid: 1,
                did: 3,
                addr: 0,
                am: 52,
                ih: true
            }
        );
        assert_eq!(
            inv("inv piotlb pasid=1 addr=0x1803 am=0 ih=0"),
            Invalidation::PiotlbPage {
                pasid: 1,
                did: 1,
                addr: 0x1000,
                am: 0,
                ih: false
            }
        );
        assert_eq!(
            inv("inv devtlb addr=0x3000 size=8K"),
            Invalidation::Devtlb {
                rid: DEFAULT_RID,
                pasid: None,
                addr: 0x2000,
                size: DevtlbSize::Pages { order: 1 }
            }
        );
        assert_eq!(
            inv("inv devtlb addr=0x3000 size=all"),
            Invalidation::Devtlb {
                rid: DEFAULT_RID,
                pasid: None,
                addr: 0,
                size: DevtlbSize::All
            }
        );
        assert_eq!(
            inv("inv piotlb pasid=7 all"),
            Invalidation::PiotlbPasid { pasid: 7, did: 1 }
        );
        assert_eq!(
            inv("inv pasid-cache pasid=7 did=2"),
            Invalidation::PasidCache { pasid: 7, did: 2 }
        );
        assert_eq!(
            inv("inv pasid-cache did=4"),
            Invalidation::PasidCacheDomain { did: 4 }
        );
        assert_eq!(
            inv("inv pasid-cache global"),
            Invalidation::PasidCacheGlobal
        );
        assert_eq!(
            inv("inv iotlb did=3 addr=0xffff888000001234 am=9 ih=1"),
            Invalidation::IotlbPage {
                did: 3,
                addr: 0xffff_8880_0000_1000,
                am: 9,
                ih: true
            }
        );
        assert_eq!(
            inv("inv iotlb addr=0 am=52 ih=0"),
            Invalidation::IotlbPage {
                did: 1,
                addr: 0,
                am: 52,
                ih: false
            }
        );
        assert_eq!(inv("inv iotlb global"), Invalidation::IotlbGlobal);
        assert_eq!(inv("inv iotlb did=9"), Invalidation::IotlbDomain { did: 9 });
        assert_eq!(inv("inv context global"), Invalidation::ContextGlobal);
        assert_eq!(
            inv("inv devtlb addr=0x1000"),
            Invalidation::Devtlb {
                rid: DEFAULT_RID,
                pasid: None,
                addr: 0x1000,
                size: DevtlbSize::Pages { order: 0 }
            }
        );
        assert_eq!(
            inv("inv devtlb rid=00:05.0 pasid=3 addr=0x200000 size=2M"),
            Invalidation::Devtlb {
                rid: Rid {
                    bus: 0,
                    device: 5,
                    function: 0
                },
                pasid: Some(3),
                addr: 0x20_0000,
                size: DevtlbSize::Pages { order: 9 }
            }
        );
        assert_eq!(
            inv("inv devtlb pasid=3 size=all"),
            Invalidation::Devtlb {
                rid: DEFAULT_RID,
                pasid: Some(3),
                addr: 0,
                size: DevtlbSize::All
            }
        );
    }

    #[test]
    fn reject_malformed_lines() {
        let cases = [
            "frobnicate",
            "write",
            "write 0x1000",
            "write 0x1000 1 2",
            "write addr=0x1000 1",
            "write 0x1000 -1",
            "table 0x1000 512 0",
            "table 0x1001 0 0",
            "table 0x1000 0",
            "bind pgd=0x1000",
            "bind pasid=1",
            "bind pasid=1 pgd=0x1001",
            "bind pasid=0x100000 pgd=0x1000",
            "bind pasid=1 pgd=0x1000 did=0x10000",
            "bind pasid=1 pgd=0x1000 sre=2",
            "bind pasid=1 pgd=0x1000 rid=00:04",
            "bind pasid=1 pgd=0x1000 pasid=2",
            "bind pasid=1 pgd=0x1000 colour=red",
            "bind pasid=1 pgd=0x1000 extra",
            "bind pasid=1 pgd=",
            "bind pasid=1 =0x1000",
            "dma pasid=1 addr=0x1000",
            "dma pasid=1 addr=0x1000 access=rw",
            "dma pasid=1 addr=0x1000 access=r priv=yes",
            "dma pasid=1 access=r",
            "walk addr=0",
            "walk pasid=1 addr=0 access=r",
            "inv",
            "inv tlb",
            "inv piotlb pasid=1",
            "inv piotlb pasid=1 addr=0x1000 am=0",
            "inv piotlb pasid=1 addr=0x1000 ih=0",
            "inv piotlb addr=0x1000 am=0 ih=0",
            "inv piotlb pasid=1 addr=0x1000 am=53 ih=0",
            "inv piotlb pasid=1 addr=0x1000 am=0 ih=2",
            "inv piotlb pasid=1 all addr=0x1000",
            "inv piotlb pasid=1 all all",
            "inv pasid-cache",
            "inv pasid-cache pasid=1 addr=0",
            "inv iotlb",
            "inv iotlb global did=1",
            "inv iotlb global addr=0 am=0 ih=0",
            "inv iotlb did=1 addr=0 am=0",
            "inv iotlb did=1 addr=0 am=53 ih=0",
            "inv iotlb am=0 ih=0",
            "inv pasid-cache global did=1",
            "inv pasid-cache global pasid=1",
            "inv pasid-cache did=1 global global",
            "inv iotlb pasid=1",
            "inv context",
            "inv context did=1",
            "inv devtlb",
            "inv devtlb addr=0x1000 size=3000",
            "inv devtlb addr=0x1000 size=2048",
            "inv devtlb pasid=0x100000 addr=0",
            "wait now",
            "free",
            "expect",
            "expect translations",
            "expect translations=1 translations=2",
            "expect nope=1",
            "expect translations=x",
            "expect =1",
        ];
        for text in cases {
            let e = err(&format!("# comment\n\n{text}\n"));
            assert_eq!(e.line, 3, "{text}: {e}");
            assert!(e.to_string().starts_with("line 3: "), "{text}: {e}");
        }
    }

    #[test]
    fn reject_writes_into_harness_area() {
        // Default mem = 64 MiB: harness area starts at 63 MiB.
        let limit = (64u64 << 20) - (1 << 20);
        assert!(parse(&format!("write {:#x} 1", limit - 8)).is_ok());
        for text in [
            format!("write {:#x} 1", limit - 7),
            format!("write {:#x} 1", limit),
            format!("table {:#x} 0 1", limit),
            format!("bind pasid=1 pgd={limit:#x}"),
            "write 0xfffffffffffffffc 1".to_string(),
            "table 0xfffffffffffff000 0 1".to_string(),
        ] {
            let e = err(&text);
            assert!(
                matches!(e.kind, ParseErrorKind::OutsideScenarioMemory { .. }),
                "{text}: {e}"
            );
        }
        // The limit follows mem=.
        let e = err("config mem=2M\ntable 0x100000 0 1\n");
        assert_eq!(e.line, 2);
        assert!(parse("config mem=2M\ntable 0xff000 0 1\n").is_ok());
    }

    #[test]
    fn line_numbers_count_every_line() {
        let s = parse("config\n# c\n\nwait # x\n  wait\n").unwrap();
        let numbers: Vec<usize> = s.lines.iter().map(|l| l.number).collect();
        assert_eq!(numbers, vec![4, 5]);
    }

    #[test]
    fn comment_anywhere() {
        assert_eq!(one("wait#comment"), Command::Wait);
        assert_eq!(one("free 0x1000#x"), Command::Free { gpa: 0x1000 });
        assert!(parse("# only\n#\n").unwrap().lines.is_empty());
    }

    #[test]
    fn reject_oversized_text() {
        let text = " ".repeat(MAX_SCENARIO_BYTES + 1);
        assert_eq!(err(&text).kind, ParseErrorKind::TooLarge);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn random_text_never_panics(text in "\\PC{0,200}") {
                let _ = parse(&text);
            }

            #[test]
            fn random_command_like_lines_never_panic(
                lines in proptest::collection::vec(
                    "(config|write|table|bind|dma|walk|inv|wait|free|expect|piotlb|all|global)?( [a-z.\\-]{0,6}=?(0x)?[0-9a-fA-FxMGK:.]{0,20}){0,5}( #.*)?",
                    0..20,
                )
            ) {
                let text = lines.join("\n");
                if let Err(e) = parse(&text) {
                    prop_assert!(e.line >= 1 && e.line <= lines.len().max(1));
                }
            }
        }
    }
}
