//! Per-device and per-PASID counts for the end-of-run report, kept by the
//! unit itself (not from its event stream), so a report needs no event sink
//! and a run without `--trace` installs none. Bounded: at most
//! [`MAX_BREAKDOWN_KEYS`] requesters and as many PASIDs; the rest are summed
//! into `breakdown_overflow`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::descriptor::Descriptor;
use crate::event::{Event, TranslationOutcome};

/// Most requesters (and, separately, PASIDs) broken down, so a guest using
/// every PASID cannot grow the VMM's memory; the rest go to `other`.
pub const MAX_BREAKDOWN_KEYS: usize = 1024;

/// The PASID the checker reports for requests without one (RID_PASID as
/// Linux programs it); the breakdown files those under `"none"`, beside the
/// same requests' translations.
const RID_PASID: u32 = 0;

/// Counts for one requester or PASID.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Breakdown {
    /// Device translations.
    pub translations: u64,
    /// Translations that faulted.
    pub faults: u64,
    /// Stale walks (all classes).
    pub stale_walks: u64,
    /// `reused` stale walks.
    pub reused: u64,
    /// PASID-based IOTLB invalidations naming this PASID.
    pub piotlb: u64,
}

impl Breakdown {
    fn add(&mut self, o: &Breakdown) {
        self.translations += o.translations;
        self.faults += o.faults;
        self.stale_walks += o.stale_walks;
        self.reused += o.reused;
        self.piotlb += o.piotlb;
    }
}

/// Per-device and per-PASID counts.
///
/// Keyed by number while the guest runs; names are made only when the
/// report is serialized.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Breakdowns {
    /// By requester id, serialized as `"00:04.0"`.
    #[serde(serialize_with = "by_rid")]
    pub per_device: BTreeMap<u16, Breakdown>,
    /// By PASID, serialized as the number or `"none"` for requests without
    /// one.
    #[serde(serialize_with = "by_pasid")]
    pub per_pasid: BTreeMap<Option<u32>, Breakdown>,
    /// Counts whose key did not fit under [`MAX_BREAKDOWN_KEYS`].
    #[serde(rename = "breakdown_overflow")]
    pub other: Breakdown,
}

fn by_rid<S: serde::Serializer>(m: &BTreeMap<u16, Breakdown>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter().map(|(k, v)| (rid_name(*k), v)))
}

fn by_pasid<S: serde::Serializer>(
    m: &BTreeMap<Option<u32>, Breakdown>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter().map(|(k, v)| (pasid_name(*k), v)))
}

/// Formats a requester id as bus:device.function.
pub fn rid_name(rid: u16) -> String {
    format!("{:02x}:{:02x}.{}", rid >> 8, (rid >> 3) & 0x1f, rid & 7)
}

/// Formats a PASID key: the number, or `"none"`.
pub fn pasid_name(pasid: Option<u32>) -> String {
    pasid.map_or_else(|| "none".to_string(), |p| p.to_string())
}

impl Breakdowns {
    fn slot<'a, K: Ord>(
        map: &'a mut BTreeMap<K, Breakdown>,
        other: &'a mut Breakdown,
        key: K,
    ) -> &'a mut Breakdown {
        if map.len() >= MAX_BREAKDOWN_KEYS && !map.contains_key(&key) {
            return other;
        }
        map.entry(key).or_default()
    }

    fn both(&mut self, rid: u16, pasid: Option<u32>, f: impl Fn(&mut Breakdown)) {
        f(Self::slot(&mut self.per_device, &mut self.other, rid));
        f(Self::slot(&mut self.per_pasid, &mut self.other, pasid));
    }

    /// The counts of one device.
    pub fn device(&self, rid: u16) -> Option<&Breakdown> {
        self.per_device.get(&rid)
    }

    /// Adds `b` (translations and faults) for a requester and PASID.
    pub(crate) fn add_translations(&mut self, rid: u16, pasid: Option<u32>, b: &Breakdown) {
        self.both(rid, pasid, |slot| slot.add(b));
    }

    /// One stale walk; `pasid` as the checker reports it (RID_PASID for
    /// requests without one).
    pub(crate) fn stale_walk(&mut self, rid: u16, pasid: u32, reused: bool) {
        let pasid = (pasid != RID_PASID).then_some(pasid);
        self.both(rid, pasid, |b| {
            b.stale_walks += 1;
            if reused {
                b.reused += 1;
            }
        });
    }

    /// One PASID-based IOTLB invalidation naming `pasid`.
    pub(crate) fn piotlb(&mut self, pasid: u32) {
        self.piotlb_n(pasid, 1);
    }

    /// `n` PASID-based IOTLB invalidations naming `pasid`.
    pub(crate) fn piotlb_n(&mut self, pasid: u32, n: u64) {
        let key = (pasid != RID_PASID).then_some(pasid);
        Self::slot(&mut self.per_pasid, &mut self.other, key).piotlb += n;
    }

    /// Accounts one event as the unit itself does: what a consumer of the
    /// event stream (a trace) can rebuild, and what the sink property test
    /// compares with the unit's own counts.
    pub fn record(&mut self, event: &Event) {
        match event {
            Event::Translation {
                rid,
                pasid,
                speculative: false,
                result,
                ..
            } => {
                let fault = matches!(result, TranslationOutcome::Fault { .. });
                self.add_translations(
                    *rid,
                    *pasid,
                    &Breakdown {
                        translations: 1,
                        faults: u64::from(fault),
                        ..Breakdown::default()
                    },
                );
            }
            Event::StaleWalk(s) => self.stale_walk(
                s.rid,
                s.pasid,
                matches!(s.class, crate::checker::StaleClass::Reused),
            ),
            Event::Invalidation {
                descriptor: Descriptor::Piotlb { pasid, .. },
                ..
            } => self.piotlb(*pasid),
            _ => {}
        }
    }
}

