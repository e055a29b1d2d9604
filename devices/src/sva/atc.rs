//! The SVA test device's address translation cache (ATC): the results of
//! its ATS translation requests, kept until a device-TLB invalidation
//! covers them.

use std::collections::VecDeque;

use crate::dma::DevTlbInvalidation;

/// Entries the ATC holds; the oldest is dropped first when full, so a guest
/// cannot grow it without bound.
pub const ATC_CAPACITY: usize = 64;

/// One cached translation (4 KiB page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtcEntry {
    /// PASID of the request, if any.
    pub pasid: Option<u32>,
    /// Supervisor request.
    pub privileged: bool,
    /// Untranslated page address.
    pub page: u64,
    /// Translated (guest-physical) page address.
    pub translated: u64,
    /// Whether write permission was granted.
    pub write: bool,
}

/// The ATC.
#[derive(Debug, Default)]
pub struct Atc {
    entries: VecDeque<AtcEntry>,
}

impl Atc {
    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the ATC is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A cached translation usable for the access, if any.
    pub fn lookup(
        &self,
        pasid: Option<u32>,
        privileged: bool,
        page: u64,
        write: bool,
    ) -> Option<AtcEntry> {
        self.entries
            .iter()
            .find(|e| {
                e.pasid == pasid
                    && e.privileged == privileged
                    && e.page == page
                    && (e.write || !write)
            })
            .copied()
    }

    /// Inserts (replacing an entry for the same page), dropping the oldest
    /// entry when full.
    pub fn insert(&mut self, entry: AtcEntry) {
        self.entries.retain(|e| {
            !(e.pasid == entry.pasid && e.privileged == entry.privileged && e.page == entry.page)
        });
        if self.entries.len() >= ATC_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Applies a device-TLB invalidation; returns how many entries it removed.
    pub fn invalidate(&mut self, inv: &DevTlbInvalidation) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| !covers(inv, e.pasid, e.page));
        before - self.entries.len()
    }
}

/// Whether `inv` covers the 4 KiB page at `page` of `pasid`. An
/// invalidation without PASID covers entries of every PASID (as in the
/// PCIe ATS specification); a range overlapping the page covers it.
pub fn covers(inv: &DevTlbInvalidation, pasid: Option<u32>, page: u64) -> bool {
    let pasid_ok = inv.pasid.is_none() || inv.pasid == pasid;
    let end = inv.addr.saturating_add(inv.size);
    pasid_ok && page < end && page.saturating_add(4096) > inv.addr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(pasid: Option<u32>, page: u64) -> AtcEntry {
        AtcEntry {
            pasid,
            privileged: false,
            page,
            translated: page + 0x10_0000,
            write: false,
        }
    }

    #[test]
    fn lookup_respects_pasid_privilege_and_write() {
        let mut atc = Atc::default();
        atc.insert(e(Some(1), 0x1000));
        assert!(atc.lookup(Some(1), false, 0x1000, false).is_some());
        assert!(atc.lookup(Some(1), false, 0x1000, true).is_none());
        assert!(atc.lookup(Some(2), false, 0x1000, false).is_none());
        assert!(atc.lookup(Some(1), true, 0x1000, false).is_none());
        atc.insert(AtcEntry {
            write: true,
            ..e(Some(1), 0x1000)
        });
        assert_eq!(atc.len(), 1);
        assert!(atc.lookup(Some(1), false, 0x1000, true).is_some());
    }

    #[test]
    fn invalidation_removes_covered_entries() {
        let mut atc = Atc::default();
        atc.insert(e(Some(1), 0x1000));
        atc.insert(e(Some(1), 0x2000));
        atc.insert(e(Some(2), 0x1000));
        let inv = DevTlbInvalidation {
            sid: 0,
            pasid: Some(1),
            addr: 0x1000,
            size: 0x1000,
            global: false,
        };
        assert_eq!(atc.invalidate(&inv), 1);
        let all = DevTlbInvalidation {
            sid: 0,
            pasid: None,
            addr: 0,
            size: u64::MAX,
            global: false,
        };
        assert_eq!(atc.invalidate(&all), 2);
        assert!(atc.is_empty());
    }

    #[test]
    fn devtlb_invalidation_ranges_and_pasids() {
        let inv = DevTlbInvalidation {
            sid: 1,
            pasid: Some(5),
            addr: 0x2000,
            size: 0x2000,
            global: false,
        };
        assert!(covers(&inv, Some(5), 0x2000));
        assert!(covers(&inv, Some(5), 0x3000));
        assert!(!covers(&inv, Some(5), 0x4000));
        assert!(!covers(&inv, Some(5), 0x1000));
        assert!(!covers(&inv, Some(6), 0x2000));
        assert!(!covers(&inv, None, 0x2000));
        let all = DevTlbInvalidation {
            sid: 1,
            pasid: None,
            addr: 0,
            size: u64::MAX,
            global: false,
        };
        assert!(covers(&all, Some(9), !0xfff));
        assert!(covers(&all, None, 0));
    }

    #[test]
    fn reject_growth_beyond_capacity() {
        let mut atc = Atc::default();
        for i in 0..(ATC_CAPACITY as u64 + 10) {
            atc.insert(e(None, i << 12));
        }
        assert_eq!(atc.len(), ATC_CAPACITY);
        assert!(
            atc.lookup(None, false, 0, false).is_none(),
            "oldest dropped"
        );
    }
}
