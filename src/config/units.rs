//! Human units in config values: durations (`30s`, `5m`, `1h30m`), sizes
//! (`1MiB`, `4KiB`, `512`), rates (`100/s`, `50/m`).
//!
//! Pure parsers with known-answer tests; the config compiler calls them on
//! each leaf with its position, so a typo reports where it is.

use std::time::Duration;

pub use crate::model::Rate;

/// Parse a duration: one or more `<integer><unit>` groups, units `ms`, `s`,
/// `m`, `h`, `d` (e.g. `500ms`, `30s`, `1h30m`, `7d`). `0` alone is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration; write e.g. `30s`, `5m`, `2h`, `7d`".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration `{text}`: expected a number followed by ms, s, m, h or d (e.g. `30s`)"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration `{text}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let step = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            "" => {
                return Err(format!(
                    "invalid duration `{text}`: missing unit (ms, s, m, h or d), e.g. `{n}s`"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration `{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
                ));
            }
        };
        total = total.saturating_add(step);
    }
    Ok(total)
}

/// Parse a size in bytes: an integer with an optional unit `B`, `KB`, `MB`,
/// `GB` (powers of 1000) or `KiB`, `MiB`, `GiB` (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let digits = s.chars().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return Err(format!(
            "invalid size `{text}`: expected a number with an optional unit (e.g. `1MiB`, `4KiB`)"
        ));
    }
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("invalid size `{text}`: number too large"))?;
    let mult: u64 = match s[digits..].trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        "GiB" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "invalid size `{text}`: unknown unit `{other}` (use B, KB, MB, GB, KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size `{text}`: too large"))
}

/// Parse a rate: `<count>/<s|m|h>` (also `/second`, `/minute`, `/hour`).
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let s = text.trim();
    let Some((count, per)) = s.split_once('/') else {
        return Err(format!(
            "invalid rate `{text}`: expected `<count>/<s|m|h>`, e.g. `100/s`"
        ));
    };
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("invalid rate `{text}`: `{count}` is not a whole number"))?;
    if count == 0 {
        return Err(format!(
            "invalid rate `{text}`: the count must be at least 1"
        ));
    }
    let per = match per.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        other => {
            return Err(format!(
                "invalid rate `{text}`: unknown period `{other}` (use s, m or h)"
            ));
        }
    };
    Ok(Rate { count, per })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("30").unwrap_err().contains("missing unit"));
        assert!(
            parse_duration("30x")
                .unwrap_err()
                .contains("unknown unit `x`")
        );
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1_048_576));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1GiB"), Ok(1_073_741_824));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert!(parse_size("1Mb").unwrap_err().contains("unknown unit"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn rates() {
        let r = parse_rate("100/s").unwrap();
        assert_eq!((r.count, r.per), (100, Duration::from_secs(1)));
        assert_eq!(r.interval(), Duration::from_millis(10));
        let r = parse_rate("50/m").unwrap();
        assert_eq!((r.count, r.per), (50, Duration::from_secs(60)));
        assert_eq!(parse_rate("3/h").unwrap().per, Duration::from_secs(3600));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("100").is_err());
        assert!(parse_rate("100/d").is_err());
        assert!(parse_rate("x/s").is_err());
    }
}
