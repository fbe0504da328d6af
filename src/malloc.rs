//! glibc malloc settings that keep resident memory flat under writes and
//! allocation cheap while serving (Linux, glibc targets; elsewhere every
//! call here does nothing).
//!
//! A write copies the chunks of the index it changes and frees the old ones
//! once readers let go of them. glibc gives each thread its own arena, and
//! the index is built on one thread but changed on others: the copies came
//! from the writers' arenas while the freed originals stayed, resident and
//! unused, in the loader's. At XL a minute of single-grant writes grew
//! resident memory by 260 MB that way. With one arena the freed chunks are
//! where the next copies look for memory (growth +86 MB, then flat), and a
//! periodic [`trim`] hands whole free pages back (BENCHMARKS.md §D).
//!
//! One arena has a cost that [`restart_with_deep_thread_caches`] takes away:
//! the build of the index frees millions of small temporaries, scattered
//! among the index's own allocations. A thread keeps only 7 freed chunks of
//! each size for itself; past that, requests are served from the arena's
//! small bins, which hand out their oldest chunks first: the build's, cold,
//! anywhere in 1.4 GB. At XL that made malloc 10 % of the server's CPU under
//! `Check` load, against 2 % in the no-op server, and 28 % under CheckBatch
//! load (BENCHMARKS.md §E).

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

/// The glibc tunables warden restarts with: each thread keeps up to 4096
/// freed chunks of each size (glibc's default: 7), for requests of at most
/// 128 bytes (glibc's default: 1032). That is enough for the small strings
/// of 16 CheckBatch calls of 100 checks in flight (prost decodes every id
/// into a `String`), and a thread holds at most about 3 MB in its cache.
/// Caching larger sizes that deep is as fast but costs memory. A thread
/// that frees many chunks keeps them out of the other threads' reach: the
/// index builder kept the row buffers its reader thread had allocated, and
/// XL kept 79 MB more resident (BENCHMARKS.md §E).
const THREAD_CACHE_TUNABLES: [&str; 2] = ["glibc.malloc.tcache_count=4096", "glibc.malloc.tcache_max=128"];

/// Set in the restarted process, so that it never restarts again (glibc
/// drops `GLIBC_TUNABLES` from the environment of privileged processes).
const RESTARTED: &str = "WARDEN_MALLOC_TUNED";

/// Restarts the process, in place (same PID, arguments and environment),
/// with deeper thread caches of freed chunks, unless `GLIBC_TUNABLES`
/// already sets the thread caches: glibc reads its tunables only when a
/// process starts, and no `mallopt` sets these. Call it first thing in
/// `main`. If the restart fails, warden goes on with glibc's defaults.
pub fn restart_with_deep_thread_caches() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if tunables.contains("glibc.malloc.tcache_") || std::env::var_os(RESTARTED).is_some() {
            return;
        }
        let settings = THREAD_CACHE_TUNABLES.join(":");
        let tunables = if tunables.is_empty() { settings.clone() } else { format!("{tunables}:{settings}") };
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new("/proc/self/exe");
        if let Some(program) = args.next() {
            command.arg0(program);
        }
        let error = command.args(args).env("GLIBC_TUNABLES", tunables).env(RESTARTED, "1").exec();
        eprintln!("warden: restarting with {settings} failed ({error}); going on with glibc's defaults");
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
