//! Model configuration: which VT-d capabilities the unit reports (CAP and
//! ECAP), how many first-stage paging levels it supports, which cache policy
//! the paging-structure caches follow and how often the stale-walk checker
//! runs. The register values are derived here so that the register file and
//! the walker agree on them.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

use serde::Serialize;

/// Largest `lru:N` capacity accepted, per cache. A bound on host memory that
/// a configuration (not the guest) can ask for.
pub const MAX_LRU_ENTRIES: usize = 1 << 20;

/// Most fault recording registers: they must fit in the 4-KiB register block
/// after [`FAULT_RECORD_OFFSET`].
pub const MAX_FAULT_RECORDS: u16 = 224;
const _: () = assert!(FAULT_RECORD_OFFSET + 16 * MAX_FAULT_RECORDS as u64 <= 4096);

/// Number of fault recording registers when the configuration does not say.
pub const DEFAULT_FAULT_RECORDS: u8 = 8;

/// Errors parsing configuration strings.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The cache policy string is not `adversarial`, `lru:N` or `none`.
    #[error("unknown cache policy {0:?}: expected adversarial, lru:N (1..={max}) or none", max = MAX_LRU_ENTRIES)]
    CachePolicy(String),
    /// The checker mode string is not `all`, `sampled` or `off`.
    #[error("unknown checker mode {0:?}: expected all, sampled or off")]
    CheckMode(String),
    /// The paging level count is not 4 or 5.
    #[error("unsupported paging levels {0}: expected 4 or 5")]
    Levels(u32),
    /// The number of fault recording registers is out of range.
    #[error("unsupported fault record count {0}: expected 1..={max}", max = MAX_FAULT_RECORDS)]
    FaultRecords(u32),
}

/// First-stage paging depth the unit supports (4-level, or 5-level with FL5LP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Levels {
    /// 4-level paging (48-bit input addresses, MGAW 47).
    Four,
    /// 5-level paging (57-bit input addresses, MGAW 56, FL5LP).
    Five,
}

impl Levels {
    /// The level count as a number.
    pub fn count(self) -> u8 {
        match self {
            Levels::Four => 4,
            Levels::Five => 5,
        }
    }

    /// The lowest kernel-half address: what `kva_invalidations` counts.
    pub fn kernel_half_start(self) -> u64 {
        match self {
            Levels::Four => 0xffff_8000_0000_0000,
            Levels::Five => 0xff00_0000_0000_0000,
        }
    }
}

impl TryFrom<u32> for Levels {
    type Error = ConfigError;
    fn try_from(v: u32) -> Result<Self, ConfigError> {
        match v {
            4 => Ok(Levels::Four),
            5 => Ok(Levels::Five),
            other => Err(ConfigError::Levels(other)),
        }
    }
}

impl FromStr for Levels {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let n: u32 = s.trim().parse().map_err(|_| ConfigError::Levels(0))?;
        Levels::try_from(n)
    }
}

/// What the context, PASID, IOTLB and paging-structure caches keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Cache every present non-leaf entry any walk reads (including walks
    /// that fault and speculative walks), every successful leaf, and never
    /// evict unless invalidated. Real hardware may do all of that.
    Adversarial,
    /// At most N entries per cache, least recently used evicted first.
    Lru(NonZeroUsize),
    /// Cache nothing: every translation walks memory.
    None,
}

impl FromStr for CachePolicy {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::CachePolicy(s.to_string());
        match s.trim() {
            "adversarial" => Ok(CachePolicy::Adversarial),
            "none" => Ok(CachePolicy::None),
            other => {
                let n = other.strip_prefix("lru:").ok_or_else(bad)?;
                let n: usize = n.parse().map_err(|_| bad())?;
                if n > MAX_LRU_ENTRIES {
                    return Err(bad());
                }
                NonZeroUsize::new(n).map(CachePolicy::Lru).ok_or_else(bad)
            }
        }
    }
}

impl fmt::Display for CachePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CachePolicy::Adversarial => write!(f, "adversarial"),
            CachePolicy::Lru(n) => write!(f, "lru:{n}"),
            CachePolicy::None => write!(f, "none"),
        }
    }
}

impl Serialize for CachePolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How often the stale-walk checker re-walks memory after a cache hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckMode {
    /// Every translation that used a cached entry.
    All,
    /// One in [`SAMPLE_PERIOD`](crate::checker::SAMPLE_PERIOD) of them.
    Sampled,
    /// Never.
    Off,
}

impl FromStr for CheckMode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim() {
            "all" => Ok(CheckMode::All),
            "sampled" => Ok(CheckMode::Sampled),
            "off" => Ok(CheckMode::Off),
            other => Err(ConfigError::CheckMode(other.to_string())),
        }
    }
}

impl fmt::Display for CheckMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckMode::All => "all",
            CheckMode::Sampled => "sampled",
            CheckMode::Off => "off",
        })
    }
}

/// Everything the unit is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// First-stage paging depth supported (FL5LP and MGAW follow from it).
    pub levels: Levels,
    /// Cache policy for every cache.
    pub cache: CachePolicy,
    /// Stale-walk checker mode.
    pub check: CheckMode,
    /// CAP.CM: caching mode (the guest must also invalidate after making
    /// entries present).
    pub caching_mode: bool,
    /// ECAP.PT: pass-through PASID entries allowed.
    pub pass_through: bool,
    /// ECAP.PRS (and PDS): page requests supported.
    pub page_requests: bool,
    /// CAP.FL1GP: 1-GiB first-stage pages allowed.
    pub first_level_1g: bool,
    /// Number of fault recording registers (CAP.NFR + 1), 1..=[`MAX_FAULT_RECORDS`].
    pub fault_records: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            levels: Levels::Four,
            cache: CachePolicy::Adversarial,
            check: CheckMode::All,
            caching_mode: false,
            pass_through: true,
            page_requests: true,
            first_level_1g: true,
            fault_records: u16::from(DEFAULT_FAULT_RECORDS),
        }
    }
}

