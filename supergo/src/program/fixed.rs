//! Numbers with a fixed count of decimals in a worker's log lines and answers ("SIGKILL in
//! 10.0 s", "ready in 12 ms"), printed through integers.
//!
//! Why not `{:.1}`: core's formatting of an `f64` with a precision takes about 2 KB of stack
//! (`float_to_decimal_common_exact`), and a worker logs such numbers deep in its loop (the end
//! of a handoff, a stop, an exit). A worker's stack costs a page of memory for each 4 KiB it
//! ever reached: those 2 KB gave every restarted program a third page. Integers print in a few
//! bytes of stack. (A tie rounds away from zero, where core's exact formatting rounds to
//! even: a log line is no place where that matters.)

use std::fmt;
use std::time::Duration;

/// `value` with `places` decimals (at most 9).
#[derive(Clone, Copy, Debug)]
pub(super) struct Fixed {
    value: f64,
    places: u32,
}

/// `value` with `places` decimals (at most 9).
pub(super) fn fixed(value: f64, places: u32) -> Fixed {
    Fixed {
        value,
        places: places.min(9),
    }
}

/// `duration` in seconds with `places` decimals.
pub(super) fn secs(duration: Duration, places: u32) -> Fixed {
    fixed(duration.as_secs_f64(), places)
}

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = 10u64.pow(self.places);
        let scaled = (self.value.abs() * scale as f64).round();
        // Not a number, infinite, or beyond u64: core's shortest form (a small frame).
        if !scaled.is_finite() || scaled >= u64::MAX as f64 {
            return write!(f, "{}", self.value);
        }
        let scaled = scaled as u64;
        let sign = if self.value < 0.0 && scaled != 0 {
            "-"
        } else {
            ""
        };
        let (whole, fraction) = (scaled / scale, scaled % scale);
        if self.places == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let width = self.places as usize;
            write!(f, "{sign}{whole}.{fraction:0width$}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_as_core_does_with_a_precision() {
        for value in [
            0.0, 0.1, 0.2, 1.0, 9.94, 10.0, 12.34567, 1234.4, 0.004, 59.99, -2.75,
        ] {
            for places in [0, 1, 2, 3] {
                let core = format!("{value:.prec$}", prec = places as usize);
                assert_eq!(
                    fixed(value, places).to_string(),
                    core,
                    "{value} with {places}"
                );
            }
        }
        assert_eq!(secs(Duration::from_millis(10_000), 1).to_string(), "10.0");
        assert_eq!(secs(Duration::from_millis(250), 1).to_string(), "0.3");
        assert_eq!(fixed(-0.01, 1).to_string(), "0.0");
        assert_eq!(fixed(f64::NAN, 1).to_string(), "NaN");
    }

    #[test]
    fn a_tie_rounds_away_from_zero() {
        // Core rounds 1234.5 to even (1234); a log line shows 1235.
        assert_eq!(fixed(1234.5, 0).to_string(), "1235");
        assert_eq!(fixed(-0.5, 0).to_string(), "-1");
    }
}
