//! When a repo is indexed next: `every = "10m"` intervals and 5-field
//! `cron = "0 */2 * * *"` expressions (UTC), with jitter, and the
//! exponential backoff of failing repos.

use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};

/// Parses a duration like `90s`, `10m`, `2h`, `1d` or `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("{s:?}: unknown unit {c:?} (use s, m, h or d, e.g. \"10m\")")),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{s:?}: expected a number before {c:?}"))?;
        number.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{s:?}: too large"))?;
    }
    if !number.is_empty() {
        return Err(format!("{s:?}: a number needs a unit (s, m, h or d, e.g. \"10m\")"));
    }
    Ok(Duration::from_secs(total))
}

/// One field of a cron expression: the allowed values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field(Vec<bool>, u32);

impl Field {
    fn parse(text: &str, min: u32, max: u32, what: &str) -> Result<Self, String> {
        let mut allowed = vec![false; (max + 1) as usize];
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (
                    r,
                    s.parse::<u32>()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| format!("{what}: bad step {s:?}"))?,
                ),
                None => (part, 1),
            };
            let num = |v: &str| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| format!("{what}: {v:?} is not a number between {min} and {max}"))
            };
            let (lo, hi) = if range == "*" {
                (min, max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("{what}: range {range:?} runs backwards"));
                }
                (a, b)
            } else {
                let a = num(range)?;
                (a, if part.contains('/') { max } else { a })
            };
            let mut v = lo;
            while v <= hi {
                allowed[v as usize] = true;
                v += step;
            }
        }
        Ok(Self(allowed, min))
    }

    fn has(&self, v: u32) -> bool {
        self.0.get(v as usize).copied().unwrap_or(false)
    }

    fn is_all(&self) -> bool {
        self.0.iter().skip(self.1 as usize).all(|b| *b)
    }
}

/// A 5-field cron expression (minute hour day-of-month month day-of-week,
/// UTC): numbers, `*`, ranges `a-b`, lists `a,b` and steps `*/n`; day of
/// week 0–7 with 0 and 7 Sunday. As in classic cron, when both day fields
/// are restricted a day matching either runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
}

impl Cron {
    /// Parses `expr`, naming the field at fault.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let f: Vec<&str> = expr.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "{expr:?}: expected 5 fields (minute hour day-of-month month day-of-week)"
            ));
        }
        let mut dow = Field::parse(f[4], 0, 7, "day-of-week")?;
        if dow.has(7) {
            dow.0[0] = true;
        }
        Ok(Self {
            minute: Field::parse(f[0], 0, 59, "minute")?,
            hour: Field::parse(f[1], 0, 23, "hour")?,
            dom: Field::parse(f[2], 1, 31, "day-of-month")?,
            month: Field::parse(f[3], 1, 12, "month")?,
            dow,
        })
    }

    fn day_matches(&self, t: &DateTime<Utc>) -> bool {
        let dom = self.dom.has(t.day());
        let dow = self.dow.has(t.weekday().num_days_from_sunday());
        match (self.dom.is_all(), self.dow.is_all()) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The first matching minute strictly after `after`, within about four
    /// years (`None` for expressions that never match, like `0 0 31 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut t = after.with_second(0)?.with_nanosecond(0)? + chrono::Duration::minutes(1);
        let limit = after + chrono::Duration::days(4 * 366);
        while t < limit {
            if !self.month.has(t.month()) || !self.day_matches(&t) {
                t = (t + chrono::Duration::days(1)).with_hour(0)?.with_minute(0)?;
                continue;
            }
            if !self.hour.has(t.hour()) {
                t = (t + chrono::Duration::hours(1)).with_minute(0)?;
                continue;
            }
            if self.minute.has(t.minute()) {
                return Some(t);
            }
            t += chrono::Duration::minutes(1);
        }
        None
    }
}

/// A repo's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Every(Duration),
    Cron(Cron),
}

impl Schedule {
    /// How long after `now` the next run is due, before jitter.
    pub fn delay_from(&self, now: DateTime<Utc>) -> Duration {
        match self {
            Self::Every(d) => *d,
            Self::Cron(c) => c
                .next_after(now)
                .and_then(|t| (t - now).to_std().ok())
                // never matches: check again in a day (validation warns about none of this; it is rare)
                .unwrap_or(Duration::from_secs(86_400)),
        }
    }
}

/// `delay` plus a random extra of up to `fraction` of it (`unit` in 0..1
/// is the random draw), so repos on the same schedule do not all start
/// together.
pub fn with_jitter(delay: Duration, fraction: f64, unit: f64) -> Duration {
    let extra = delay.as_secs_f64() * fraction.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
    delay + Duration::from_secs_f64(extra)
}

/// The wait before retrying a repo that failed `failures` times in a row:
/// `base` doubled per failure, at most `max`.
pub fn backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1).min(30)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        for bad in ["", "10", "m", "10x", "1.5h", "-1m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cron_next_runs() {
        let at = |y, mo, d, h, mi| Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
        let c = Cron::parse("0 */2 * * *").unwrap();
        assert_eq!(c.next_after(at(2026, 1, 1, 0, 0)), Some(at(2026, 1, 1, 2, 0)));
        assert_eq!(c.next_after(at(2026, 1, 1, 1, 59)), Some(at(2026, 1, 1, 2, 0)));
        let c = Cron::parse("30 9 * * 1-5").unwrap();
        // 2026-01-03 is a Saturday: next weekday is Monday the 5th
        assert_eq!(c.next_after(at(2026, 1, 3, 12, 0)), Some(at(2026, 1, 5, 9, 30)));
        let c = Cron::parse("15,45 * * * *").unwrap();
        assert_eq!(c.next_after(at(2026, 1, 1, 0, 15)), Some(at(2026, 1, 1, 0, 45)));
        let c = Cron::parse("0 0 29 2 *").unwrap();
        assert_eq!(c.next_after(at(2026, 3, 1, 0, 0)), Some(at(2028, 2, 29, 0, 0)));
        assert_eq!(
            Cron::parse("0 0 31 2 *").unwrap().next_after(at(2026, 1, 1, 0, 0)),
            None
        );
        let c = Cron::parse("0 12 * * 7").unwrap();
        assert_eq!(c.next_after(at(2026, 1, 1, 0, 0)), Some(at(2026, 1, 4, 12, 0)));
    }

    #[test]
    fn cron_rejects_bad_expressions() {
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jitter_and_backoff() {
        let d = Duration::from_secs(600);
        assert_eq!(with_jitter(d, 0.1, 0.0), d);
        assert_eq!(with_jitter(d, 0.1, 1.0), Duration::from_secs(660));
        assert_eq!(with_jitter(d, 0.0, 0.7), d);
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(3600);
        assert_eq!(backoff(1, base, max), Duration::from_secs(10));
        assert_eq!(backoff(2, base, max), Duration::from_secs(20));
        assert_eq!(backoff(4, base, max), Duration::from_secs(80));
        assert_eq!(backoff(40, base, max), max);
    }
}
