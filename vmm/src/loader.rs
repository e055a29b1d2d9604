//! Kernel loading and the boot information handed to the guest.
//!
//! Three kinds of kernel (linux-loader does the copying):
//! - an ELF with a PVH note: entered in 32-bit protected mode, paging off,
//!   `%ebx` = `hvm_start_info` (with the E820 map, command line, initrd);
//! - an ELF without one: entered at `e_entry` in long mode, `%rsi` = a Linux
//!   zero page (`boot_params`);
//! - a bzImage (64-bit boot protocol, 2.12+): its protected-mode part is
//!   loaded at `code32_start` and entered at the 64-bit entry (+0x200) with
//!   `%rsi` = `boot_params` built from its setup header.
//!
//! Low-memory layout of the boot structures ([`layout`]) is fixed and lies
//! in the first 640 KiB, which the E820 map reports as RAM; guests keep out
//! of it until they have read it.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::PathBuf;

use linux_loader::loader::KernelLoader;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, ReadVolatile};

use crate::config::{KernelSource, VmConfig};
use crate::memory::{self, E820Entry};

/// Fixed guest-physical addresses of the boot structures.
pub mod layout {
    /// Boot GDT (4 entries).
    pub const GDT: u64 = 0x500;
    /// Top of the stack given to 64-bit entries (grows down from here).
    pub const BOOT_STACK_TOP: u64 = 0x5ff0;
    /// PVH `hvm_start_info`.
    pub const PVH_START_INFO: u64 = 0x6000;
    /// PVH module list (the initrd).
    pub const PVH_MODLIST: u64 = 0x6040;
    /// PVH memory map.
    pub const PVH_MEMMAP: u64 = 0x6080;
    /// Linux zero page.
    pub const BOOT_PARAMS: u64 = 0x7000;
    /// Identity page tables for 64-bit entries: PML4, PDPT, 4 PDs.
    pub const PML4: u64 = 0x9000;
    /// Page-directory-pointer table.
    pub const PDPT: u64 = 0xa000;
    /// First of four page directories (2 MiB pages, 4 GiB).
    pub const PD: u64 = 0xb000;
    /// Kernel command line.
    pub const CMDLINE: u64 = 0x2_0000;
    /// Longest command line accepted (bytes, without the NUL); the space
    /// up to the EBDA is free, Linux's own limit is 2048 by default.
    pub const CMDLINE_MAX: usize = 4095;
}

/// Most E820 entries written (the PVH map fits 160 at [`layout::PVH_MEMMAP`]
/// before the zero page; the zero page holds 128).
const E820_MAX: usize = 128;
/// Magic of `hvm_start_info`.
const PVH_MAGIC: u32 = 0x336e_c578;
/// "HdrS" at 0x202 of a bzImage.
const BZIMAGE_MAGIC: u32 = 0x5372_6448;
/// XLF_KERNEL_64: the kernel has a 64-bit entry at +0x200.
const XLF_KERNEL_64: u16 = 1;
/// The bzImage's setup header starts at this file offset.
const SETUP_HEADER_OFFSET: usize = 0x1f1;

/// How the vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryPoint {
    /// PVH: 32-bit protected mode, `%ebx` = start info.
    Pvh {
        /// 32-bit entry address.
        entry: u64,
        /// Address of `hvm_start_info`.
        start_info: u64,
    },
    /// Linux 64-bit boot protocol: long mode, `%rsi` = zero page.
    Linux64 {
        /// 64-bit entry address.
        entry: u64,
        /// Address of `boot_params`.
        boot_params: u64,
    },
}

/// What kind of image was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// ELF with a PVH note.
    ElfPvh,
    /// ELF without a PVH note.
    Elf64,
    /// bzImage.
    BzImage,
}

impl std::fmt::Display for KernelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KernelFormat::ElfPvh => "ELF (PVH entry)",
            KernelFormat::Elf64 => "ELF (64-bit entry)",
            KernelFormat::BzImage => "bzImage (64-bit boot protocol)",
        })
    }
}

/// A loaded kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedKernel {
    /// Its format.
    pub format: KernelFormat,
    /// How to enter it.
    pub entry: EntryPoint,
    /// First byte after the loaded image.
    pub kernel_end: u64,
    /// Where the initrd went (address, size).
    pub initrd: Option<(u64, u64)>,
}

