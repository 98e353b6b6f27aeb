//! Usage reports: an account's tasks, images and captured credits, per UTC
//! day, model and key, read from `tasks` joined with `credit_holds`.
//!
//! The grouping is one SQL query for both databases: the day is the integer
//! `created_at / 86_400_000` (days since the Unix epoch, UTC), turned into a
//! calendar date here in Rust, so no database date function is needed.

use sqlx::{AssertSqlSafe, Row};

use crate::db::{Db, DbKind};
use crate::error::StoreError;

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// A UTC calendar day, counted in days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i64);

impl Day {
    /// The day that contains `ms` (unix ms).
    pub fn of_ms(ms: i64) -> Self {
        Self(ms.div_euclid(DAY_MS))
    }

    /// The first millisecond of the day.
    pub fn start_ms(self) -> i64 {
        self.0.saturating_mul(DAY_MS)
    }

    /// Parses `YYYY-MM-DD` (years 1970 to 9999); `None` when malformed or
    /// not a real date (`2026-02-30`).
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| s.get(r).filter(|p| p.bytes().all(|c| c.is_ascii_digit()))?.parse::<i64>().ok();
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if y < 1970 || !(1..=12).contains(&m) || d < 1 {
            return None;
        }
        let day = Self(days_from_civil(y, m, d));
        // Out-of-range days (the 30th of February) do not survive the round trip.
        (day.ymd() == (y, m, d)).then_some(day)
    }

    /// (year, month, day of month).
    pub fn ymd(self) -> (i64, i64, i64) {
        civil_from_days(self.0)
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl serde::Serialize for Day {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

// Howard Hinnant's days-from-civil algorithms (proleptic Gregorian calendar,
// eras of 400 years), exact for every day we can represent.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One group of an account's usage: a day, a model and a key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageRow {
    /// UTC day the tasks were submitted.
    pub day: Day,
    /// Canonical model id.
    pub model: String,
    /// The key the tasks came in with (`None`: submitted without a key).
    pub key_id: Option<String>,
    /// Tasks submitted, whatever became of them.
    pub tasks: i64,
    /// Images made by the tasks that succeeded.
    pub images: i64,
    /// Milli-credits captured (spent); holds still open or released count 0.
    pub millicredits: i64,
}

impl Db {
    /// An account's usage for the UTC days `from..=to`, grouped by day,
    /// model and key, ordered by day, then model, then key.
    pub async fn usage(&self, account: &str, from: Day, to: Day) -> Result<Vec<UsageRow>, StoreError> {
        // Images live in the result JSON (the one spot where the databases
        // spell things differently); once a result is purged, a succeeded
        // task counts the images it asked for.
        let (made, asked) = match self.kind {
            DbKind::Sqlite => ("json_array_length(t.result, '$.images')", "json_extract(t.spec, '$.count')"),
            DbKind::Postgres => ("json_array_length(CAST(t.result AS json) -> 'images')", "CAST(CAST(t.spec AS json) ->> 'count' AS BIGINT)"),
        };
        let sql = format!(
            "SELECT t.created_at / {DAY_MS} AS day, t.model, t.key_id, COUNT(*) AS tasks, \
             CAST(COALESCE(SUM(CASE WHEN t.state = 'succeeded' THEN COALESCE({made}, {asked}, 0) ELSE 0 END), 0) AS BIGINT) AS images, \
             CAST(COALESCE(SUM(CASE WHEN h.state = 'captured' THEN h.captured ELSE 0 END), 0) AS BIGINT) AS millicredits \
             FROM tasks t LEFT JOIN credit_holds h ON h.task_id = t.id \
             WHERE t.account_id = $1 AND t.created_at >= $2 AND t.created_at < $3 \
             GROUP BY t.created_at / {DAY_MS}, t.model, t.key_id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(account).bind(from.start_ms()).bind(Day(to.0.saturating_add(1)).start_ms()).fetch_all(&self.read).await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(UsageRow {
                    day: Day(r.try_get("day")?),
                    model: r.try_get("model")?,
                    key_id: r.try_get("key_id")?,
                    tasks: r.try_get("tasks")?,
                    images: r.try_get("images")?,
                    millicredits: r.try_get("millicredits")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Sorted here because the databases order NULL keys differently.
        out.sort_by(|a, b| (a.day, &a.model, &a.key_id).cmp(&(b.day, &b.model, &b.key_id)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_through_dates() {
        assert_eq!(Day::parse("1970-01-01"), Some(Day(0)));
        assert_eq!(Day::parse("2026-11-23"), Some(Day(20_780)));
        assert_eq!(Day::parse("2000-02-29"), Some(Day(11_016)));
        for n in [0, 59, 60, 365, 11_016, 20_780, 2_932_896] {
            assert_eq!(Day::parse(&Day(n).to_string()), Some(Day(n)), "day {n}");
        }
    }

    #[test]
    fn malformed_or_impossible_dates_do_not_parse() {
        for s in ["", "2026-1-23", "2026/11/23", "2026-13-01", "2026-02-29", "2026-11-31", "1969-12-31", "20261123xx", "+026-11-23", "2026-11-2a"] {
            assert_eq!(Day::parse(s), None, "{s}");
        }
    }

    #[test]
    fn a_day_spans_exactly_its_utc_milliseconds() {
        let d = Day::parse("2026-11-23").unwrap();
        assert_eq!(Day::of_ms(d.start_ms()), d);
        assert_eq!(Day::of_ms(d.start_ms() + DAY_MS - 1), d);
        assert_eq!(Day::of_ms(d.start_ms() + DAY_MS), Day(d.0 + 1));
    }
}
