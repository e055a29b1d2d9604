//! The ACPI tables the guest firmware interface consists of: RSDP, XSDT,
//! FADT, DSDT, MADT, MCFG and (with the vIOMMU) DMAR.
//!
//! Building happens in two steps. [`build_tables`] turns an [`AcpiConfig`]
//! into the tables whose bytes do not depend on where they are placed (DSDT,
//! MADT, MCFG, DMAR), each with its final checksum. [`AcpiTables::layout`]
//! then places everything at guest-physical addresses chosen by a
//! [`Placement`] and produces the address-dependent tables (FADT, which points
//! at the DSDT; XSDT, which points at every other table; RSDP, which points at
//! the XSDT). The resulting [`AcpiLayout`] can be written into guest memory
//! ([`AcpiLayout::write_to`]) and dumped to files exactly as the guest sees
//! it ([`AcpiLayout::dump`]).
//!
//! The platform the tables describe is the one in `docs/ARCHITECTURE.md`
//! ("Platform map"). Two pieces of hardware exist only because the FADT names
//! them, and the vmm must implement them:
//! - **reset**: the FADT reset register is I/O port [`RESET_PORT`] (0x64, the
//!   i8042 command port), value [`RESET_VALUE`] (0xfe), 8-bit access;
//! - **power off**: the FADT is hardware-reduced and names an 8-bit sleep
//!   control register at I/O port [`SLEEP_CONTROL_PORT`] (0x604) and an 8-bit
//!   sleep status register at [`SLEEP_STATUS_PORT`] (0x605). The DSDT's `\_S5`
//!   object gives SLP_TYP [`S5_SLEEP_TYPE`] (5), so a guest powers off by
//!   writing `(5 << 2) | 0x20 = 0x34` ([`SLEEP_CONTROL_POWER_OFF`]) to 0x604.
//!   Linux first writes 0x80 (WAK_STS, write-one-to-clear) to 0x605; reads of
//!   0x605 may return 0.
//!
//! Nothing here reads guest memory: the only input is the host's
//! configuration, which is validated before any table is built.

mod dmar;
mod dsdt;
mod fadt;
mod madt;
mod mcfg;

use std::path::{Path, PathBuf};

use acpi_tables::Aml;
use acpi_tables::rsdp::Rsdp;
use acpi_tables::xsdt::XSDT;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

/// OEM ID written into every table header.
pub const OEM_ID: [u8; 6] = *b"STALEW";
/// OEM table ID written into every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"STALEWLK";
/// OEM revision written into every table header.
pub const OEM_REVISION: u32 = 1;

// The platform map is `devices::layout`'s; the tables describe it. Values
// the tables hold in narrower fields are converted here, checked when the
// crate compiles.
use devices::layout::ACPI_AREA;
pub use devices::layout::{
    COM1_PORT, ECAM_BASE, ECAM_SIZE, PCI_BUS_FIRST, PCI_BUS_LAST, SLEEP_CONTROL_PORT,
    SLEEP_STATUS_PORT,
};

/// `v`, if it fits in `bits` bits; every caller is a constant, so a value
/// that does not fit its table field fails the build.
const fn fits(v: u64, bits: u32) -> u64 {
    assert!(v >> bits == 0, "value does not fit its ACPI field");
    v
}

/// The map's values in the widths the tables store them.
#[allow(clippy::cast_possible_truncation)] // every cast is checked by `fits`
mod fields {
    use super::fits;
    use devices::layout as map;

    /// First byte of the 32-bit PCI BAR window.
    pub const PCI_MMIO32_BASE: u32 = fits(map::BAR_WINDOW_BASE, 32) as u32;
    /// Last byte (inclusive) of the 32-bit PCI BAR window.
    pub const PCI_MMIO32_LAST: u32 =
        fits(map::BAR_WINDOW_BASE + map::BAR_WINDOW_SIZE - 1, 32) as u32;
    /// The IOAPIC's MMIO base.
    pub const IOAPIC_BASE: u32 = fits(map::IOAPIC_BASE, 32) as u32;
    /// The local APIC's MMIO base.
    pub const LAPIC_BASE: u32 = fits(map::LAPIC_BASE, 32) as u32;
    /// COM1 ISA IRQ.
    pub const COM1_IRQ: u8 = fits(map::COM1_IRQ as u64, 8) as u8;
    /// Ports COM1 decodes, as an I/O resource length.
    pub const COM1_PORTS: u8 = fits(map::COM1_LEN, 8) as u8;
    /// The legacy PCI configuration ports (0xcf8-0xcff).
    pub const PCI_CONFIG_PORT: u16 = fits(map::CONFIG_IO_PORT, 16) as u16;
    /// Number of legacy PCI configuration ports.
    pub const PCI_CONFIG_PORTS: u8 = fits(map::CONFIG_IO_LEN, 8) as u8;
    /// ECAM's base as a 32-bit resource field.
    pub const ECAM_BASE_U32: u32 = fits(map::ECAM_BASE, 32) as u32;
    /// ECAM's size as a 32-bit resource field.
    pub const ECAM_SIZE_U32: u32 = fits(map::ECAM_SIZE, 32) as u32;
}
pub use fields::*;