/// Errors loading a kernel or an initrd.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// The kernel file does not exist.
    #[error("kernel file {path} not found (leave out --kernel to boot the built-in mini guest)")]
    KernelMissing {
        /// The path given.
        path: PathBuf,
    },
    /// The kernel file could not be opened or read.
    #[error("cannot read kernel file {path}: {source}")]
    KernelRead {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Neither ELF nor bzImage.
    #[error(
        "{path} is not a kernel format stalewalk can boot (it starts with {magic}): give an ELF \
         (vmlinux, with or without a PVH note) or a bzImage"
    )]
    UnknownFormat {
        /// The path given.
        path: String,
        /// Its first bytes, in hex.
        magic: String,
    },
    /// A bzImage too old for the 64-bit boot protocol.
    #[error(
        "{path} is a bzImage without a 64-bit entry (boot protocol {version:#x}, xloadflags \
         {xloadflags:#x}); stalewalk needs boot protocol 2.12+ with XLF_KERNEL_64"
    )]
    BzImageNot64 {
        /// The path given.
        path: String,
        /// Boot protocol version.
        version: u16,
        /// The xloadflags field.
        xloadflags: u16,
    },
    /// linux-loader refused the image.
    #[error("cannot load {path}: {source}")]
    Load {
        /// The path given.
        path: String,
        /// linux-loader's error.
        source: linux_loader::loader::Error,
    },
    /// An ELF stalewalk cannot run: wrong class, machine or type.
    #[error("{path} is {what}; stalewalk boots 64-bit x86-64 executable ELFs (a vmlinux)")]
    ElfNotBootable {
        /// The path given.
        path: String,
        /// What the ELF header says it is.
        what: String,
    },
    /// A loadable ELF segment lies (partly) outside guest RAM.
    #[error(
        "{path}: ELF segment {index} (physical {start:#x}..{end:#x}, {memsz:#x} bytes in memory) \
         lies outside guest RAM; give more --memory or check the kernel's load addresses"
    )]
    ElfSegmentOutsideRam {
        /// The path given.
        path: String,
        /// Program header index.
        index: usize,
        /// First byte.
        start: u64,
        /// One past the last byte (saturated at `u64::MAX`).
        end: u64,
        /// Its size in memory.
        memsz: u64,
    },
    /// An ELF segment says it holds more file bytes than memory bytes.
    #[error(
        "{path}: ELF segment {index} has {filesz:#x} bytes in the file but only {memsz:#x} in memory"
    )]
    ElfSegmentMalformed {
        /// The path given.
        path: String,
        /// Program header index.
        index: usize,
        /// Bytes in the file.
        filesz: u64,
        /// Bytes in memory.
        memsz: u64,
    },
    /// The initrd is not a regular file, or is empty.
    #[error("initrd {path} {what}; give the initramfs or initrd image file")]
    InitrdNotAFile {
        /// The path given.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// The initrd could not be read.
    #[error("cannot read initrd {path}: {source}")]
    InitrdRead {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The initrd does not fit below the limit.
    #[error(
        "initrd {path} ({size:#x} bytes) does not fit in guest memory between {low:#x} and {high:#x}; give more --memory"
    )]
    InitrdTooLarge {
        /// The path given.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Lowest usable address (end of the kernel).
        low: u64,
        /// Highest usable address.
        high: u64,
    },
    /// The command line is too long for the kernel.
    #[error("the kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The command line holds a NUL byte.
    #[error("the kernel command line contains a NUL byte")]
    CmdlineNul,
    /// Writing a boot structure into guest memory failed.
    #[error("cannot write the {what} at guest address {addr:#x}: {source}")]
    GuestWrite {
        /// Which structure.
        what: &'static str,
        /// Where.
        addr: u64,
        /// vm-memory's error.
        source: vm_memory::GuestMemoryError,
    },
}

/// The fields of a bzImage setup header the loader checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BzImageInfo {
    /// Boot protocol version.
    pub version: u16,
    /// Setup sectors (0 means 4).
    pub setup_sects: u8,
    /// Extended load flags.
    pub xloadflags: u16,
    /// Longest command line (boot protocol 2.06+; 255 before).
    pub cmdline_size: u32,
    /// Highest address the initrd may end at.
    pub initrd_addr_max: u32,
}

