//! Backs the loaded index with transparent huge pages (Linux, glibc targets).
//!
//! A decision on a large index is a chain of dependent cache misses, and with
//! 4 KiB pages most of them miss the TLB as well: at XL huge pages take 7–14 %
//! off a decision for 4 MB of memory (BENCHMARKS.md §B.2). glibc's malloc never asks
//! for huge pages, and distributions default transparent huge pages to
//! `madvise`, so once the index is built warden advises its own heap:
//! `MADV_HUGEPAGE` marks each anonymous region (khugepaged may then also
//! collapse what the heap grows into later), and `MADV_COLLAPSE` (Linux 6.1)
//! turns what is resident now into 2 MiB pages at once. Both are advice: the
//! memory's contents do not change, and a kernel that declines is only slower.

use std::io;

/// What [`advise_heap`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Advised {
    /// Anonymous regions advised.
    pub regions: usize,
    /// Bytes in those regions (whole 2 MiB ranges only).
    pub bytes: usize,
    /// Regions the kernel did not collapse (no THP, an old kernel, no free
    /// huge pages); they stay in small pages.
    pub not_collapsed: usize,
}

const HUGE_PAGE: usize = 2 << 20;

/// Advises every private, writable, anonymous mapping of this process (the
/// heap, the allocator's arenas and large allocations) to use huge pages.
/// Synchronous and CPU-bound (about 2 s for the XL index): run it on a
/// blocking thread.
pub fn advise_heap() -> io::Result<Advised> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut advised = Advised::default();
    for range in maps.lines().filter_map(anonymous_huge_range) {
        advised.regions += 1;
        advised.bytes += range.len();
        if !advise(range) {
            advised.not_collapsed += 1;
        }
    }
    Ok(advised)
}

/// The whole 2 MiB pages of one line of `/proc/self/maps` (`start-end perms
/// offset dev inode [path]`) if it maps private, writable, anonymous memory.
fn anonymous_huge_range(line: &str) -> Option<std::ops::Range<usize>> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let path = fields.nth(3);
    if perms != "rw-p" || !matches!(path, None | Some("[heap]")) {
        return None;
    }
    let start = usize::from_str_radix(start, 16).ok()?.next_multiple_of(HUGE_PAGE);
    let end = usize::from_str_radix(end, 16).ok()? / HUGE_PAGE * HUGE_PAGE;
    (start < end).then_some(start..end)
}

/// Returns whether the kernel collapsed the range. (`libc` has
/// `MADV_COLLAPSE` for glibc targets only; elsewhere nothing is advised.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "madvise is a system call on raw addresses")]
fn advise(range: std::ops::Range<usize>) -> bool {
    let (start, len) = (range.start as *mut libc::c_void, range.len());
    // SAFETY: both advice values leave the contents of the memory as they
    // are, so no reference into it can observe a change; on a range that was
    // unmapped meanwhile the kernel returns ENOMEM and does nothing.
    unsafe {
        libc::madvise(start, len, libc::MADV_HUGEPAGE);
        libc::madvise(start, len, libc::MADV_COLLAPSE) == 0
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn advise(_range: std::ops::Range<usize>) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_private_writable_anonymous_memory_is_advised() {
        let heap = "55d0c0000000-55d0c0a00000 rw-p 00000000 00:00 0                          [heap]";
        assert_eq!(anonymous_huge_range(heap), Some(0x55d0c0000000..0x55d0c0a00000));
        // Unaligned ends shrink to the whole huge pages inside.
        let arena = "7f0000100000-7f0000500000 rw-p 00000000 00:00 0 ";
        assert_eq!(anonymous_huge_range(arena), Some(0x7f0000200000..0x7f0000400000));
        let too_small = "7f0000100000-7f0000300000 rw-p 00000000 00:00 0 ";
        assert_eq!(anonymous_huge_range(too_small), None);
        let file = "7f0000000000-7f0000400000 rw-p 00001000 08:01 1234 /usr/lib/libc.so.6";
        assert_eq!(anonymous_huge_range(file), None);
        let stack = "7ffc00000000-7ffc00400000 rw-p 00000000 00:00 0                          [stack]";
        assert_eq!(anonymous_huge_range(stack), None);
        let read_only = "7f0000000000-7f0000400000 r--p 00000000 00:00 0 ";
        assert_eq!(anonymous_huge_range(read_only), None);
    }

    /// Where the kernel offers transparent huge pages, a resident heap
    /// allocation ends up in them.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn a_resident_allocation_is_collapsed_where_the_kernel_allows() {
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        if thp.is_empty() || thp.contains("[never]") {
            return;
        }
        let memory: Vec<u8> = vec![1; 64 << 20];
        let advised = advise_heap().unwrap_or_default();
        assert!(advised.bytes >= 32 << 20, "{advised:?}");
        let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
        let huge_kib: usize = rollup
            .lines()
            .find_map(|line| line.strip_prefix("AnonHugePages:"))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        assert!(advised.not_collapsed == advised.regions || huge_kib >= 32 << 10, "{advised:?}, {huge_kib} KiB huge");
        assert_eq!(memory.iter().map(|&b| usize::from(b)).sum::<usize>(), 64 << 20);
    }
}