/// Register offset (in bytes) of the fault recording registers.
pub const FAULT_RECORD_OFFSET: u64 = 0x200;
/// Register offset (in bytes) of the IOTLB registers (IVA, then IOTLB).
pub const IOTLB_REG_OFFSET: u64 = 0x100;
/// PASID width the unit supports (ECAP.PSS + 1).
pub const PASID_BITS: u32 = 20;

impl Config {
    /// Checks the values a caller may have set by hand.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.fault_records == 0 || self.fault_records > MAX_FAULT_RECORDS {
            return Err(ConfigError::FaultRecords(u32::from(self.fault_records)));
        }
        Ok(())
    }

    /// MGAW field value (address width minus one).
    pub fn mgaw(&self) -> u64 {
        match self.levels {
            Levels::Four => 47,
            Levels::Five => 56,
        }
    }

    /// Fault record count, clamped to the valid range.
    pub fn fault_record_count(&self) -> u16 {
        self.fault_records.clamp(1, MAX_FAULT_RECORDS)
    }

    /// The capability register.
    pub fn cap(&self) -> u64 {
        let nd = 6u64; // 2^16 domains
        let nfr = u64::from(self.fault_record_count() - 1);
        let fro = FAULT_RECORD_OFFSET / 16;
        let mut cap = nd
            | (self.mgaw() << 16)
            | (fro << 24)
            | (1 << 39) // PSI: page-selective register invalidation
            | (nfr << 40)
            | (18 << 48); // MAMV
        // SAGAW (12:8) stays 0: no second-stage translation.
        if self.caching_mode {
            cap |= 1 << 7;
        }
        if self.first_level_1g {
            cap |= 1 << 56;
        }
        if self.levels == Levels::Five {
            cap |= 1 << 60;
        }
        cap
    }

    /// The extended capability register.
    pub fn ecap(&self) -> u64 {
        let iro = IOTLB_REG_OFFSET / 16;
        let mut ecap = 1 // C
            | (1 << 1) // QI
            | (1 << 2) // DT
            | (iro << 8)
            // ERS and SRS: execute and supervisor (privileged) requests are
            // honoured (the mini guest's SVA device sends privileged ones on
            // SRE PASID entries), so the unit says so.
            | (1 << 30) // ERS
            | (1 << 31) // SRS
            | (u64::from(PASID_BITS - 1) << 35) // PSS
            | (1 << 40) // PASID
            | (1 << 43) // SMTS
            | (1 << 47) // FLTS
            | (1 << 48); // SMPWC
        if self.pass_through {
            ecap |= 1 << 6;
        }
        if self.page_requests {
            ecap |= (1 << 29) | (1 << 42); // PRS, PDS
        }
        ecap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cache_policies() {
        assert_eq!("adversarial".parse(), Ok(CachePolicy::Adversarial));
        assert_eq!("none".parse(), Ok(CachePolicy::None));
        assert_eq!(
            "lru:64".parse(),
            Ok(CachePolicy::Lru(NonZeroUsize::new(64).unwrap()))
        );
        assert_eq!(
            CachePolicy::Lru(NonZeroUsize::new(64).unwrap()).to_string(),
            "lru:64"
        );
    }

    #[test]
    fn reject_bad_cache_policies() {
        for s in ["lru:0", "lru:", "lru:x", "lru", "fifo", "lru:99999999999"] {
            let err = s.parse::<CachePolicy>().unwrap_err();
            assert!(
                err.to_string().contains("expected adversarial"),
                "{s}: {err}"
            );
        }
    }

    #[test]
    fn parse_check_modes() {
        assert_eq!("all".parse(), Ok(CheckMode::All));
        assert_eq!("sampled".parse(), Ok(CheckMode::Sampled));
        assert_eq!("off".parse(), Ok(CheckMode::Off));
        assert!("some".parse::<CheckMode>().is_err());
    }

    #[test]
    fn reject_bad_levels_and_records() {
        assert_eq!("3".parse::<Levels>(), Err(ConfigError::Levels(3)));
        let c = Config {
            fault_records: 0,
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn cap_ecap_bits_for_linux_scalable_mode() {
        let c = Config::default();
        let ecap = c.ecap();
        for bit in [0, 1, 2, 6, 29, 30, 31, 40, 42, 43, 47, 48] {
            assert_ne!(ecap & (1 << bit), 0, "ECAP bit {bit}");
        }
        assert_eq!((ecap >> 35) & 0x1f, 19);
        assert_eq!(((ecap >> 8) & 0x3ff) * 16, IOTLB_REG_OFFSET);
        assert_eq!(ecap & (1 << 46), 0, "no SLTS");
        let cap = c.cap();
        assert_eq!((cap >> 16) & 0x3f, 47);
        assert_eq!((cap >> 8) & 0x1f, 0, "SAGAW 0");
        assert_eq!(((cap >> 24) & 0x3ff) * 16, FAULT_RECORD_OFFSET);
        assert_eq!((cap >> 40) & 0xff, 7);
        assert_ne!(cap & (1 << 56), 0);
        assert_eq!(cap & (1 << 60), 0);
        assert_eq!(cap & (1 << 7), 0);
        let c5 = Config {
            levels: Levels::Five,
            caching_mode: true,
            ..Config::default()
        };
        assert_eq!((c5.cap() >> 16) & 0x3f, 56);
        assert_ne!(c5.cap() & (1 << 60), 0);
        assert_ne!(c5.cap() & (1 << 7), 0);
    }
}