/// Parses and checks the setup header at the start of a bzImage (`head`
/// holds at least the first 0x270 bytes of the file).
pub fn parse_bzimage_header(path: &str, head: &[u8]) -> Result<BzImageInfo, LoaderError> {
    let unknown = || LoaderError::UnknownFormat {
        path: path.to_string(),
        magic: hex_prefix(head),
    };
    let u16_at = |o: usize| head.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        head.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if u32_at(0x202) != Some(BZIMAGE_MAGIC) {
        return Err(unknown());
    }
    let version = u16_at(0x206).ok_or_else(unknown)?;
    let xloadflags = if version >= 0x20c {
        u16_at(0x236).ok_or_else(unknown)?
    } else {
        0
    };
    if version < 0x20c || xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LoaderError::BzImageNot64 {
            path: path.to_string(),
            version,
            xloadflags,
        });
    }
    Ok(BzImageInfo {
        version,
        setup_sects: head.get(0x1f1).copied().ok_or_else(unknown)?,
        xloadflags,
        cmdline_size: u32_at(0x238).ok_or_else(unknown)?,
        initrd_addr_max: u32_at(0x22c).ok_or_else(unknown)?,
    })
}

fn hex_prefix(b: &[u8]) -> String {
    if b.is_empty() {
        return "nothing (the file is empty)".to_string();
    }
    b.iter()
        .take(8)
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn write<T: vm_memory::ByteValued>(
    mem: &GuestMemoryMmap,
    what: &'static str,
    addr: u64,
    v: T,
) -> Result<(), LoaderError> {
    mem.write_obj(v, GuestAddress(addr))
        .map_err(|source| LoaderError::GuestWrite { what, addr, source })
}

fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str, max: usize) -> Result<(), LoaderError> {
    if cmdline.len() > max {
        return Err(LoaderError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    if cmdline.as_bytes().contains(&0) {
        return Err(LoaderError::CmdlineNul);
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(layout::CMDLINE))
        .map_err(|source| LoaderError::GuestWrite {
            what: "command line",
            addr: layout::CMDLINE,
            source,
        })
}

/// Loads the kernel and initrd of `cfg` and writes the boot information.
pub fn load(mem: &GuestMemoryMmap, cfg: &VmConfig) -> Result<LoadedKernel, LoaderError> {
    match &cfg.kernel {
        KernelSource::MiniGuest => load_image(
            mem,
            cfg,
            "built-in mini guest",
            &mut Cursor::new(crate::guest::MINI_GUEST_ELF),
        ),
        KernelSource::Path(p) => {
            let mut f = File::open(p).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => LoaderError::KernelMissing { path: p.clone() },
                _ => LoaderError::KernelRead {
                    path: p.clone(),
                    source,
                },
            })?;
            load_image(mem, cfg, &p.display().to_string(), &mut f)
        }
    }
}

