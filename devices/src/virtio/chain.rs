//! Descriptor chains as lists of guest buffers: collecting a chain's
//! segments and moving bytes in and out of a run of segments through the
//! device's DMA memory (which may be the vIOMMU).

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

/// Bytes moved per guest-memory access: bounds the host buffer a guest
/// descriptor of any length makes us allocate.
pub const PIECE: usize = 64 * 1024;

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest (DMA) address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable.
    pub writable: bool,
}

/// Errors moving data through a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A guest address could not be accessed (not memory, or the vIOMMU
    /// refused the translation).
    #[error("DMA to {addr:#x} failed")]
    Access {
        /// The address.
        addr: u64,
    },
    /// The segments are shorter than the transfer.
    #[error("chain too short: {need} bytes needed at offset {offset}")]
    TooShort {
        /// Bytes needed.
        need: usize,
        /// Where in the run they were needed.
        offset: u64,
    },
}

/// The segments of `chain`, in order. The chain iterator stops after
/// queue-size descriptors, so a looping chain cannot hang us.
pub fn segments<M>(chain: DescriptorChain<&M>) -> Vec<Segment>
where
    M: GuestMemory,
{
    chain
        .map(|d| Segment {
            addr: d.addr().0,
            len: d.len(),
            writable: d.is_write_only(),
        })
        .collect()
}

/// Total length of `segs`.
pub fn total_len(segs: &[Segment]) -> u64 {
    segs.iter().map(|s| u64::from(s.len)).sum()
}

/// Calls `f(guest_addr, offset_in_transfer, len)` for each piece (at most
/// [`PIECE`] bytes, never crossing a segment) of the `len` bytes starting
/// `skip` bytes into the run `segs`.
fn pieces(
    segs: &[Segment],
    skip: u64,
    len: usize,
    mut f: impl FnMut(u64, usize, usize) -> Result<(), ChainError>,
) -> Result<(), ChainError> {
    let mut skip = skip;
    let mut done = 0usize;
    for s in segs {
        if done == len {
            break;
        }
        let slen = u64::from(s.len);
        if skip >= slen {
            skip -= slen;
            continue;
        }
        let mut off = skip;
        skip = 0;
        while off < slen && done < len {
            let n = usize::try_from((slen - off).min(PIECE as u64))
                .unwrap_or(PIECE)
                .min(len - done);
            let addr = s
                .addr
                .checked_add(off)
                .ok_or(ChainError::Access { addr: s.addr })?;
            f(addr, done, n)?;
            done += n;
            off += n as u64;
        }
    }
    if done < len {
        return Err(ChainError::TooShort {
            need: len - done,
            offset: skip,
        });
    }
    Ok(())
}

/// Reads `buf.len()` bytes starting `skip` bytes into the run `segs`.
pub fn read<M: GuestMemory>(
    mem: &M,
    segs: &[Segment],
    skip: u64,
    buf: &mut [u8],
) -> Result<(), ChainError> {
    let len = buf.len();
    pieces(segs, skip, len, |addr, at, n| {
        mem.read_slice(&mut buf[at..at + n], GuestAddress(addr))
            .map_err(|_| ChainError::Access { addr })
    })
}

/// Writes `buf` starting `skip` bytes into the run `segs`.
pub fn write<M: GuestMemory>(
    mem: &M,
    segs: &[Segment],
    skip: u64,
    buf: &[u8],
) -> Result<(), ChainError> {
    pieces(segs, skip, buf.len(), |addr, at, n| {
        mem.write_slice(&buf[at..at + n], GuestAddress(addr))
            .map_err(|_| ChainError::Access { addr })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn seg(addr: u64, len: u32) -> Segment {
        Segment {
            addr,
            len,
            writable: true,
        }
    }

    #[test]
    fn read_and_write_across_segments() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let segs = [seg(0x1000, 4), seg(0x2000, 2), seg(0x3000, 8)];
        write(&mem, &segs, 2, &[1, 2, 3, 4, 5, 6]).unwrap();
        let mut b = [0u8; 4];
        mem.read_slice(&mut b, GuestAddress(0x1000)).unwrap();
        assert_eq!(b, [0, 0, 1, 2]);
        let mut all = [0u8; 6];
        read(&mem, &segs, 2, &mut all).unwrap();
        assert_eq!(all, [1, 2, 3, 4, 5, 6]);
        assert_eq!(total_len(&segs), 14);
    }

    #[test]
    fn reject_short_chains_and_bad_addresses() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let segs = [seg(0x1000, 4)];
        let mut b = [0u8; 8];
        assert!(matches!(
            read(&mem, &segs, 0, &mut b),
            Err(ChainError::TooShort { need: 4, .. })
        ));
        assert_eq!(
            write(&mem, &[seg(0x20000, 4)], 0, &[1]),
            Err(ChainError::Access { addr: 0x20000 })
        );
        assert!(write(&mem, &[seg(u64::MAX, 4)], 1, &[1]).is_err());
    }
}