/// Base of the vIOMMU register block.
pub const VIOMMU_BASE: u64 = devices::layout::VIOMMU_MMIO_BASE;
/// FADT reset register: I/O port (the i8042 command port).
pub const RESET_PORT: u16 = devices::layout::I8042_COMMAND_PORT;
/// FADT reset value (the i8042 "pulse reset line" command).
pub const RESET_VALUE: u8 = devices::legacy::i8042::CMD_RESET;
// The sleep register's encoding is the power-management device's; the DSDT's
// `\_S5` package and the FADT describe that device.
pub use devices::acpi_pm::{S5_SLEEP_TYPE, SLEEP_CONTROL_SLP_EN, SLEEP_CONTROL_SLP_TYP_SHIFT};
/// The byte a guest writes to [`SLEEP_CONTROL_PORT`] to power off.
pub const SLEEP_CONTROL_POWER_OFF: u8 =
    (S5_SLEEP_TYPE << SLEEP_CONTROL_SLP_TYP_SHIFT) | SLEEP_CONTROL_SLP_EN;

/// Where a legacy (BIOS) guest looks for the RSDP: the 0xe0000-0xfffff
/// read-only BIOS area, scanned on 16-byte boundaries.
pub const LEGACY_RSDP_GPA: u64 = ACPI_AREA.0;
/// End (exclusive) of the legacy BIOS area the tables go into by default.
pub const LEGACY_AREA_END: u64 = ACPI_AREA.0 + ACPI_AREA.1;

/// Most vCPUs the tables describe. This is KVM's default `KVM_MAX_VCPUS` on
/// x86; it also bounds the MADT and DSDT to sizes that fit, with everything
/// else, in the 128 KiB legacy BIOS area.
pub const MAX_CPUS: u32 = 1024;

/// Smallest host address width a DMAR header may state: Linux rejects a
/// width below a page (the header byte must be at least 11).
pub const MIN_HOST_ADDRESS_WIDTH_BITS: u8 = 12;
/// Largest host address width a DMAR header may state.
pub const MAX_HOST_ADDRESS_WIDTH_BITS: u8 = 64;

/// Alignment of every table after the RSDP.
const TABLE_ALIGN: u64 = 16;
/// Alignment the legacy RSDP scan requires.
const RSDP_ALIGN: u64 = 16;

/// What went wrong building or placing the tables.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// The configuration asks for no vCPU.
    #[error("ACPI: at least one vCPU is needed")]
    NoCpus,
    /// More vCPUs than the tables support.
    #[error("ACPI: {cpus} vCPUs requested, at most {max} supported")]
    TooManyCpus {
        /// vCPUs asked for.
        cpus: u32,
        /// The limit.
        max: u32,
    },
    /// The vIOMMU register base is not 4 KiB aligned.
    #[error("ACPI: vIOMMU register base {base:#x} is not 4 KiB aligned")]
    ViommuBaseMisaligned {
        /// The base asked for.
        base: u64,
    },
    /// The DMAR host address width is out of range.
    #[error("ACPI: DMAR host address width {bits} bits is outside {min}..={max}")]
    BadHostAddressWidth {
        /// Width asked for.
        bits: u8,
        /// Smallest allowed width.
        min: u8,
        /// Largest allowed width.
        max: u8,
    },
    /// The RSDP address is not 16-byte aligned.
    #[error("ACPI: RSDP address {gpa:#x} is not 16-byte aligned")]
    RsdpMisaligned {
        /// The address asked for.
        gpa: u64,
    },
    /// An address computation overflowed.
    #[error("ACPI: address overflow placing {what} at {gpa:#x} (+{len:#x})")]
    AddressOverflow {
        /// What was being placed.
        what: &'static str,
        /// Where.
        gpa: u64,
        /// How many bytes.
        len: u64,
    },
    /// The tables do not fit below the placement's limit.
    #[error("ACPI: tables need {start:#x}..{end:#x} but the limit is {limit:#x}")]
    TablesTooLarge {
        /// First byte of the tables.
        start: u64,
        /// End (exclusive) the tables need.
        end: u64,
        /// End (exclusive) allowed.
        limit: u64,
    },
    /// The RSDP lies inside the tables' range.
    #[error("ACPI: RSDP at {rsdp:#x} overlaps the tables at {start:#x}..{end:#x}")]
    RsdpOverlapsTables {
        /// RSDP address.
        rsdp: u64,
        /// First byte of the tables.
        start: u64,
        /// End (exclusive) of the tables.
        end: u64,
    },
    /// Writing a table into guest memory failed.
    #[error("ACPI: writing {signature} to guest memory at {gpa:#x}: {source}")]
    GuestWrite {
        /// Table signature.
        signature: String,
        /// Where it should have gone.
        gpa: u64,
        /// The memory error.
        source: vm_memory::GuestMemoryError,
    },
    /// Writing a dump file failed.
    #[error("ACPI: writing {}: {source}", path.display())]
    Dump {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The vIOMMU as the DMAR table describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViommuAcpi {
    /// Base of the 4 KiB VT-d register block (the DRHD's register base).
    pub base: u64,
    /// DMA address width in bits (the DMAR header stores this minus one):
    /// 48 for 4-level, 57 for 5-level first-stage tables.
    pub host_address_width_bits: u8,
}

impl ViommuAcpi {
    /// The vIOMMU at the platform's fixed base ([`VIOMMU_BASE`]), with the
    /// address width that matches `levels` paging levels (4 -> 48 bits,
    /// 5 -> 57 bits; anything else is treated as 4).
    pub fn for_levels(levels: u8) -> Self {
        Self {
            base: VIOMMU_BASE,
            host_address_width_bits: if levels == 5 { 57 } else { 48 },
        }
    }
}

/// What the tables describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiConfig {
    /// Number of vCPUs; vCPU `i` has APIC ID `i` and ACPI processor UID `i`.
    pub cpus: u32,
    /// The vIOMMU, if any (adds the DMAR table).
    pub viommu: Option<ViommuAcpi>,
    /// Whether COM1 is present (adds a PNP0501 device to the DSDT).
    pub serial: bool,
}

