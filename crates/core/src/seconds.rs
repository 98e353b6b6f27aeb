//! The one rule for a duration that config writes as a number of seconds:
//! `Duration::from_secs_f64` panics on a negative, infinite or NaN number,
//! so each such setting is checked when the config is read, and the error
//! names its field.

/// Accepts `value` seconds for `field` when finite and more than zero, or
/// zero too when `zero_ok`.
pub fn check_seconds(field: &str, value: f64, zero_ok: bool) -> Result<(), String> {
    if value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0)) {
        return Ok(());
    }
    let must = if zero_ok { "zero or more" } else { "more than zero" };
    Err(format!("{field} must be a finite number {must}, not {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_seconds_pass_and_the_rest_name_the_field() {
        assert_eq!(check_seconds("a", 0.5, false), Ok(()));
        assert_eq!(check_seconds("a", 0.0, true), Ok(()));
        assert_eq!(check_seconds("lease_secs", 0.0, false).unwrap_err(), "lease_secs must be a finite number more than zero, not 0");
        for bad in [-1.0, f64::INFINITY, f64::NAN] {
            assert!(check_seconds("drain_secs", bad, true).unwrap_err().starts_with("drain_secs must be a finite number zero or more, not "));
        }
    }
}