/// Loads one kernel image (any `Read + Seek` source) and its boot data.
pub fn load_image<F: Read + Seek + ReadVolatile>(
    mem: &GuestMemoryMmap,
    cfg: &VmConfig,
    name: &str,
    image: &mut F,
) -> Result<LoadedKernel, LoaderError> {
    let read_err = |source| LoaderError::KernelRead {
        path: PathBuf::from(name),
        source,
    };
    let mut head = Vec::with_capacity(0x280);
    image.seek(SeekFrom::Start(0)).map_err(read_err)?;
    image
        .by_ref()
        .take(0x280)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    let load_err = |source| LoaderError::Load {
        path: name.to_string(),
        source,
    };
    let himem = Some(GuestAddress(memory::HIMEM_START));
    let e820 = memory::e820_map(cfg.memory, &crate::platform::reserved_ranges(&cfg.platform));

    if head.starts_with(b"\x7fELF") {
        check_elf(mem, name, image)?;
        let r = Elf::load(mem, None, image, himem).map_err(load_err)?;
        let initrd = load_initrd(mem, cfg, r.kernel_end, memory::MMIO_HOLE_START)?;
        if let PvhBootCapability::PvhEntryPresent(entry) = r.pvh_boot_cap {
            write_cmdline(mem, &cfg.cmdline, layout::CMDLINE_MAX)?;
            write_pvh_info(mem, &e820, initrd)?;
            return Ok(LoadedKernel {
                format: KernelFormat::ElfPvh,
                entry: EntryPoint::Pvh {
                    entry: entry.0,
                    start_info: layout::PVH_START_INFO,
                },
                kernel_end: r.kernel_end,
                initrd,
            });
        }
        write_cmdline(mem, &cfg.cmdline, layout::CMDLINE_MAX)?;
        let hdr = setup_header {
            boot_flag: 0xaa55,
            header: BZIMAGE_MAGIC,
            version: 0x20c,
            cmdline_size: u32::try_from(layout::CMDLINE_MAX).unwrap_or(u32::MAX),
            ..Default::default()
        };
        write_boot_params(mem, hdr, &e820, initrd)?;
        return Ok(LoadedKernel {
            format: KernelFormat::Elf64,
            entry: EntryPoint::Linux64 {
                entry: r.kernel_load.0,
                boot_params: layout::BOOT_PARAMS,
            },
            kernel_end: r.kernel_end,
            initrd,
        });
    }

    if head.len() < SETUP_HEADER_OFFSET {
        return Err(LoaderError::UnknownFormat {
            path: name.to_string(),
            magic: hex_prefix(&head),
        });
    }
    let info = parse_bzimage_header(name, &head)?;
    let r = BzImage::load(mem, None, image, himem).map_err(load_err)?;
    let mut hdr = r.setup_header.unwrap_or_default();
    let max_cmdline = usize::try_from(info.cmdline_size)
        .unwrap_or(usize::MAX)
        .min(layout::CMDLINE_MAX);
    write_cmdline(mem, &cfg.cmdline, max_cmdline)?;
    let limit = u64::from(info.initrd_addr_max)
        .saturating_add(1)
        .min(memory::MMIO_HOLE_START);
    let initrd = load_initrd(mem, cfg, r.kernel_end, limit)?;
    hdr.type_of_loader = 0xff;
    write_boot_params(mem, hdr, &e820, initrd)?;
    Ok(LoadedKernel {
        format: KernelFormat::BzImage,
        entry: EntryPoint::Linux64 {
            entry: r.kernel_load.0 + 0x200,
            boot_params: layout::BOOT_PARAMS,
        },
        kernel_end: r.kernel_end,
        initrd,
    })
}

/// Most program headers read while checking an ELF (Linux's vmlinux has a
/// handful; the ELF format allows 65535, each read from the file).
const MAX_PROGRAM_HEADERS: u16 = 256;

/// Checks what linux-loader does not before it copies anything: an x86-64
/// executable, 64-bit, whose loadable segments all lie in guest RAM. Without
/// this an aarch64 image, an object file, a core dump or a segment with a
/// huge `p_memsz` failed late with a generic "cannot load" or loaded junk.
fn check_elf<F: Read + Seek>(
    mem: &GuestMemoryMmap,
    name: &str,
    image: &mut F,
) -> Result<(), LoaderError> {
    use linux_loader::elf::{Elf64_Ehdr, Elf64_Phdr, PT_LOAD};
    use vm_memory::{ByteValued, GuestMemoryBackend};
    const ELFCLASS64: u8 = 2;
    const ELFDATA2LSB: u8 = 1;
    const EM_X86_64: u16 = 62;
    const ET_EXEC: u16 = 2;
    let not_bootable = |what: String| LoaderError::ElfNotBootable {
        path: name.to_string(),
        what,
    };
    let read_err = |source| LoaderError::KernelRead {
        path: PathBuf::from(name),
        source,
    };
    let mut ehdr = Elf64_Ehdr::default();
    image.seek(SeekFrom::Start(0)).map_err(read_err)?;
    image
        .read_exact(ehdr.as_mut_slice())
        .map_err(|_| not_bootable("a truncated ELF (its header is cut short)".into()))?;
    if ehdr.e_ident[4] != ELFCLASS64 {
        return Err(not_bootable(format!(
            "a {} ELF",
            if ehdr.e_ident[4] == 1 {
                "32-bit"
            } else {
                "non-64-bit"
            }
        )));
    }
    if ehdr.e_ident[5] != ELFDATA2LSB {
        return Err(not_bootable("a big-endian ELF".into()));
    }
    if ehdr.e_machine != EM_X86_64 {
        let machine = match ehdr.e_machine {
            3 => "i386".to_string(),
            40 => "arm".to_string(),
            183 => "aarch64".to_string(),
            243 => "riscv".to_string(),
            m => format!("machine {m}"),
        };
        return Err(not_bootable(format!("an ELF for {machine}")));
    }
    if ehdr.e_type != ET_EXEC {
        let kind = match ehdr.e_type {
            1 => "a relocatable object file (ET_REL), not an executable".to_string(),
            3 => "a shared object or PIE (ET_DYN), not a fixed-address executable".to_string(),
            4 => "a core dump (ET_CORE), not an executable".to_string(),
            t => format!("an ELF of type {t}, not an executable"),
        };
        return Err(not_bootable(kind));
    }
    if ehdr.e_phnum > MAX_PROGRAM_HEADERS {
        return Err(not_bootable(format!(
            "an ELF with {} program headers (more than {MAX_PROGRAM_HEADERS})",
            ehdr.e_phnum
        )));
    }
    image
        .seek(SeekFrom::Start(ehdr.e_phoff))
        .map_err(read_err)?;
    for index in 0..usize::from(ehdr.e_phnum) {
        let mut ph = Elf64_Phdr::default();
        image.read_exact(ph.as_mut_slice()).map_err(|_| {
            not_bootable(format!(
                "a truncated ELF (program header {index} is cut short)"
            ))
        })?;
        if ph.p_type != PT_LOAD || ph.p_memsz == 0 {
            continue;
        }
        if ph.p_filesz > ph.p_memsz {
            return Err(LoaderError::ElfSegmentMalformed {
                path: name.to_string(),
                index,
                filesz: ph.p_filesz,
                memsz: ph.p_memsz,
            });
        }
        let inside = usize::try_from(ph.p_memsz)
            .ok()
            .is_some_and(|len| GuestMemoryBackend::check_range(mem, GuestAddress(ph.p_paddr), len));
        if !inside {
            return Err(LoaderError::ElfSegmentOutsideRam {
                path: name.to_string(),
                index,
                start: ph.p_paddr,
                end: ph.p_paddr.saturating_add(ph.p_memsz),
                memsz: ph.p_memsz,
            });
        }
    }
    image.seek(SeekFrom::Start(0)).map_err(read_err)?;
    Ok(())
}