impl Default for AcpiConfig {
    fn default() -> Self {
        Self {
            cpus: 1,
            viommu: Some(ViommuAcpi::for_levels(4)),
            serial: true,
        }
    }
}

impl AcpiConfig {
    /// Checks the configuration against the limits the tables can express.
    pub fn validate(&self) -> Result<(), AcpiError> {
        if self.cpus == 0 {
            return Err(AcpiError::NoCpus);
        }
        if self.cpus > MAX_CPUS {
            return Err(AcpiError::TooManyCpus {
                cpus: self.cpus,
                max: MAX_CPUS,
            });
        }
        if let Some(v) = self.viommu {
            if v.base & 0xfff != 0 {
                return Err(AcpiError::ViommuBaseMisaligned { base: v.base });
            }
            let bits = v.host_address_width_bits;
            if !(MIN_HOST_ADDRESS_WIDTH_BITS..=MAX_HOST_ADDRESS_WIDTH_BITS).contains(&bits) {
                return Err(AcpiError::BadHostAddressWidth {
                    bits,
                    min: MIN_HOST_ADDRESS_WIDTH_BITS,
                    max: MAX_HOST_ADDRESS_WIDTH_BITS,
                });
            }
        }
        Ok(())
    }
}

/// The tables whose bytes do not depend on their placement, each with its
/// final checksum. [`AcpiTables::layout`] adds FADT, XSDT and RSDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    dsdt: Vec<u8>,
    madt: Vec<u8>,
    mcfg: Vec<u8>,
    dmar: Option<Vec<u8>>,
}

/// Builds the placement-independent tables for `cfg`. The same `cfg` always
/// gives the same bytes.
pub fn build_tables(cfg: &AcpiConfig) -> Result<AcpiTables, AcpiError> {
    cfg.validate()?;
    Ok(AcpiTables {
        dsdt: dsdt::build(cfg),
        madt: madt::build(cfg.cpus),
        mcfg: mcfg::build(),
        dmar: cfg.viommu.map(|v| dmar::build(&v)),
    })
}

impl AcpiTables {
    /// The DSDT (AML).
    pub fn dsdt(&self) -> &[u8] {
        &self.dsdt
    }

    /// The MADT (signature `APIC`).
    pub fn madt(&self) -> &[u8] {
        &self.madt
    }

    /// The MCFG.
    pub fn mcfg(&self) -> &[u8] {
        &self.mcfg
    }

    /// The DMAR, if the configuration has a vIOMMU.
    pub fn dmar(&self) -> Option<&[u8]> {
        self.dmar.as_deref()
    }

