//! Human durations as written in the config: `30d`, `2h`, `90m`, `45s`, `1h30m`, `1w`.
//! The config parses them once at load ([`deserialize`], [`deserialize_option`]): the rest
//! of the program sees `std::time::Duration` and never a fallback for a bad text.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Parses `1w2d3h4m5s` style durations (at least one part; units w, d, h, m, s).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_text(text)
}

/// `#[serde(deserialize_with = "...")]` for a duration key: the error message names the bad
/// text, and the config loader adds the key path and position.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_text(&text).map_err(serde::de::Error::custom)
}

/// [`deserialize`] for an optional key (use with `#[serde(default)]`).
pub fn deserialize_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserialize(deserializer).map(Some)
}

fn parse_text(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration (write e.g. `30d`, `2h`, `90m`)".into());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for character in trimmed.chars() {
        if character.is_ascii_digit() {
            number.push(character);
            continue;
        }
        let seconds = match character {
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => {
                return Err(format!(
                    "`{text}` is not a duration: unexpected `{character}` (units: w, d, h, m, s)"
                ))
            }
        };
        let value: u64 = number.parse().map_err(|_| {
            format!("`{text}` is not a duration: a number must come before `{character}`")
        })?;
        total = value
            .checked_mul(seconds)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!(
            "`{text}` is not a duration: `{number}` has no unit (w, d, h, m, s)"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way the config writes it, largest units first.
pub fn format_duration(duration: Duration) -> String {
    let mut seconds = duration.as_secs();
    if seconds == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            out.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        for (text, seconds) in [
            ("30d", 2_592_000),
            ("2h", 7_200),
            ("1h30m", 5_400),
            ("45s", 45),
            ("1w", 604_800),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
        assert_eq!(format_duration(Duration::from_secs(5_400)), "1h30m");
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("d").unwrap_err().contains("number"));
        assert!(parse_duration("3x").unwrap_err().contains("unexpected"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999w").is_err());
    }
}
