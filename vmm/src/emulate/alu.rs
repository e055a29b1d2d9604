//! The integer instructions the VMM runs for the guest, as pure functions
//! of their inputs: the result and the flags the SDM defines for each.
//! Flags the SDM leaves undefined are left as they were (not in the
//! update's mask).

/// RFLAGS.CF.
pub const CF: u64 = 1 << 0;
/// RFLAGS.PF.
pub const PF: u64 = 1 << 2;
/// RFLAGS.AF.
pub const AF: u64 = 1 << 4;
/// RFLAGS.ZF.
pub const ZF: u64 = 1 << 6;
/// RFLAGS.SF.
pub const SF: u64 = 1 << 7;
/// RFLAGS.OF.
pub const OF: u64 = 1 << 11;

/// Which flags an instruction writes (`mask`) and to what (`value`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// The flags the instruction defines.
    pub mask: u64,
    /// Their new values (only bits in `mask`).
    pub value: u64,
}

impl Flags {
    /// `rflags` with this update applied.
    pub fn apply(self, rflags: u64) -> u64 {
        (rflags & !self.mask) | (self.value & self.mask)
    }

    fn set(mut self, flag: u64, on: bool) -> Self {
        self.mask |= flag;
        if on {
            self.value |= flag;
        }
        self
    }
}

/// The integer operations the VMM emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `popcnt`.
    Popcnt,
    /// `lzcnt`.
    Lzcnt,
    /// `tzcnt`.
    Tzcnt,
    /// `andn` (BMI1): `!a & b`.
    Andn,
    /// `bextr` (BMI1): bits of `a` picked by the start/length in `b`.
    Bextr,
    /// `blsi` (BMI1).
    Blsi,
    /// `blsmsk` (BMI1).
    Blsmsk,
    /// `blsr` (BMI1).
    Blsr,
    /// `bzhi` (BMI2): `a` with bits from index `b[7:0]` up cleared.
    Bzhi,
    /// `pdep` (BMI2): bits of `a` deposited at the set bits of `b`.
    Pdep,
    /// `pext` (BMI2): bits of `a` at the set bits of `b`, packed.
    Pext,
    /// `rorx` (BMI2): `a` rotated right by `b`.
    Rorx,
    /// `sarx` (BMI2).
    Sarx,
    /// `shlx` (BMI2).
    Shlx,
    /// `shrx` (BMI2).
    Shrx,
}