    /// Places the tables: the RSDP at `placement.rsdp_gpa`, the rest from
    /// `placement.tables_gpa` upward, each 16-byte aligned, in the order
    /// XSDT, FACP, DSDT, APIC, MCFG, DMAR. Fills in the FADT's DSDT pointer,
    /// the XSDT's entries and the RSDP's XSDT pointer.
    pub fn layout(&self, placement: &Placement) -> Result<AcpiLayout, AcpiError> {
        if placement.rsdp_gpa & (RSDP_ALIGN - 1) != 0 {
            return Err(AcpiError::RsdpMisaligned {
                gpa: placement.rsdp_gpa,
            });
        }
        // Everything the XSDT lists, in placement order after the XSDT and
        // the FADT. The DSDT is reached through the FADT only.
        let mut listed: Vec<(&'static str, &[u8])> = vec![
            ("APIC", self.madt.as_slice()),
            ("MCFG", self.mcfg.as_slice()),
        ];
        if let Some(dmar) = &self.dmar {
            listed.push(("DMAR", dmar.as_slice()));
        }
        // XSDT: 36-byte header and one 8-byte pointer per entry (FADT + listed).
        let xsdt_len = 36 + 8 * (1 + listed.len());
        let fadt_len = fadt::len();

        let mut cursor = Cursor::new(placement.tables_gpa)?;
        let xsdt_gpa = cursor.take("XSDT", xsdt_len)?;
        let fadt_gpa = cursor.take("FACP", fadt_len)?;
        let dsdt_gpa = cursor.take("DSDT", self.dsdt.len())?;
        let mut listed_gpas = Vec::with_capacity(listed.len());
        for (sig, bytes) in &listed {
            listed_gpas.push(cursor.take(sig, bytes.len())?);
        }
        let end = cursor.end;
        if end > placement.tables_limit {
            return Err(AcpiError::TablesTooLarge {
                start: placement.tables_gpa,
                end,
                limit: placement.tables_limit,
            });
        }
        let rsdp_len = u64_len(Rsdp::len());
        let rsdp_end =
            placement
                .rsdp_gpa
                .checked_add(rsdp_len)
                .ok_or(AcpiError::AddressOverflow {
                    what: "RSDP",
                    gpa: placement.rsdp_gpa,
                    len: rsdp_len,
                })?;
        if placement.rsdp_gpa < end && rsdp_end > placement.tables_gpa {
            return Err(AcpiError::RsdpOverlapsTables {
                rsdp: placement.rsdp_gpa,
                start: placement.tables_gpa,
                end,
            });
        }

        let fadt = fadt::build(dsdt_gpa);
        let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
        xsdt.add_entry(fadt_gpa);
        for gpa in &listed_gpas {
            xsdt.add_entry(*gpa);
        }
        let xsdt = to_bytes(&xsdt);
        debug_assert_eq!(xsdt.len(), xsdt_len);
        let rsdp = to_bytes(&Rsdp::new(OEM_ID, xsdt_gpa));

        let mut tables = vec![
            PlacedTable::new("XSDT", xsdt_gpa, xsdt),
            PlacedTable::new("FACP", fadt_gpa, fadt),
            PlacedTable::new("DSDT", dsdt_gpa, self.dsdt.clone()),
        ];
        for ((sig, bytes), gpa) in listed.iter().zip(listed_gpas) {
            tables.push(PlacedTable::new(sig, gpa, bytes.to_vec()));
        }
        Ok(AcpiLayout {
            rsdp: PlacedTable::new("RSDP", placement.rsdp_gpa, rsdp),
            tables,
        })
    }
}

/// Where the tables go in guest-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The RSDP's address (16-byte aligned). A PVH guest gets it as
    /// `rsdp_paddr`; a legacy guest finds it by scanning 0xe0000-0xfffff.
    pub rsdp_gpa: u64,
    /// Where the first table after the RSDP goes.
    pub tables_gpa: u64,
    /// End (exclusive) the tables must stay below.
    pub tables_limit: u64,
}

impl Placement {
    /// The default: RSDP at 0xe0000, the other tables from 0xe0040 up to the
    /// end of the legacy BIOS area (1 MiB).
    pub const LEGACY: Placement = Placement {
        rsdp_gpa: LEGACY_RSDP_GPA,
        tables_gpa: LEGACY_RSDP_GPA + 0x40,
        tables_limit: LEGACY_AREA_END,
    };
}

impl Default for Placement {
    fn default() -> Self {
        Self::LEGACY
    }
}

/// One table at its guest-physical address, bytes exactly as the guest sees
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedTable {
    signature: &'static str,
    gpa: u64,
    bytes: Vec<u8>,
}

impl PlacedTable {
    fn new(signature: &'static str, gpa: u64, bytes: Vec<u8>) -> Self {
        Self {
            signature,
            gpa,
            bytes,
        }
    }

    /// The signature (`RSDP` for the root pointer, whose real signature is
    /// the 8-byte `RSD PTR `).
    pub fn signature(&self) -> &'static str {
        self.signature
    }

    /// Guest-physical address.
    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// All tables, placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiLayout {
    rsdp: PlacedTable,
    tables: Vec<PlacedTable>,
}

impl AcpiLayout {
    /// The RSDP's address: PVH's `rsdp_paddr`.
    pub fn rsdp_gpa(&self) -> u64 {
        self.rsdp.gpa
    }

    /// Every table, the RSDP first.
    pub fn tables(&self) -> impl Iterator<Item = &PlacedTable> {
        std::iter::once(&self.rsdp).chain(self.tables.iter())
    }

    /// The table with this signature (`RSDP`, `XSDT`, `FACP`, `DSDT`,
    /// `APIC`, `MCFG`, `DMAR`).
    pub fn table(&self, signature: &str) -> Option<&PlacedTable> {
        self.tables().find(|t| t.signature() == signature)
    }

    /// The smallest range `[start, end)` holding every table, RSDP included:
    /// what E820 must not hand out as RAM.
    pub fn span(&self) -> (u64, u64) {
        let start = self.tables().map(|t| t.gpa).min().unwrap_or(0);
        let end = self
            .tables()
            .map(|t| t.gpa.saturating_add(u64_len(t.bytes.len())))
            .max()
            .unwrap_or(0);
        (start, end)
    }

    /// Copies every table into guest memory.
    pub fn write_to<M: GuestMemory + ?Sized>(&self, mem: &M) -> Result<(), AcpiError> {
        for t in self.tables() {
            mem.write_slice(&t.bytes, GuestAddress(t.gpa))
                .map_err(|source| AcpiError::GuestWrite {
                    signature: t.signature().to_string(),
                    gpa: t.gpa,
                    source,
                })?;
        }
        Ok(())
    }

