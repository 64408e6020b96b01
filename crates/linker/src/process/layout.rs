//! Who owns which bytes of the shared linear memory and which slots of the shared table.
//!
//! Memory layout of a process started from a position-independent main program:
//!
//! ```text
//! 0            GLOBAL_BASE      main data     stack (grows down)        heap (sbrk)      library regions
//! |  null guard  |  __memory_base  |  __stack_low .. __stack_high  | __heap_base..__heap_end | ...
//! ```
//!
//! Every region the linker hands out (a library's data, its TLS block, argv) is obtained by
//! growing the memory itself (`memory.grow` from the host) and is never handed out by the
//! program's `sbrk`, which also only ever grows the memory: each byte has exactly one owner.
//! Regions given back by `dlclose` go to a first-fit free list, are zeroed when reused, and
//! coalesce with their neighbours.

/// Bytes below the first data region, so that address 0 (NULL) is never a valid object.
pub const GLOBAL_BASE: u32 = 1024;
/// Bytes in a wasm page.
pub const PAGE: u64 = 65536;

/// Rounds `v` up to a multiple of `align` (a power of two); `None` on overflow.
pub fn align_up(v: u64, align: u64) -> Option<u64> {
    let mask = align.checked_sub(1)?;
    v.checked_add(mask).map(|x| x & !mask)
}

/// First-fit free list of linear-memory ranges that the linker owns.
#[derive(Debug, Default)]
pub struct Regions {
    /// Free `(start, len)` ranges, sorted by start, never adjacent.
    free: Vec<(u64, u64)>,
}

impl Regions {
    /// Takes `size` bytes aligned to `align` from the free list, if a range fits.
    pub fn take(&mut self, size: u64, align: u64) -> Option<u64> {
        for i in 0..self.free.len() {
            let (start, len) = self.free[i];
            let Some(at) = align_up(start, align) else {
                continue;
            };
            let end = start + len;
            if at.checked_add(size).is_some_and(|e| e <= end) {
                self.free.remove(i);
                if at > start {
                    self.put(start, at - start);
                }
                if at + size < end {
                    self.put(at + size, end - (at + size));
                }
                return Some(at);
            }
        }
        None
    }

    /// Gives a range back, merging it with adjacent free ranges.
    pub fn put(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        let i = self.free.partition_point(|&(s, _)| s < start);
        self.free.insert(i, (start, len));
        if i + 1 < self.free.len() && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
    }

    /// Total free bytes (for tests and diagnostics).
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|r| r.1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_align_and_coalesce() {
        let mut r = Regions::default();
        r.put(100, 50);
        r.put(1000, 100);
        assert_eq!(r.take(60, 1), Some(1000));
        // 100..150 has no 64-aligned 30 bytes (128+30 > 150); 1060..1100 neither (1088+30 > 1100).
        assert_eq!(r.take(30, 64), None);
        assert_eq!(r.take(8, 16), Some(112));
        assert_eq!(r.free_bytes(), 50 + 40 - 8);
        r.put(112, 8);
        r.put(1000, 60);
        assert_eq!(r.free, vec![(100, 50), (1000, 100)]);
        r.put(150, 850);
        assert_eq!(r.free, vec![(100, 1000)]);
        assert_eq!(align_up(u64::MAX, 16), None);
    }
}
