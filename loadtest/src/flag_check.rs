//! Checks on the numbers given on the command line, shared by every mode's resolution
//! into its plan, so each refusal names its flag the same way.

/// `v` if it is finite and above zero (or zero, with `allow_zero`); else the error naming
/// the flag.
pub fn positive(name: &str, v: f64, allow_zero: bool) -> Result<f64, String> {
    if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) {
        let what = if allow_zero {
            "zero or more"
        } else {
            "more than zero"
        };
        return Err(format!("--{name} must be {what} (got {v})"));
    }
    Ok(v)
}