/// Places the initrd at the highest page-aligned address below `limit`
/// (and below the end of low RAM) that stays above the kernel.
fn load_initrd(
    mem: &GuestMemoryMmap,
    cfg: &VmConfig,
    kernel_end: u64,
    limit: u64,
) -> Result<Option<(u64, u64)>, LoaderError> {
    let Some(path) = &cfg.initrd else {
        return Ok(None);
    };
    let read_err = |source| LoaderError::InitrdRead {
        path: path.clone(),
        source,
    };
    let mut f = File::open(path).map_err(read_err)?;
    let meta = f.metadata().map_err(read_err)?;
    // A device or pipe reports length 0 (`--initrd /dev/zero` once "loaded"
    // 0 bytes): only a regular file has a size to place.
    if !meta.is_file() {
        return Err(LoaderError::InitrdNotAFile {
            path: path.clone(),
            what: "is not a regular file",
        });
    }
    let size = meta.len();
    if size == 0 {
        return Err(LoaderError::InitrdNotAFile {
            path: path.clone(),
            what: "is empty",
        });
    }
    let high = limit.min(memory::low_ram_end(cfg.memory));
    let low = kernel_end
        .checked_add(0xfff)
        .map_or(u64::MAX, |v| v & !0xfff);
    let too_large = || LoaderError::InitrdTooLarge {
        path: path.clone(),
        size,
        low,
        high,
    };
    let addr = high.checked_sub(size).ok_or_else(too_large)? & !0xfff;
    if addr < low {
        return Err(too_large());
    }
    let len = usize::try_from(size).map_err(|_| too_large())?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut f, len)
        .map_err(|e| LoaderError::InitrdRead {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok(Some((addr, size)))
}

fn write_pvh_info(
    mem: &GuestMemoryMmap,
    e820: &[E820Entry],
    initrd: Option<(u64, u64)>,
) -> Result<(), LoaderError> {
    let entries = &e820[..e820.len().min(E820_MAX)];
    for (i, e) in entries.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        };
        let addr = layout::PVH_MEMMAP + 24 * i as u64;
        write(mem, "PVH memory map", addr, entry)?;
    }
    let mut info = hvm_start_info {
        magic: PVH_MAGIC,
        version: 1,
        cmdline_paddr: layout::CMDLINE,
        memmap_paddr: layout::PVH_MEMMAP,
        memmap_entries: u32::try_from(entries.len()).unwrap_or(0),
        // The platform's ACPI tables always start at the RSDP in the BIOS
        // area (`platform::ACPI_AREA`).
        rsdp_paddr: crate::platform::ACPI_AREA.0,
        ..Default::default()
    };
    if let Some((paddr, size)) = initrd {
        write(
            mem,
            "PVH module list",
            layout::PVH_MODLIST,
            hvm_modlist_entry {
                paddr,
                size,
                ..Default::default()
            },
        )?;
        info.nr_modules = 1;
        info.modlist_paddr = layout::PVH_MODLIST;
    }
    write(mem, "PVH start info", layout::PVH_START_INFO, info)
}

