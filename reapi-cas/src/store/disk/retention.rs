//! Retention: blobs used within the last `retention` are not evicted.
//!
//! The index ages blobs in ticks of its access clock (one per request), not
//! in time, and its 44-byte entries have no room for a timestamp. So the
//! store keeps a short list of checkpoints, (time, clock value) pairs each
//! meaning "every tick taken at or after this time is at least this value"
//! (the clock is read before the time, so this holds). A sampler thread
//! appends one every `retention / 1024` (at least 1 ms) when the clock has
//! moved; the request path does no extra work at all.
//!
//! The clock value of the newest checkpoint at or before `now - retention`
//! is the oldest protected tick: every blob used since that moment has a
//! tick at least that large (wrapping 32-bit ticks are compared as ages; see
//! `index.rs`). Blobs used up to one sampling interval earlier (plus however
//! late the sampler ran) are protected too, so protection errs long, never
//! short. Sampling from a thread rather than from requests is what keeps
//! this true across idle periods: a checkpoint taken by the first request
//! after an idle hour could only vouch for ticks after that request, which
//! would protect the blobs used just before the idle hour for an hour more.
//! Checkpoints older than the one in use are dropped, so about 1024 are kept.
//!
//! Across a restart accesses are lost but mtimes are not: the index is
//! loaded in mtime order (ticks `0..n`), so checkpoints for the window
//! before the open come from the mtimes, and a blob *written* within the
//! retention time before a restart stays protected until that time has
//! passed since its write. Blobs only read or queried before the restart
//! are not protected after it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reapi_core::{Error, Result};

/// Checkpoints per retention time: the sampling interval is the retention
/// time divided by this.
const SAMPLES_PER_WINDOW: i64 = 1024;
/// The shortest sampling interval.
const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// How long a "nothing to evict" verdict is reused at most.
const MAX_FULL_VERDICT: Duration = Duration::from_secs(1);
/// Windows are capped so that times in nanoseconds fit comfortably in i64.
const MAX_WINDOW_NANOS: i64 = i64::MAX / 4;

/// "Every tick taken at or after `at` is at least `clock`."
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Checkpoint {
    /// Nanoseconds since the store opened; negative before.
    at: i64,
    clock: u64,
}

pub(super) struct Retention {
    window: Duration,
    window_nanos: i64,
    interval: Duration,
    epoch: Instant,
    /// Ordered by `at` and by `clock`, never empty.
    checkpoints: Mutex<VecDeque<Checkpoint>>,
    /// When a search for space last found nothing to evict (`i64::MIN`:
    /// never).
    full_at: AtomicI64,
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).map_or(MAX_WINDOW_NANOS, |n| n.min(MAX_WINDOW_NANOS))
}

impl Retention {
    /// `None` for a zero window (no protection). The index holds `loaded`
    /// blobs from the scan, with ticks `0..loaded`; when they are in mtime
    /// order, `written_before(ago)` is how many of them were written more
    /// than `ago` before now (now being read before this call), which makes
    /// the recently written ones protected.
    pub(super) fn new(
        window: Duration,
        loaded: u64,
        written_before: Option<&dyn Fn(Duration) -> u64>,
    ) -> Option<Retention> {
        if window.is_zero() {
            return None;
        }
        let window_nanos = nanos(window).max(1);
        let interval = (window / SAMPLES_PER_WINDOW as u32).max(MIN_INTERVAL);
        let step = nanos(interval);
        let mut checkpoints = VecDeque::new();
        match written_before {
            Some(written_before) => {
                // `ago` in nanoseconds fits in u64: it is at most the window.
                let mut ago = window_nanos;
                while ago > 0 {
                    let clock = written_before(Duration::from_nanos(ago.unsigned_abs()));
                    checkpoints.push_back(Checkpoint { at: -ago, clock });
                    ago -= step;
                }
            }
            // Blobs from the scan in no particular order: none protected.
            None => checkpoints.push_back(Checkpoint {
                at: -window_nanos,
                clock: loaded,
            }),
        }
        checkpoints.push_back(Checkpoint {
            at: 0,
            clock: loaded,
        });
        Some(Retention {
            window,
            window_nanos,
            interval,
            epoch: Instant::now(),
            checkpoints: Mutex::new(checkpoints),
            full_at: AtomicI64::new(i64::MIN),
        })
    }

    /// The retention time.
    pub(super) fn window(&self) -> Duration {
        self.window
    }

