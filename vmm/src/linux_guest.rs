//! What the VMM adds for a Linux guest: recognising a Linux kernel image,
//! and the command-line switches that stand in for CPUID bits the VMM
//! cannot hide on hosts whose KVM emulates guest kernel mode
//! ([`crate::cpuid::linux_switches`], docs/EMULATION.md).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The bzImage setup header's magic ("HdrS") at offset 0x202.
const BZIMAGE_MAGIC_OFFSET: usize = 0x202;
const PT_NOTE: u32 = 4;
/// Notes read per PT_NOTE segment at most (Linux's are a few hundred bytes).
const MAX_NOTES: u64 = 64 << 10;
/// Program headers looked at, at most.
const MAX_PHDRS: u16 = 64;

fn le_u16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Whether an ELF note area holds a note named "Linux" (Linux's vmlinux
/// carries them; the mini guest does not).
fn notes_name_linux(notes: &[u8]) -> bool {
    let align4 = |n: usize| n.div_ceil(4) * 4;
    let mut off = 0usize;
    while let (Some(namesz), Some(descsz)) = (le_u32(notes, off), le_u32(notes, off + 4)) {
        let (Ok(namesz), Ok(descsz)) = (usize::try_from(namesz), usize::try_from(descsz)) else {
            return false;
        };
        let name_at = off + 12;
        if notes.get(name_at..name_at.saturating_add(namesz)) == Some(b"Linux\0") {
            return true;
        }
        let Some(next) = name_at
            .checked_add(align4(namesz))
            .and_then(|n| n.checked_add(align4(descsz)))
        else {
            return false;
        };
        if next <= off {
            return false;
        }
        off = next;
    }
    false
}

/// Whether the 64-bit ELF `f` has a note named "Linux".
fn elf_is_linux(f: &mut File, head: &[u8]) -> std::io::Result<bool> {
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (le_u64(head, 0x20), le_u16(head, 0x36), le_u16(head, 0x38))
    else {
        return Ok(false);
    };
    if phentsize < 0x38 {
        return Ok(false);
    }
    for i in 0..phnum.min(MAX_PHDRS) {
        let mut ph = [0u8; 0x38];
        f.seek(SeekFrom::Start(
            phoff.saturating_add(u64::from(i) * u64::from(phentsize)),
        ))?;
        if f.read_exact(&mut ph).is_err() {
            return Ok(false);
        }
        if le_u32(&ph, 0) != Some(PT_NOTE) {
            continue;
        }
        let (Some(offset), Some(size)) = (le_u64(&ph, 8), le_u64(&ph, 0x20)) else {
            continue;
        };
        let mut notes = Vec::new();
        f.seek(SeekFrom::Start(offset))?;
        f.by_ref()
            .take(size.min(MAX_NOTES))
            .read_to_end(&mut notes)?;
        if notes_name_linux(&notes) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `path` is a Linux kernel: a bzImage (Linux's boot protocol) or
/// an ELF `vmlinux` with Linux's ELF notes.
pub fn is_linux_kernel(path: &Path) -> std::io::Result<bool> {
    let mut f = File::open(path)?;
    let mut head = Vec::with_capacity(0x240);
    f.by_ref().take(0x240).read_to_end(&mut head)?;
    if head.starts_with(b"\x7fELF") {
        return elf_is_linux(&mut f, &head);
    }
    Ok(head.get(BZIMAGE_MAGIC_OFFSET..BZIMAGE_MAGIC_OFFSET + 4) == Some(b"HdrS"))
}

/// `cmdline` with `words` appended.
pub fn with_words(cmdline: &str, words: &[String]) -> String {
    let mut s = cmdline.trim_end().to_string();
    for w in words {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(w);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&u32::try_from(name.len()).unwrap().to_le_bytes());
        v.extend_from_slice(&u32::try_from(desc.len()).unwrap().to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(name);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v.extend_from_slice(desc);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v
    }

    #[test]
    fn finds_the_linux_note_among_others() {
        let mut n = note(b"Xen\0", &[1, 2, 3, 4, 5, 6, 7, 8]);
        n.extend(note(b"GNU\0", &[9; 20]));
        assert!(!notes_name_linux(&n));
        n.extend(note(b"Linux\0", &[0; 4]));
        assert!(notes_name_linux(&n));
        // Hostile sizes end the walk without a panic.
        let mut bad = note(b"Xen\0", &[]);
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(!notes_name_linux(&bad));
        assert!(!notes_name_linux(&[1, 2, 3]));
    }

    fn write_temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("stalewalk-{name}-{}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn the_mini_guest_is_not_linux_and_a_bzimage_is() {
        let mini = write_temp("kind-mini", crate::guest::MINI_GUEST_ELF);
        assert!(!is_linux_kernel(&mini).unwrap());
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let bzp = write_temp("kind-bz", &bz);
        assert!(is_linux_kernel(&bzp).unwrap());
        let junk = write_temp("kind-junk", &[0u8; 16]);
        assert!(!is_linux_kernel(&junk).unwrap());
        for p in [mini, bzp, junk] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn an_elf_with_a_linux_note_is_linux() {
        // A minimal ELF64 header with one PT_NOTE program header.
        let notes = note(b"Linux\0", &[0; 4]);
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let ph = 0x40;
        elf[ph..ph + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        let off = u64::try_from(elf.len()).unwrap();
        elf[ph + 8..ph + 16].copy_from_slice(&off.to_le_bytes());
        let size = u64::try_from(notes.len()).unwrap();
        elf[ph + 0x20..ph + 0x28].copy_from_slice(&size.to_le_bytes());
        elf.extend_from_slice(&notes);
        let p = write_temp("kind-elf", &elf);
        assert!(is_linux_kernel(&p).unwrap());
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn words_are_appended() {
        let w = vec!["noxsave".to_string(), "clearcpuid=popcnt".to_string()];
        assert_eq!(
            with_words("console=ttyS0 ", &w),
            "console=ttyS0 noxsave clearcpuid=popcnt"
        );
        assert_eq!(with_words("", &w), "noxsave clearcpuid=popcnt");
    }
}
