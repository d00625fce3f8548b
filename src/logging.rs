//! Logging through env_logger: `--log-level` wins over `RUST_LOG`, `--log-output` appends
//! to a file, and each line starts with a UTC timestamp.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a time since the Unix epoch.
fn utc(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Sends log records at `level` and above to `output` (`-`: standard error).
pub fn init(level: log::LevelFilter, output: &str) -> Result<(), Error> {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level).format(|f, record| {
        writeln!(
            f,
            "{} {:<5} {}",
            utc(SystemTime::now()),
            record.level(),
            record.args()
        )
    });
    if output != "-" {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(output)
            .map_err(|e| Error::Start(format!("cannot open log file {output}: {e}")))?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    // A second init (a library user starting two proxies) keeps the first logger.
    let _ = builder.try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_millis(1_795_435_383_250)),
            "2026-11-23T12:03:03.250Z"
        );
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