    /// Nanoseconds since the store opened.
    fn now(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(i64::MAX)
    }

    /// Adds a checkpoint: reads the clock (through `clock`), then the time.
    pub(super) fn sample(&self, clock: impl FnOnce() -> u64) {
        let mut checkpoints = self.checkpoints.lock();
        let clock = clock();
        let at = self.now();
        self.push(&mut checkpoints, Checkpoint { at, clock });
    }

    fn push(&self, checkpoints: &mut VecDeque<Checkpoint>, checkpoint: Checkpoint) {
        match checkpoints.back() {
            // The same clock value says nothing new (the older checkpoint
            // vouches for the same ticks from an earlier time); an older
            // one is out of order.
            Some(last) if last.clock >= checkpoint.clock || last.at > checkpoint.at => {}
            _ => checkpoints.push_back(checkpoint),
        }
        prune(checkpoints, checkpoint.at.saturating_sub(self.window_nanos));
    }

    /// The oldest protected clock value: a blob whose last use took a tick
    /// at least this large was used within the retention time (or up to a
    /// sampling interval before it).
    pub(super) fn protected_since(&self) -> u64 {
        self.protected_since_at(self.now())
    }

    fn protected_since_at(&self, now: i64) -> u64 {
        let cutoff = now.saturating_sub(self.window_nanos);
        let mut checkpoints = self.checkpoints.lock();
        prune(&mut checkpoints, cutoff);
        // The newest checkpoint at or before the cutoff. Should the list
        // not reach back that far, the oldest one: only blobs provably used
        // since then are protected.
        let newer = checkpoints.partition_point(|c| c.at <= cutoff);
        checkpoints
            .get(newer.saturating_sub(1))
            .map_or(0, |c| c.clock)
    }

    /// Whether a search for space found nothing to evict so recently that
    /// a write that does not fit is refused without searching again (which
    /// costs a pass over the whole index): for at most a second, or one
    /// sampling interval when that is shorter.
    pub(super) fn recently_full(&self) -> bool {
        self.recently_full_at(self.now())
    }

    fn recently_full_at(&self, now: i64) -> bool {
        let at = self.full_at.load(Ordering::Relaxed);
        at != i64::MIN && now.saturating_sub(at) < nanos(self.interval.min(MAX_FULL_VERDICT))
    }

    /// Records that a search for space found nothing to evict.
    pub(super) fn set_full(&self) {
        self.full_at.store(self.now(), Ordering::Relaxed);
    }

    /// How often the sampler runs.
    pub(super) fn interval(&self) -> Duration {
        self.interval
    }
}

/// Drops checkpoints that no cutoff from `cutoff` on will use: all before
/// the newest one at or before it. Cutoffs only grow.
fn prune(checkpoints: &mut VecDeque<Checkpoint>, cutoff: i64) {
    while checkpoints.len() >= 2 && checkpoints[1].at <= cutoff {
        checkpoints.pop_front();
    }
}

/// Starts the sampler thread: calls `sample` every `interval` until it
/// returns false (the store is gone).
pub(super) fn spawn_sampler(
    interval: Duration,
    mut sample: impl FnMut() -> bool + Send + 'static,
) -> Result<()> {
    std::thread::Builder::new()
        .name("disk-store-retention".to_owned())
        .spawn(move || loop {
            std::thread::sleep(interval);
            if !sample() {
                break;
            }
        })
        .map(drop)
        .map_err(|e| Error::internal(format!("starting the disk store's retention sampler: {e}")))
}