/// All ones in the low `bits` bits (none for 0, all for 64 and more).
pub fn ones(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

fn msb(v: u64, bits: u32) -> bool {
    bits > 0 && bits <= 64 && (v >> (bits - 1)) & 1 != 0
}

/// Runs `op` on `a` and `b` at operand size `bits` (16, 32 or 64; inputs
/// are truncated to it): the result (truncated) and the flags it defines.
/// Unary operations ignore `b`.
pub fn compute(op: Op, bits: u32, a: u64, b: u64) -> (u64, Flags) {
    let m = ones(bits);
    let (a, b) = (a & m, b & m);
    let none = Flags::default();
    match op {
        Op::Popcnt => {
            let r = u64::from(a.count_ones());
            let f = Flags {
                mask: CF | PF | AF | ZF | SF | OF,
                value: 0,
            };
            (r, f.set(ZF, a == 0))
        }
        Op::Lzcnt => {
            let r = if a == 0 {
                u64::from(bits)
            } else {
                u64::from(a.leading_zeros() - (64 - bits))
            };
            (r, none.set(CF, a == 0).set(ZF, r == 0))
        }
        Op::Tzcnt => {
            let r = if a == 0 {
                u64::from(bits)
            } else {
                u64::from(a.trailing_zeros())
            };
            (r, none.set(CF, a == 0).set(ZF, r == 0))
        }
        Op::Andn => {
            let r = !a & b & m;
            let f = none.set(CF, false).set(OF, false);
            (r, f.set(SF, msb(r, bits)).set(ZF, r == 0))
        }
        Op::Bextr => {
            let start = u32::try_from(b & 0xff).unwrap_or(u32::MAX);
            let len = u32::try_from((b >> 8) & 0xff).unwrap_or(u32::MAX);
            let shifted = if start >= bits { 0 } else { a >> start };
            let r = if len >= bits {
                shifted
            } else {
                shifted & ones(len)
            };
            (r, none.set(CF, false).set(OF, false).set(ZF, r == 0))
        }
        Op::Blsi => {
            let r = a.wrapping_neg() & a & m;
            let f = none.set(CF, a != 0).set(OF, false);
            (r, f.set(SF, msb(r, bits)).set(ZF, r == 0))
        }
        Op::Blsmsk => {
            let r = (a.wrapping_sub(1) ^ a) & m;
            let f = none.set(CF, a == 0).set(OF, false).set(ZF, false);
            (r, f.set(SF, msb(r, bits)))
        }
        Op::Blsr => {
            let r = a.wrapping_sub(1) & a & m;
            let f = none.set(CF, a == 0).set(OF, false);
            (r, f.set(SF, msb(r, bits)).set(ZF, r == 0))
        }
        Op::Bzhi => {
            let n = u32::try_from(b & 0xff).unwrap_or(u32::MAX);
            let r = if n < bits { a & ones(n) } else { a };
            let f = none.set(CF, n > bits - 1).set(OF, false);
            (r, f.set(SF, msb(r, bits)).set(ZF, r == 0))
        }
        Op::Pdep => {
            let (mut r, mut k, mut mask) = (0u64, 0u32, b);
            while mask != 0 {
                let bit = mask & mask.wrapping_neg();
                if (a >> k) & 1 != 0 {
                    r |= bit;
                }
                k += 1;
                mask &= mask - 1;
            }
            (r, none)
        }
        Op::Pext => {
            let (mut r, mut k, mut mask) = (0u64, 0u32, b);
            while mask != 0 {
                let bit = mask & mask.wrapping_neg();
                if a & bit != 0 {
                    r |= 1 << k;
                }
                k += 1;
                mask &= mask - 1;
            }
            (r, none)
        }
        Op::Rorx => {
            let n = u32::try_from(b & u64::from(bits - 1)).unwrap_or(0);
            let r = if n == 0 {
                a
            } else {
                ((a >> n) | (a << (bits - n))) & m
            };
            (r, none)
        }
        Op::Sarx | Op::Shlx | Op::Shrx => {
            let n = u32::try_from(b & u64::from(bits - 1)).unwrap_or(0);
            let r = match op {
                Op::Shlx => (a << n) & m,
                Op::Shrx => a >> n,
                _ => {
                    // Sign-extend from `bits`, shift, truncate.
                    let s = 64 - bits;
                    #[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
                    let v = (((a << s) as i64) >> s >> n) as u64;
                    v & m
                }
            };
            (r, none)
        }
    }
}

/// `mulx`: the unsigned product of `a` and `b` at `bits` (32 or 64), as
/// (high half, low half). No flags.
pub fn mulx(bits: u32, a: u64, b: u64) -> (u64, u64) {
    let m = ones(bits);
    let p = u128::from(a & m) * u128::from(b & m);
    #[allow(clippy::cast_possible_truncation)]
    let (hi, lo) = ((p >> bits) as u64, p as u64);
    (hi & m, lo & m)
}

/// `movbe`: the low `bits` bits of `v` with their bytes reversed.
pub fn byte_swap(bits: u32, v: u64) -> u64 {
    match bits {
        16 => u64::from(u16::swap_bytes((v & 0xffff) as u16)),
        32 => u64::from(u32::swap_bytes((v & 0xffff_ffff) as u32)),
        _ => v.swap_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(compute(Op::Popcnt, 64, 0xff00, 0).0, 8);
        assert_eq!(compute(Op::Popcnt, 64, 0, 0).1.value, ZF);
        assert_eq!(compute(Op::Lzcnt, 32, 1, 0).0, 31);
        assert_eq!(
            compute(Op::Lzcnt, 16, 0, 0),
            (
                16,
                Flags {
                    mask: CF | ZF,
                    value: CF
                }
            )
        );
        assert_eq!(compute(Op::Tzcnt, 64, 0x80, 0).0, 7);
        assert_eq!(compute(Op::Bextr, 64, 0xabcd, 0x0804).0, 0xbc);
        assert_eq!(compute(Op::Bzhi, 64, u64::MAX, 12).0, 0xfff);
        assert_eq!(compute(Op::Bzhi, 32, 5, 40).1.value & CF, CF);
        assert_eq!(compute(Op::Pdep, 64, 0b101, 0xf0).0, 0x50);
        assert_eq!(compute(Op::Pext, 64, 0x50, 0xf0).0, 0b101);
        assert_eq!(compute(Op::Sarx, 32, 0x8000_0000, 31).0, 0xffff_ffff);
        assert_eq!(
            compute(Op::Shlx, 64, 1, 65).0,
            2,
            "count is masked to 6 bits"
        );
        assert_eq!(compute(Op::Rorx, 32, 1, 1).0, 0x8000_0000);
        assert_eq!(mulx(64, u64::MAX, 2), (1, u64::MAX - 1));
        assert_eq!(byte_swap(32, 0x1122_3344), 0x4433_2211);
        assert_eq!(byte_swap(16, 0xffff_1122), 0x2211);
    }

    /// Runs the instruction natively on the host; `None` where the host
    /// lacks the feature.
    fn native(op: Op, bits: u32, a: u64, b: u64, flags_in: u64) -> Option<(u64, u64)> {
        use std::arch::asm;
        let bmi1 = std::arch::is_x86_feature_detected!("bmi1");
        let bmi2 = std::arch::is_x86_feature_detected!("bmi2");
        let have = match op {
            Op::Popcnt => std::arch::is_x86_feature_detected!("popcnt"),
            Op::Lzcnt => std::arch::is_x86_feature_detected!("lzcnt"),
            Op::Tzcnt | Op::Andn | Op::Bextr | Op::Blsi | Op::Blsmsk | Op::Blsr => bmi1,
            _ => bmi2,
        };
        if !have {
            return None;
        }
        let mut r: u64;
        let mut f = flags_in;
        macro_rules! bin {
            ($t:expr, $e:expr) => {
                // SAFETY: register-only instructions the host supports
                // (checked above); flags are saved through the stack.
                unsafe {
                    if bits == 64 {
                        asm!("push {f}", "popfq", $t, "/* {b} */", "pushfq", "pop {f}",
                            f = inout(reg) f, r = out(reg) r, a = in(reg) a, b = in(reg) b);
                    } else {
                        asm!("push {f}", "popfq", $e, "/* {b} */", "pushfq", "pop {f}",
                            f = inout(reg) f, r = out(reg) r, a = in(reg) a, b = in(reg) b);
                    }
                }
            };
        }
        match op {
            Op::Popcnt => bin!("popcnt {r}, {a}", "popcnt {r:e}, {a:e}"),
            Op::Lzcnt => bin!("lzcnt {r}, {a}", "lzcnt {r:e}, {a:e}"),
            Op::Tzcnt => bin!("tzcnt {r}, {a}", "tzcnt {r:e}, {a:e}"),
            Op::Andn => bin!("andn {r}, {a}, {b}", "andn {r:e}, {a:e}, {b:e}"),
            Op::Bextr => bin!("bextr {r}, {a}, {b}", "bextr {r:e}, {a:e}, {b:e}"),
            Op::Blsi => bin!("blsi {r}, {a}", "blsi {r:e}, {a:e}"),
            Op::Blsmsk => bin!("blsmsk {r}, {a}", "blsmsk {r:e}, {a:e}"),
            Op::Blsr => bin!("blsr {r}, {a}", "blsr {r:e}, {a:e}"),
            Op::Bzhi => bin!("bzhi {r}, {a}, {b}", "bzhi {r:e}, {a:e}, {b:e}"),
            Op::Pdep => bin!("pdep {r}, {a}, {b}", "pdep {r:e}, {a:e}, {b:e}"),
            Op::Pext => bin!("pext {r}, {a}, {b}", "pext {r:e}, {a:e}, {b:e}"),
            Op::Sarx => bin!("sarx {r}, {a}, {b}", "sarx {r:e}, {a:e}, {b:e}"),
            Op::Shlx => bin!("shlx {r}, {a}, {b}", "shlx {r:e}, {a:e}, {b:e}"),
            Op::Shrx => bin!("shrx {r}, {a}, {b}", "shrx {r:e}, {a:e}, {b:e}"),
            Op::Rorx => {
                // rorx takes an immediate: test a fixed set of counts.
                macro_rules! rorx {
                    ($($n:literal)*) => {
                        match b & 0x3f {
                            $($n => bin!(concat!("rorx {r}, {a}, ", $n), concat!("rorx {r:e}, {a:e}, ", $n)),)*
                            _ => return None,
                        }
                    };
                }
                rorx!(0 1 7 8 13 31 32 33 63)
            }
        }
        Some((r & ones(bits), f))
    }

    /// Flags the user-mode `popfq` can set and all of these instructions
    /// may touch.
    const ARITH: u64 = CF | PF | AF | ZF | SF | OF;

    fn check(op: Op, bits: u32, a: u64, b: u64, flags_in: u64) -> Result<(), TestCaseError> {
        let flags_in = (flags_in & ARITH) | 0x2;
        let Some((want, want_flags)) = native(op, bits, a, b, flags_in) else {
            return Ok(());
        };
        let (got, f) = compute(op, bits, a, b);
        prop_assert_eq!(got, want, "{:?}/{} a={:#x} b={:#x}", op, bits, a, b);
        let got_flags = f.apply(flags_in);
        // Undefined flags may differ; every defined one must match.
        prop_assert_eq!(
            got_flags & f.mask,
            want_flags & f.mask,
            "{:?}/{} flags a={:#x} b={:#x}",
            op,
            bits,
            a,
            b
        );
        Ok(())
    }

    const OPS: [Op; 15] = [
        Op::Popcnt,
        Op::Lzcnt,
        Op::Tzcnt,
        Op::Andn,
        Op::Bextr,
        Op::Blsi,
        Op::Blsmsk,
        Op::Blsr,
        Op::Bzhi,
        Op::Pdep,
        Op::Pext,
        Op::Rorx,
        Op::Sarx,
        Op::Shlx,
        Op::Shrx,
    ];

    /// Inputs with the edge cases random values rarely hit: zero, one bit,
    /// all ones, small counts and bextr controls.
    fn operand() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just(u64::MAX),
            (0u32..64).prop_map(|s| 1u64 << s),
            0u64..80,
            (0u64..70, 0u64..70).prop_map(|(s, l)| s | (l << 8)),
            any::<u64>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn matches_the_host_cpu(op in 0usize..OPS.len(), wide in any::<bool>(),
                                a in operand(), b in operand(), flags in any::<u64>()) {
            let bits = if wide { 64 } else { 32 };
            check(OPS[op], bits, a, b, flags)?;
        }
    }

    /// Whether the host runs every instruction natively; prints the
    /// SKIPPED line where not.
    fn host_has_all(test: &str) -> bool {
        let all = ["popcnt", "lzcnt", "bmi1", "bmi2"];
        let missing: Vec<&str> = all
            .into_iter()
            .filter(|f| match *f {
                "popcnt" => !std::arch::is_x86_feature_detected!("popcnt"),
                "lzcnt" => !std::arch::is_x86_feature_detected!("lzcnt"),
                "bmi1" => !std::arch::is_x86_feature_detected!("bmi1"),
                _ => !std::arch::is_x86_feature_detected!("bmi2"),
            })
            .collect();
        if !missing.is_empty() {
            stalewalk_integration::skip(
                test,
                "needs a host CPU with popcnt, lzcnt, BMI1 and BMI2",
                &format!("missing: {}", missing.join(" ")),
            );
        }
        missing.is_empty()
    }

    #[test]
    fn every_op_matches_the_host_on_edges() {
        if !host_has_all("every_op_matches_the_host_on_edges") {
            return;
        }
        let edges = [
            0u64,
            1,
            2,
            0x1f,
            0x20,
            0x3f,
            0x40,
            0x8000_0000,
            0xffff_ffff,
            u64::MAX,
            0x0810,
        ];
        for op in OPS {
            for bits in [32, 64] {
                for a in edges {
                    for b in edges {
                        check(op, bits, a, b, 0).unwrap();
                        check(op, bits, a, b, ARITH).unwrap();
                    }
                }
            }
        }
    }
}