fn write_boot_params(
    mem: &GuestMemoryMmap,
    mut hdr: setup_header,
    e820: &[E820Entry],
    initrd: Option<(u64, u64)>,
) -> Result<(), LoaderError> {
    let mut bp = boot_params {
        acpi_rsdp_addr: crate::platform::ACPI_AREA.0,
        ..Default::default()
    };
    hdr.cmd_line_ptr = u32::try_from(layout::CMDLINE).unwrap_or(0);
    if let Some((addr, size)) = initrd {
        // Both below 4 GiB: the initrd is placed below the MMIO hole.
        hdr.ramdisk_image = u32::try_from(addr).unwrap_or(0);
        hdr.ramdisk_size = u32::try_from(size).unwrap_or(0);
    }
    bp.hdr = hdr;
    let n = e820.len().min(bp.e820_table.len());
    for (slot, e) in bp.e820_table.iter_mut().zip(e820.iter().take(n)) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    bp.e820_entries = u8::try_from(n).unwrap_or(u8::MAX);
    write(mem, "Linux zero page", layout::BOOT_PARAMS, bp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        memory::create_guest_memory(64 << 20).unwrap()
    }

    /// The E820 map the loader writes for `c` (RAM plus the platform's
    /// reserved ranges).
    fn expected_e820(c: &VmConfig) -> Vec<E820Entry> {
        memory::e820_map(c.memory, &crate::platform::reserved_ranges(&c.platform))
    }

    fn cfg(cmdline: &str) -> VmConfig {
        VmConfig {
            memory: 64 << 20,
            cmdline: cmdline.to_string(),
            ..Default::default()
        }
    }

    /// A minimal bzImage: one setup sector plus the boot sector, then a
    /// "protected-mode kernel" of 4 KiB of 0xcc.
    fn crafted_bzimage(version: u16, xloadflags: u16) -> Vec<u8> {
        let mut img = vec![0u8; 2 * 512 + 4096];
        img[0x1f1] = 1; // setup_sects
        img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        img[0x202..0x206].copy_from_slice(&BZIMAGE_MAGIC.to_le_bytes());
        img[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        img[0x211] = 1; // loadflags: LOADED_HIGH
        img[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
        img[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
        img[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        img[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
        for b in &mut img[1024..] {
            *b = 0xcc;
        }
        img
    }

    #[test]
    fn bzimage_header_is_parsed() {
        let img = crafted_bzimage(0x20f, 1);
        let info = parse_bzimage_header("k", &img).unwrap();
        assert_eq!(info.version, 0x20f);
        assert_eq!(info.setup_sects, 1);
        assert_eq!(info.cmdline_size, 2048);
        assert_eq!(info.initrd_addr_max, 0x7fff_ffff);
    }

    #[test]
    fn bzimage_loads_with_boot_params() {
        let m = mem();
        let img = crafted_bzimage(0x20f, 1);
        let k = load_image(&m, &cfg("console=ttyS0"), "k", &mut Cursor::new(img)).unwrap();
        assert_eq!(k.format, KernelFormat::BzImage);
        assert_eq!(
            k.entry,
            EntryPoint::Linux64 {
                entry: 0x10_0200,
                boot_params: layout::BOOT_PARAMS
            }
        );
        assert_eq!(m.read_obj::<u8>(GuestAddress(0x10_0000)).unwrap(), 0xcc);
        let bp: boot_params = m.read_obj(GuestAddress(layout::BOOT_PARAMS)).unwrap();
        let hdr = bp.hdr;
        assert_eq!({ hdr.cmd_line_ptr }, 0x2_0000);
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!(usize::from(bp.e820_entries), expected_e820(&cfg("")).len());
        let mut line = [0u8; 14];
        m.read_slice(&mut line, GuestAddress(layout::CMDLINE))
            .unwrap();
        assert_eq!(&line, b"console=ttyS0\0");
    }

    #[test]
    fn reject_bzimage_without_64bit_entry() {
        let e = parse_bzimage_header("old", &crafted_bzimage(0x20a, 0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "old is a bzImage without a 64-bit entry (boot protocol 0x20a, xloadflags 0x0); stalewalk needs \
             boot protocol 2.12+ with XLF_KERNEL_64"
        );
        assert!(matches!(
            parse_bzimage_header("x", &crafted_bzimage(0x20f, 0)),
            Err(LoaderError::BzImageNot64 { .. })
        ));
    }

    #[test]
    fn reject_bzimage_cmdline_over_its_limit() {
        let m = mem();
        let long = "x".repeat(2049);
        let e = load_image(
            &m,
            &cfg(&long),
            "k",
            &mut Cursor::new(crafted_bzimage(0x20f, 1)),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the kernel command line is 2049 bytes; this kernel accepts at most 2048"
        );
    }

    #[test]
    fn reject_unknown_formats() {
        let m = mem();
        let e = load_image(
            &m,
            &cfg(""),
            "junk.bin",
            &mut Cursor::new(vec![0x4du8, 0x5a, 0, 0, 1, 2, 3, 4, 5, 6]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "junk.bin is not a kernel format stalewalk can boot (it starts with 4d 5a 00 00 01 02 03 04): give \
             an ELF (vmlinux, with or without a PVH note) or a bzImage"
        );
        let e = load_image(&m, &cfg(""), "empty", &mut Cursor::new(Vec::new())).unwrap_err();
        assert!(
            e.to_string()
                .contains("it starts with nothing (the file is empty)"),
            "{e}"
        );
        let e = load_image(&m, &cfg(""), "big", &mut Cursor::new(vec![0u8; 0x1000])).unwrap_err();
        assert!(matches!(e, LoaderError::UnknownFormat { .. }));
    }

    /// The mini guest's ELF with header fields changed.
    fn patched_mini(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = crate::guest::MINI_GUEST_ELF.to_vec();
        edit(&mut v);
        v
    }

    fn load_bytes(bytes: Vec<u8>) -> LoaderError {
        load_image(&mem(), &cfg(""), "k.elf", &mut Cursor::new(bytes)).unwrap_err()
    }

    #[test]
    fn reject_elf_for_another_machine() {
        let e = load_bytes(patched_mini(|v| {
            v[18..20].copy_from_slice(&183u16.to_le_bytes())
        }));
        assert_eq!(
            e.to_string(),
            "k.elf is an ELF for aarch64; stalewalk boots 64-bit x86-64 executable ELFs (a vmlinux)"
        );
    }

    #[test]
    fn reject_elf_object_and_core_files() {
        for (t, what) in [(1u16, "relocatable object"), (4, "core dump")] {
            let e = load_bytes(patched_mini(|v| {
                v[16..18].copy_from_slice(&t.to_le_bytes())
            }));
            assert!(e.to_string().contains(what), "{e}");
        }
        let e = load_bytes(patched_mini(|v| v[4] = 1));
        assert!(e.to_string().contains("a 32-bit ELF"), "{e}");
    }

    #[test]
    fn reject_elf_segment_outside_ram() {
        // The first PT_LOAD's p_memsz set to 1 TiB (a 256 MiB guest).
        let e = load_bytes(patched_mini(|v| {
            let phoff = usize::try_from(u64::from_le_bytes(v[32..40].try_into().unwrap())).unwrap();
            let phentsize = usize::from(u16::from_le_bytes(v[54..56].try_into().unwrap()));
            let phnum = usize::from(u16::from_le_bytes(v[56..58].try_into().unwrap()));
            let ph = (0..phnum)
                .map(|i| phoff + i * phentsize)
                .find(|&o| u32::from_le_bytes(v[o..o + 4].try_into().unwrap()) == 1)
                .expect("a PT_LOAD");
            v[ph + 40..ph + 48].copy_from_slice(&(1u64 << 40).to_le_bytes());
        }));
        let text = e.to_string();
        assert!(
            matches!(e, LoaderError::ElfSegmentOutsideRam { memsz, .. } if memsz == 1 << 40),
            "{text}"
        );
        assert!(text.contains("lies outside guest RAM"), "{text}");
    }

    #[test]
    fn reject_initrd_that_is_not_a_regular_file_or_empty() {
        let dir = std::env::temp_dir().join(format!("stalewalk-initrd-nf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.img");
        std::fs::write(&empty, b"").unwrap();
        for (path, what) in [
            (PathBuf::from("/dev/zero"), "is not a regular file"),
            (empty, "is empty"),
        ] {
            let c = VmConfig {
                initrd: Some(path),
                ..cfg("")
            };
            let e = load_image(
                &mem(),
                &c,
                "mini",
                &mut Cursor::new(crate::guest::MINI_GUEST_ELF),
            )
            .unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reject_missing_kernel_file() {
        let m = mem();
        let c = VmConfig {
            kernel: KernelSource::Path("/nonexistent/vmlinux".into()),
            ..cfg("")
        };
        let e = load(&m, &c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "kernel file /nonexistent/vmlinux not found (leave out --kernel to boot the built-in mini guest)"
        );
    }

    #[test]
    fn elf_with_pvh_note_gets_start_info() {
        let m = mem();
        let k = load_image(
            &m,
            &cfg("scenario=smoke"),
            "mini",
            &mut Cursor::new(crate::guest::MINI_GUEST_ELF),
        )
        .unwrap();
        assert_eq!(k.format, KernelFormat::ElfPvh);
        let EntryPoint::Pvh { entry, start_info } = k.entry else {
            panic!("not PVH: {k:?}")
        };
        assert!((0x10_0000..k.kernel_end).contains(&entry));
        let si: hvm_start_info = m.read_obj(GuestAddress(start_info)).unwrap();
        assert_eq!(si.magic, PVH_MAGIC);
        assert_eq!(si.cmdline_paddr, layout::CMDLINE);
        let want = expected_e820(&cfg(""));
        assert_eq!(si.memmap_entries as usize, want.len());
        let entries: Vec<hvm_memmap_table_entry> = (0..want.len() as u64)
            .map(|i| {
                m.read_obj(GuestAddress(layout::PVH_MEMMAP + 24 * i))
                    .unwrap()
            })
            .collect();
        for (got, want) in entries.iter().zip(&want) {
            assert_eq!(
                (got.addr, got.size, got.type_),
                (want.addr, want.size, want.kind)
            );
        }
        assert!(
            entries
                .iter()
                .any(|e| (e.addr, e.size, e.type_) == (0x10_0000, (64 << 20) - 0x10_0000, 1))
        );
    }

    #[test]
    fn elf_without_pvh_note_gets_a_zero_page() {
        let m = mem();
        let k = load_image(
            &m,
            &cfg(""),
            "nopvh",
            &mut Cursor::new(crate::guest::MINI_GUEST_ELF_NO_PVH),
        )
        .unwrap();
        assert_eq!(k.format, KernelFormat::Elf64);
        let EntryPoint::Linux64 {
            entry,
            boot_params: bp_addr,
        } = k.entry
        else {
            panic!("not 64-bit: {k:?}")
        };
        assert!((0x10_0000..k.kernel_end).contains(&entry));
        let bp: boot_params = m.read_obj(GuestAddress(bp_addr)).unwrap();
        assert_eq!(usize::from(bp.e820_entries), expected_e820(&cfg("")).len());
        let hdr = bp.hdr;
        assert_eq!({ hdr.cmd_line_ptr }, 0x2_0000);
    }

    #[test]
    fn reject_initrd_that_does_not_fit() {
        let dir = std::env::temp_dir().join(format!("stalewalk-initrd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("big.img");
        let f = File::create(&p).unwrap();
        f.set_len(80 << 20).unwrap();
        let m = mem();
        let c = VmConfig {
            initrd: Some(p.clone()),
            ..cfg("")
        };
        let e = load_image(
            &m,
            &c,
            "mini",
            &mut Cursor::new(crate::guest::MINI_GUEST_ELF),
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "initrd {} (0x5000000 bytes) does not fit",
                p.display()
            )),
            "{e}"
        );
        let small = dir.join("small.img");
        std::fs::write(&small, b"initrd!").unwrap();
        let c = VmConfig {
            initrd: Some(small),
            ..cfg("")
        };
        let k = load_image(
            &m,
            &c,
            "mini",
            &mut Cursor::new(crate::guest::MINI_GUEST_ELF),
        )
        .unwrap();
        let (addr, size) = k.initrd.unwrap();
        assert_eq!(size, 7);
        assert_eq!(addr % 4096, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