    /// Writes each table to `dir/<SIG>.dat` (the RSDP as `RSDP.dat`), bytes
    /// exactly as placed in guest memory. Creates `dir` if needed.
    pub fn dump(&self, dir: &Path) -> Result<(), AcpiError> {
        std::fs::create_dir_all(dir).map_err(|source| AcpiError::Dump {
            path: dir.to_path_buf(),
            source,
        })?;
        for t in self.tables() {
            let path = dir.join(format!("{}.dat", t.signature()));
            std::fs::write(&path, &t.bytes).map_err(|source| AcpiError::Dump { path, source })?;
        }
        Ok(())
    }
}

/// Hands out 16-byte aligned ranges upward from a start address.
struct Cursor {
    end: u64,
}

impl Cursor {
    fn new(start: u64) -> Result<Self, AcpiError> {
        let aligned = align_up(start).ok_or(AcpiError::AddressOverflow {
            what: "tables",
            gpa: start,
            len: 0,
        })?;
        Ok(Self { end: aligned })
    }

    /// Reserves `len` bytes, returns their address.
    fn take(&mut self, what: &'static str, len: usize) -> Result<u64, AcpiError> {
        let gpa = self.end;
        let len = u64_len(len);
        let overflow = AcpiError::AddressOverflow { what, gpa, len };
        let end = gpa.checked_add(len).ok_or(overflow)?;
        self.end = align_up(end).ok_or(AcpiError::AddressOverflow { what, gpa, len })?;
        Ok(gpa)
    }
}

fn align_up(addr: u64) -> Option<u64> {
    Some(addr.checked_add(TABLE_ALIGN - 1)? & !(TABLE_ALIGN - 1))
}

