//! Probe timestamps are CLOCK_BOOTTIME nanoseconds (`bpf_ktime_get_boot_ns`);
//! people want wall-clock times. The offset between the two is sampled once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; both clocks always exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Now, in the probes' clock.
pub fn boot_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// Converts boot-clock nanoseconds to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// Wall-clock nanoseconds since the epoch at boot-clock zero.
    epoch_at_boot_ns: u64,
}

impl WallClock {
    pub fn sample() -> Self {
        let wall = clock_ns(libc::CLOCK_REALTIME);
        Self {
            epoch_at_boot_ns: wall.saturating_sub(boot_ns()),
        }
    }

    /// The clock of a recorded session.
    pub fn from_epoch_at_boot_ns(epoch_at_boot_ns: u64) -> Self {
        Self { epoch_at_boot_ns }
    }

    pub fn epoch_at_boot_ns(&self) -> u64 {
        self.epoch_at_boot_ns
    }

    /// RFC 3339 text for a boot-clock time.
    pub fn rfc3339(&self, boot_ns: u64) -> String {
        rfc3339(self.at(boot_ns))
    }

    pub fn at(&self, boot_ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.epoch_at_boot_ns + boot_ns)
    }
}

/// RFC 3339 in UTC with nanoseconds, e.g. `2026-11-24T16:15:55.123456789Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_795_536_955, 5);
        assert_eq!(rfc3339(t), "2026-11-24T16:15:55.000000005Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn wall_clock_is_monotone_in_boot_time() {
        let clock = WallClock::sample();
        let now = boot_ns();
        assert!(clock.at(now + 1_000) > clock.at(now));
        let drift = clock
            .at(now)
            .duration_since(SystemTime::now())
            .unwrap_or_else(|e| e.duration());
        assert!(drift < Duration::from_secs(1), "{drift:?}");
    }
}