/// A duration the way configurations spell it: `3h`, `90m`, `10s`, `200ms`.
pub(super) fn display(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        return format!("{d:?}");
    }
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    impl Retention {
        fn record_at(&self, at: i64, clock: u64) {
            let mut checkpoints = self.checkpoints.lock();
            self.push(&mut checkpoints, Checkpoint { at, clock });
        }

        fn len(&self) -> usize {
            self.checkpoints.lock().len()
        }
    }

    #[test]
    fn zero_retention_is_no_retention() {
        assert!(Retention::new(Duration::ZERO, 10, None).is_none());
    }

    #[test]
    fn maps_time_to_ticks_across_checkpoints() {
        // 3 s of retention; 5 blobs from the scan, in no known order.
        let r = Retention::new(Duration::from_secs(3), 5, None).unwrap();
        assert_eq!(r.interval(), Duration::from_secs(3) / 1024);
        // Until 3 s have passed the cutoff is before the open: blobs from
        // the scan are not protected, everything since the open is.
        assert_eq!(r.protected_since_at(0), 5);
        // The clock is 100 at 1 s, 200 at 2 s, ...
        r.record_at(1000 * MS, 100);
        assert_eq!(r.protected_since_at(1000 * MS), 5);
        r.record_at(2000 * MS, 200);
        assert_eq!(r.protected_since_at(2999 * MS), 5);
        r.record_at(3000 * MS, 300);
        assert_eq!(r.protected_since_at(3000 * MS), 5);
        r.record_at(4000 * MS, 400);
        // Between checkpoints, the newest at or before the cutoff counts.
        assert_eq!(r.protected_since_at(4500 * MS), 100);
        assert_eq!(r.protected_since_at(5000 * MS), 200);
        assert_eq!(r.protected_since_at(5999 * MS), 200);
        r.record_at(6000 * MS, 600);
        assert_eq!(r.protected_since_at(6999 * MS), 300);
        // No checkpoint at 5 s: the one at 4 s vouches until 6 s does.
        assert_eq!(r.protected_since_at(8500 * MS), 400);
        assert_eq!(r.protected_since_at(9000 * MS), 600);
        // Only the checkpoint in use is left once the cutoff passed the rest.
        assert_eq!(r.len(), 1);
        assert_eq!(r.protected_since_at(3_600_000 * MS), 600);
    }

    #[test]
    fn unchanged_clock_and_out_of_order_checkpoints_are_not_kept() {
        let r = Retention::new(Duration::from_secs(1), 0, None).unwrap();
        r.record_at(100 * MS, 7);
        r.record_at(200 * MS, 7); // idle: the clock did not move
        r.record_at(50 * MS, 8); // out of order
        r.record_at(300 * MS, 9);
        // The pre-open checkpoint, the open, 7 at 100 ms and 9 at 300 ms.
        assert_eq!(r.len(), 4);
        assert_eq!(r.protected_since_at(1250 * MS), 7);
        assert_eq!(r.protected_since_at(1300 * MS), 9);
    }

    #[test]
    fn blobs_written_before_the_open_are_protected_by_mtime() {
        // 100 blobs from the scan, oldest first; blob i was written 100 - i
        // seconds before the open.
        let written_before = |ago: Duration| -> u64 {
            (0..100u64)
                .filter(|i| Duration::from_secs(100 - i) > ago)
                .count() as u64
        };
        let r = Retention::new(Duration::from_secs(10), 100, Some(&written_before)).unwrap();
        // Right after the open, blobs written in the last 10 s (90..100)
        // are protected.
        assert_eq!(r.protected_since_at(0), 90);
        // 4 s later, those written in the last 6 s before the open.
        assert_eq!(r.protected_since_at(4000 * MS), 94);
        // Cutoff 5.5 s before the open: blob 94 (6 s) is out, 95 (5 s) in.
        assert_eq!(r.protected_since_at(4500 * MS), 95);
        // Once 10 s have passed, none of them.
        assert_eq!(r.protected_since_at(10_000 * MS), 100);
    }

    #[test]
    fn sampling_reads_the_clock_before_the_time() {
        let r = Retention::new(Duration::from_millis(50), 0, None).unwrap();
        r.sample(|| 42);
        std::thread::sleep(Duration::from_millis(60));
        // The sample is older than the retention time now.
        assert_eq!(r.protected_since(), 42);
    }

    #[test]
    fn full_verdicts_expire() {
        let r = Retention::new(Duration::from_secs(3 * 3600), 0, None).unwrap();
        assert!(!r.recently_full());
        r.full_at.store(1000 * MS, Ordering::Relaxed);
        assert!(r.recently_full_at(1000 * MS));
        assert!(r.recently_full_at(1999 * MS));
        assert!(!r.recently_full_at(2000 * MS));
        // A short retention time reuses a verdict for one sampling interval.
        let r = Retention::new(Duration::from_millis(2048), 0, None).unwrap();
        r.full_at.store(0, Ordering::Relaxed);
        assert!(r.recently_full_at(MS));
        assert!(!r.recently_full_at(2 * MS));
    }

    #[test]
    fn durations_display_as_configured() {
        assert_eq!(display(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(display(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(display(Duration::from_secs(61)), "61s");
        assert_eq!(display(Duration::from_millis(200)), "200ms");
    }
}