/// Counts not yet added to [`Breakdowns`]: the current run of translations
/// by one requester and PASID (the common case: one device streaming) and
/// of PASID-based IOTLB invalidations naming one PASID (a flush of many
/// pages), so each costs a compare and an add, not map look-ups.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingTranslations {
    /// The pair packed (see [`pack`]); 0 when nothing is pending.
    key: u64,
    counts: Breakdown,
    /// PASID + 1 of the pending invalidations; 0 when none.
    piotlb_key: u64,
    piotlb: u64,
}

/// A (requester, PASID) pair as one word: bit 63 set (so never 0), PASID
/// present at bit 48, the PASID (32 bits) at 16, the requester id at 0.
#[inline]
fn pack(rid: u16, pasid: Option<u32>) -> u64 {
    let p = pasid.map_or(0, |p| (1 << 48) | (u64::from(p) << 16));
    (1 << 63) | p | u64::from(rid)
}

fn unpack(key: u64) -> (u16, Option<u32>) {
    let rid = u16::try_from(key & 0xffff).unwrap_or(0);
    let pasid = u32::try_from((key >> 16) & 0xffff_ffff).unwrap_or(0);
    (rid, (key & (1 << 48) != 0).then_some(pasid))
}

impl PendingTranslations {
    /// Counts one translation, flushing the previous key's run into `into`
    /// when the key changes.
    #[inline]
    pub fn count(&mut self, into: &mut Breakdowns, rid: u16, pasid: Option<u32>, fault: bool) {
        let key = pack(rid, pasid);
        if self.key != key {
            self.flush_translations(into);
            self.key = key;
        }
        self.counts.translations += 1;
        self.counts.faults += u64::from(fault);
    }

    /// Counts one PASID-based IOTLB invalidation naming `pasid`.
    #[inline]
    pub fn count_piotlb(&mut self, into: &mut Breakdowns, pasid: u32) {
        let key = u64::from(pasid) + 1;
        if self.piotlb_key != key {
            self.flush_piotlb(into);
            self.piotlb_key = key;
        }
        self.piotlb += 1;
    }

    /// Adds the pending runs to `into`.
    pub fn flush(&mut self, into: &mut Breakdowns) {
        self.flush_translations(into);
        self.flush_piotlb(into);
    }

    #[cold]
    fn flush_translations(&mut self, into: &mut Breakdowns) {
        if self.key != 0 {
            let (rid, pasid) = unpack(self.key);
            into.add_translations(rid, pasid, &self.counts);
        }
        self.key = 0;
        self.counts = Breakdown::default();
    }

    #[cold]
    fn flush_piotlb(&mut self, into: &mut Breakdowns) {
        if let Some(pasid) = self
            .piotlb_key
            .checked_sub(1)
            .and_then(|p| u32::try_from(p).ok())
        {
            into.piotlb_n(pasid, self.piotlb);
        }
        self.piotlb_key = 0;
        self.piotlb = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakdowns_are_bounded() {
        let mut b = Breakdowns::default();
        let mut pending = PendingTranslations::default();
        for p in 0..(u32::try_from(MAX_BREAKDOWN_KEYS).unwrap() + 5) {
            pending.count(&mut b, 0x20, Some(p), true);
        }
        pending.flush(&mut b);
        assert_eq!(b.per_pasid.len(), MAX_BREAKDOWN_KEYS);
        assert_eq!(b.other.translations, 5);
        let n = u64::try_from(MAX_BREAKDOWN_KEYS).unwrap() + 5;
        assert_eq!(b.device(0x20).unwrap().faults, n);
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["per_device"]["00:04.0"]["translations"], n);
        assert_eq!(v["per_pasid"]["0"]["translations"], 1);
    }

    #[test]
    fn pending_invalidations_add_up() {
        let mut b = Breakdowns::default();
        let mut pending = PendingTranslations::default();
        for pasid in [1, 1, 1, 0, 2, 1] {
            pending.count_piotlb(&mut b, pasid);
        }
        pending.flush(&mut b);
        assert_eq!(b.per_pasid[&Some(1)].piotlb, 4);
        assert_eq!(b.per_pasid[&Some(2)].piotlb, 1);
        assert_eq!(b.per_pasid[&None].piotlb, 1);
    }

    #[test]
    fn keys_pack_and_unpack() {
        for (rid, pasid) in [
            (0, None),
            (0, Some(0)),
            (0xffff, Some(u32::MAX)),
            (0x20, Some(1)),
        ] {
            assert_eq!(unpack(pack(rid, pasid)), (rid, pasid));
            assert_ne!(pack(rid, pasid), 0);
        }
        assert_ne!(pack(0x20, None), pack(0x20, Some(0)));
    }

    #[test]
    fn pending_runs_add_up_like_single_records() {
        let mut direct = Breakdowns::default();
        let mut batched = Breakdowns::default();
        let mut pending = PendingTranslations::default();
        let keys = [
            (0x20, Some(1)),
            (0x20, Some(1)),
            (0x28, None),
            (0x20, Some(1)),
        ];
        for (i, (rid, pasid)) in keys.into_iter().enumerate() {
            let fault = i % 2 == 0;
            direct.add_translations(
                rid,
                pasid,
                &Breakdown {
                    translations: 1,
                    faults: u64::from(fault),
                    ..Breakdown::default()
                },
            );
            pending.count(&mut batched, rid, pasid, fault);
        }
        pending.flush(&mut batched);
        assert_eq!(direct, batched);
        assert_eq!(batched.device(0x20).unwrap().translations, 3);
        assert_eq!(batched.per_pasid[&None].faults, 1);
    }
}
