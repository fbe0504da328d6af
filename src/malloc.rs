//! glibc malloc settings that keep resident memory flat under writes
//! (Linux, glibc targets; elsewhere both calls do nothing).
//!
//! A write copies the chunks of the index it changes and frees the old ones
//! once readers let go of them. glibc gives each thread its own arena, and
//! the index is built on one thread but changed on others: the copies came
//! from the writers' arenas while the freed originals stayed, resident and
//! unused, in the loader's. At XL a minute of single-grant writes grew
//! resident memory by 260 MB that way. With one arena the freed chunks are
//! where the next copies look for memory (growth +86 MB, then flat), and a
//! periodic [`trim`] hands whole free pages back (BENCHMARKS.md §D).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Makes every thread allocate from the main arena. Call it first thing in
/// `main`, before any thread starts: a thread that has allocated keeps its
/// arena.
pub fn use_one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code, reason = "mallopt is glibc's C interface")]
    // SAFETY: mallopt only changes a tuning parameter of the allocator, and
    // M_ARENA_MAX may be set at any time.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns the free pages inside the heap to the kernel. Walks the free
/// lists under the arena's lock (a few milliseconds at XL): call it on a
/// blocking thread, and not often (see [`Trimmer`]).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code, reason = "malloc_trim is glibc's C interface")]
    // SAFETY: malloc_trim only releases memory that no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims after writes, at most once per interval.
#[derive(Debug)]
pub struct Trimmer {
    interval: Duration,
    last: Mutex<Option<Instant>>,
}

impl Trimmer {
    pub fn new(interval: Duration) -> Trimmer {
        Trimmer { interval, last: Mutex::new(None) }
    }

    /// Called after a write: whether a trim is due now (and, if so, counts it
    /// as done).
    pub fn due(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.interval) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_is_due_at_most_once_per_interval() {
        let trimmer = Trimmer::new(Duration::from_secs(3600));
        assert!(trimmer.due());
        assert!(!trimmer.due());
        let trimmer = Trimmer::new(Duration::ZERO);
        assert!(trimmer.due() && trimmer.due());
        trim();
    }
}