/// A table length as u64 (lengths here are a few KiB; usize is at most 64
/// bits on every target this crate builds for).
fn u64_len(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

fn to_bytes(aml: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    aml.to_aml_bytes(&mut v);
    v
}

/// Byte sum of a table; 0 for a correct ACPI checksum.
#[cfg(test)]
pub(crate) fn byte_sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le32(t: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(t[off..off + 4].try_into().expect("4"))
    }

    fn le64(t: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(t[off..off + 8].try_into().expect("8"))
    }

    fn cfg(cpus: u32, viommu: Option<ViommuAcpi>) -> AcpiConfig {
        AcpiConfig {
            cpus,
            viommu,
            serial: true,
        }
    }

    fn legacy(cfg: &AcpiConfig) -> AcpiLayout {
        build_tables(cfg)
            .expect("valid config")
            .layout(&Placement::LEGACY)
            .expect("fits")
    }

    /// A unique scratch directory under the system temp dir.
    fn scratch_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        std::env::temp_dir().join(format!(
            "stalewalk-acpi-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ))
    }

    #[test]
    fn every_table_checksums_and_states_its_length() {
        for cpus in [1, 4, 300] {
            for viommu in [None, Some(ViommuAcpi::for_levels(4))] {
                let l = legacy(&cfg(cpus, viommu));
                for t in l.tables() {
                    let b = t.bytes();
                    assert_eq!(byte_sum(b), 0, "{} checksum", t.signature());
                    if t.signature() == "RSDP" {
                        assert_eq!(byte_sum(&b[..20]), 0, "RSDP v1 checksum");
                        assert_eq!(&b[..8], b"RSD PTR ");
                        assert_eq!(le32(b, 20) as usize, b.len());
                    } else {
                        assert_eq!(&b[..4], t.signature().as_bytes());
                        assert_eq!(le32(b, 4) as usize, b.len(), "{}", t.signature());
                    }
                }
            }
        }
    }

    #[test]
    fn legacy_layout_pointers_resolve() {
        let l = legacy(&AcpiConfig::default());
        assert_eq!(l.rsdp_gpa(), 0xe0000);
        let rsdp = l.table("RSDP").expect("RSDP").bytes();
        assert_eq!(rsdp[15], 2, "ACPI 2.0+ RSDP");
        assert_eq!(le32(rsdp, 16), 0, "no RSDT");
        let xsdt_gpa = le64(rsdp, 24);
        let xsdt = l.table("XSDT").expect("XSDT");
        assert_eq!(xsdt.gpa(), xsdt_gpa);
        let by_gpa = |gpa: u64| l.tables().find(|t| t.gpa() == gpa).map(|t| t.signature());
        let entries: Vec<&str> = xsdt.bytes()[36..]
            .chunks(8)
            .map(|c| by_gpa(u64::from_le_bytes(c.try_into().expect("8"))).expect("listed"))
            .collect();
        assert_eq!(entries, ["FACP", "APIC", "MCFG", "DMAR"]);
        let fadt = l.table("FACP").expect("FACP").bytes();
        let dsdt_gpa = l.table("DSDT").expect("DSDT").gpa();
        assert_eq!(u64::from(le32(fadt, fadt::DSDT_OFFSET)), dsdt_gpa);
        assert_eq!(le64(fadt, fadt::X_DSDT_OFFSET), dsdt_gpa);
    }

    #[test]
    fn legacy_layout_is_aligned_disjoint_and_inside_bios_area() {
        let l = legacy(&cfg(300, Some(ViommuAcpi::for_levels(5))));
        let mut ranges: Vec<(u64, u64)> = l
            .tables()
            .map(|t| (t.gpa(), t.gpa() + t.bytes().len() as u64))
            .collect();
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            assert!(w[0].1 <= w[1].0, "{w:x?} overlap");
        }
        for t in l.tables() {
            assert_eq!(t.gpa() % 16, 0, "{} aligned", t.signature());
        }
        let (start, end) = l.span();
        assert_eq!(start, 0xe0000);
        assert!(end <= 0x10_0000, "span end {end:#x}");
        assert_eq!(end, ranges.last().expect("tables").1);
    }

    #[test]
    fn max_cpus_fit_in_the_bios_area() {
        let l = legacy(&cfg(MAX_CPUS, Some(ViommuAcpi::for_levels(5))));
        assert!(l.span().1 <= LEGACY_AREA_END);
    }

    #[test]
    fn no_viommu_no_dmar() {
        let l = legacy(&cfg(2, None));
        assert!(l.table("DMAR").is_none());
        let xsdt = l.table("XSDT").expect("XSDT").bytes();
        assert_eq!(xsdt.len(), 36 + 3 * 8);
    }

    #[test]
    fn dmar_follows_config() {
        for (levels, haw) in [(4, 47), (5, 56)] {
            let l = legacy(&cfg(1, Some(ViommuAcpi::for_levels(levels))));
            let d = l.table("DMAR").expect("DMAR").bytes();
            assert_eq!(d[dmar::HAW_OFFSET], haw);
            assert_eq!(le64(d, dmar::HEADER_LEN + 8), VIOMMU_BASE);
            assert_eq!(d[dmar::HEADER_LEN + 4], dmar::DRHD_INCLUDE_PCI_ALL);
        }
    }

    #[test]
    fn tables_are_deterministic() {
        let c = cfg(8, Some(ViommuAcpi::for_levels(5)));
        assert_eq!(legacy(&c), legacy(&c));
    }

    #[test]
    fn layout_at_other_addresses() {
        let p = Placement {
            rsdp_gpa: 0x9_fc00,
            tables_gpa: 0x7ff0_0001,
            tables_limit: 0x8000_0000,
        };
        let l = build_tables(&AcpiConfig::default())
            .expect("valid")
            .layout(&p)
            .expect("fits");
        assert_eq!(l.rsdp_gpa(), 0x9_fc00);
        assert_eq!(l.table("XSDT").expect("XSDT").gpa(), 0x7ff0_0010);
        let rsdp = l.table("RSDP").expect("RSDP").bytes();
        assert_eq!(le64(rsdp, 24), 0x7ff0_0010);
    }

    #[test]
    fn write_to_guest_memory_matches_dump() {
        use vm_memory::GuestMemoryMmap;
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("mmap");
        let l = legacy(&cfg(4, Some(ViommuAcpi::for_levels(4))));
        l.write_to(&mem).expect("fits in 1 MiB");
        for t in l.tables() {
            let mut buf = vec![0u8; t.bytes().len()];
            mem.read_slice(&mut buf, GuestAddress(t.gpa()))
                .expect("read");
            assert_eq!(buf, t.bytes(), "{}", t.signature());
        }
        let mut sig = [0u8; 8];
        mem.read_slice(&mut sig, GuestAddress(0xe0000))
            .expect("read");
        assert_eq!(&sig, b"RSD PTR ");
    }

    #[test]
    fn dump_writes_each_table_as_the_guest_sees_it() {
        let dir = scratch_dir("dump");
        let l = legacy(&AcpiConfig::default());
        l.dump(&dir).expect("dump");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "APIC.dat", "DMAR.dat", "DSDT.dat", "FACP.dat", "MCFG.dat", "RSDP.dat", "XSDT.dat"
            ]
        );
        for t in l.tables() {
            let on_disk = std::fs::read(dir.join(format!("{}.dat", t.signature()))).expect("read");
            assert_eq!(on_disk, t.bytes());
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn reject_zero_cpus() {
        assert!(matches!(
            build_tables(&cfg(0, None)),
            Err(AcpiError::NoCpus)
        ));
    }

    #[test]
    fn reject_too_many_cpus() {
        assert!(matches!(
            build_tables(&cfg(MAX_CPUS + 1, None)),
            Err(AcpiError::TooManyCpus { cpus, max: MAX_CPUS }) if cpus == MAX_CPUS + 1
        ));
    }

    #[test]
    fn reject_misaligned_viommu_base() {
        let v = ViommuAcpi {
            base: 0xfed9_0800,
            host_address_width_bits: 48,
        };
        let err = build_tables(&cfg(1, Some(v))).expect_err("misaligned");
        assert!(matches!(
            err,
            AcpiError::ViommuBaseMisaligned { base: 0xfed9_0800 }
        ));
        assert!(err.to_string().contains("0xfed90800"), "{err}");
    }

    #[test]
    fn reject_bad_host_address_width() {
        for bits in [0u8, 11, 65, 255] {
            let v = ViommuAcpi {
                base: VIOMMU_BASE,
                host_address_width_bits: bits,
            };
            assert!(
                matches!(
                    build_tables(&cfg(1, Some(v))),
                    Err(AcpiError::BadHostAddressWidth { bits: b, .. }) if b == bits
                ),
                "{bits}"
            );
        }
    }

    #[test]
    fn reject_misaligned_rsdp() {
        let p = Placement {
            rsdp_gpa: 0xe0008,
            ..Placement::LEGACY
        };
        let t = build_tables(&AcpiConfig::default()).expect("valid");
        assert!(matches!(
            t.layout(&p),
            Err(AcpiError::RsdpMisaligned { gpa: 0xe0008 })
        ));
    }

    #[test]
    fn reject_rsdp_inside_tables() {
        let p = Placement {
            rsdp_gpa: 0xe0100,
            tables_gpa: 0xe0000,
            tables_limit: 0x10_0000,
        };
        let t = build_tables(&AcpiConfig::default()).expect("valid");
        assert!(matches!(
            t.layout(&p),
            Err(AcpiError::RsdpOverlapsTables { rsdp: 0xe0100, .. })
        ));
    }

    #[test]
    fn reject_tables_past_limit() {
        let p = Placement {
            tables_limit: 0xe0100,
            ..Placement::LEGACY
        };
        let t = build_tables(&AcpiConfig::default()).expect("valid");
        assert!(matches!(
            t.layout(&p),
            Err(AcpiError::TablesTooLarge { limit: 0xe0100, .. })
        ));
    }

    #[test]
    fn reject_address_overflow() {
        let t = build_tables(&AcpiConfig::default()).expect("valid");
        for (rsdp_gpa, tables_gpa) in [(0, u64::MAX - 8), (0, u64::MAX - 0x40), (u64::MAX - 15, 0)]
        {
            let p = Placement {
                rsdp_gpa,
                tables_gpa,
                tables_limit: u64::MAX,
            };
            assert!(
                matches!(t.layout(&p), Err(AcpiError::AddressOverflow { .. })),
                "{rsdp_gpa:#x} {tables_gpa:#x}"
            );
        }
    }

    #[test]
    fn reject_write_outside_guest_memory() {
        use vm_memory::GuestMemoryMmap;
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x8_0000)]).expect("mmap");
        let l = legacy(&AcpiConfig::default());
        let err = l.write_to(&mem).expect_err("no memory at 0xe0000");
        assert!(
            matches!(err, AcpiError::GuestWrite { gpa: 0xe0000, .. }),
            "{err}"
        );
    }

    /// Every table of a placed layout sums to zero, states its length, and
    /// every pointer (RSDP -> XSDT -> tables, FADT -> DSDT) lands on the
    /// table it names; tables never overlap each other or the RSDP.
    fn check_layout(l: &AcpiLayout) {
        for t in l.tables() {
            assert_eq!(byte_sum(t.bytes()), 0, "{}", t.signature());
        }
        let rsdp = l.table("RSDP").expect("RSDP").bytes();
        let xsdt = l.table("XSDT").expect("XSDT");
        assert_eq!(le64(rsdp, 24), xsdt.gpa());
        for entry in xsdt.bytes()[36..].chunks(8) {
            let gpa = u64::from_le_bytes(entry.try_into().expect("8"));
            let t = l
                .tables()
                .find(|t| t.gpa() == gpa)
                .expect("XSDT entry resolves");
            assert_eq!(&t.bytes()[..4], t.signature().as_bytes());
        }
        let fadt = l.table("FACP").expect("FACP").bytes();
        assert_eq!(
            le64(fadt, fadt::X_DSDT_OFFSET),
            l.table("DSDT").expect("DSDT").gpa()
        );
        let mut ranges: Vec<(u64, u64)> = l
            .tables()
            .map(|t| (t.gpa(), t.gpa() + t.bytes().len() as u64))
            .collect();
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            assert!(w[0].1 <= w[1].0, "{w:x?} overlap");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 48,
            ..proptest::prelude::ProptestConfig::default()
        })]

        #[test]
        fn any_valid_config_and_placement_lays_out_consistently(
            cpus in 1u32..=MAX_CPUS,
            viommu in proptest::option::of((0u64..0x10_0000, 12u8..=64)),
            serial in proptest::bool::ANY,
            rsdp_slot in 0u64..0x1000,
            tables_gpa in 0x1_0000u64..0x1_0000_0000,
        ) {
            let c = AcpiConfig {
                cpus,
                viommu: viommu.map(|(page, bits)| ViommuAcpi {
                    base: page << 12,
                    host_address_width_bits: bits,
                }),
                serial,
            };
            let p = Placement {
                rsdp_gpa: rsdp_slot * 16,
                tables_gpa,
                tables_limit: u64::MAX,
            };
            let l = build_tables(&c).expect("valid").layout(&p).expect("fits");
            check_layout(&l);
            proptest::prop_assert_eq!(l.rsdp_gpa(), rsdp_slot * 16);
        }
    }

    /// The exact line printed when iasl is missing.
    const IASL_SKIP: &str = "SKIPPED: acpi_iasl: iasl not installed (apt-get install acpica-tools)";

    fn iasl_available() -> bool {
        std::process::Command::new("iasl")
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Disassembles every dumped table with `iasl -d`; each must exit 0 with
    /// no error, warning or checksum complaint. Returns each table's `.dsl`.
    fn iasl_disassemble(l: &AcpiLayout, tag: &str) -> Vec<(String, String)> {
        let dir = scratch_dir(tag);
        l.dump(&dir).expect("dump");
        let mut out = Vec::new();
        for t in l.tables() {
            if t.signature() == "RSDP" {
                iasl_check_rsdp(&dir, t.bytes());
                continue;
            }
            let dat = format!("{}.dat", t.signature());
            let o = std::process::Command::new("iasl")
                .current_dir(&dir)
                .arg("-d")
                .arg(&dat)
                .output()
                .expect("run iasl");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(o.status.success(), "iasl -d {dat} failed:\n{text}");
            let lower = text.to_lowercase();
            for bad in ["error", "warning", "checksum", "invalid"] {
                assert!(!lower.contains(bad), "iasl -d {dat} says {bad}:\n{text}");
            }
            let dsl = std::fs::read_to_string(dir.join(format!("{}.dsl", t.signature())))
                .expect("iasl wrote a .dsl");
            let dsl_lower = dsl.to_lowercase();
            for bad in ["incorrect", "invalid", "error", "warning"] {
                assert!(!dsl_lower.contains(bad), "{dat}.dsl says {bad}:\n{dsl}");
            }
            out.push((t.signature().to_string(), dsl));
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
        out
    }

    /// ACPICA cannot load an RSDP from a file ("Loading an RSDP is not
    /// supported"), so `iasl -d RSDP.dat` always fails. Instead, the RSDP's
    /// fields go through iasl's data-table compiler with zero checksums;
    /// iasl computes length and both checksums itself, and its output must
    /// equal our bytes.
    fn iasl_check_rsdp(dir: &Path, rsdp: &[u8]) {
        assert_eq!(rsdp.len(), 36);
        let oem = std::str::from_utf8(&rsdp[9..15]).expect("ASCII OEM ID");
        let src = format!(
            "[0008] Signature : \"RSD PTR \"\n\
             [0001] Checksum : 00\n\
             [0006] Oem ID : \"{oem}\"\n\
             [0001] Revision : {:02X}\n\
             [0004] RSDT Address : {:08X}\n\
             [0004] Length : {:08X}\n\
             [0008] XSDT Address : {:016X}\n\
             [0001] Extended Checksum : 00\n\
             [0003] Reserved : {:02X}{:02X}{:02X}\n",
            rsdp[15],
            le32(rsdp, 16),
            le32(rsdp, 20),
            le64(rsdp, 24),
            rsdp[33],
            rsdp[34],
            rsdp[35],
        );
        std::fs::write(dir.join("rsdp-check.asl"), src).expect("write source");
        let o = std::process::Command::new("iasl")
            .current_dir(dir)
            .arg("rsdp-check.asl")
            .output()
            .expect("run iasl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "iasl rsdp-check.asl failed:\n{text}");
        assert!(text.contains("0 Errors, 0 Warnings"), "{text}");
        let compiled = std::fs::read(dir.join("rsdp-check.aml")).expect("iasl output");
        assert_eq!(compiled, rsdp, "iasl's RSDP differs from ours:\n{text}");
    }

    #[test]
    fn acpi_iasl() {
        if !iasl_available() {
            eprintln!("{IASL_SKIP}");
            return;
        }
        for c in [
            AcpiConfig::default(),
            cfg(300, Some(ViommuAcpi::for_levels(5))),
            AcpiConfig {
                cpus: 2,
                viommu: None,
                serial: false,
            },
        ] {
            let l = legacy(&c);
            let dsls = iasl_disassemble(&l, "iasl");
            assert_eq!(dsls.len(), l.tables().count() - 1, "all but the RSDP");
            let dsl = |sig: &str| {
                dsls.iter()
                    .find(|(s, _)| s == sig)
                    .map(|(_, d)| d.as_str())
                    .unwrap_or_else(|| panic!("{sig} disassembled"))
            };
            let dsdt = dsl("DSDT");
            for want in [
                "PNP0A08",
                "PNP0A03",
                "PNP0C02",
                "_SEG",
                "_BBN",
                "0xE0000000",
                "0xDFFFFFFF",
            ] {
                assert!(dsdt.contains(want), "DSDT lacks {want}:\n{dsdt}");
            }
            assert_eq!(dsdt.contains("PNP0501"), c.serial);
            if let Some(v) = c.viommu {
                let dmar = dsl("DMAR");
                let haw = format!("{:02X}", v.host_address_width_bits - 1);
                assert!(dmar.contains(&haw), "DMAR width {haw}:\n{dmar}");
                assert!(dmar.contains("00000000FED90000"), "DMAR base:\n{dmar}");
            }
        }
    }
}
