//! Secret values (private keys, access key secrets, tokens, passwords). A `Secret` can be
//! used where the value is needed but never prints it: `Debug` and `Display` show
//! `** REDACTED **`, and the memory is zeroed on drop.

use std::fmt;
use zeroize::Zeroize;

/// A string that must never reach logs, metrics, errors or `Debug` output.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plain value, for signing or sending. Call sites are easy to audit by this name.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("** REDACTED **")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("** REDACTED **")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `any`, not `string`: some formats (serde_json) report a mismatched scalar
        // themselves, value included, before a string visitor is asked.
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// Accepts only strings. serde's own type errors quote the value they met (``invalid type:
/// integer `8675309`, expected a string``), which would print an unquoted numeric password
/// in `certkeeper check` and in a refused reload; these errors name only the kind of value.
struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: serde::de::Error>(&self, kind: &'static str) -> Result<Secret, E> {
        Err(E::invalid_type(serde::de::Unexpected::Other(kind), self))
    }
}

impl<'de> serde::de::Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a quoted string")
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Secret, E> {
        Ok(Secret::new(value))
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Secret, E> {
        Ok(Secret(value))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        self.refuse("a boolean")
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        self.refuse("an integer")
    }

    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Secret, E> {
        self.refuse("an integer")
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        self.refuse("an integer")
    }

    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Secret, E> {
        self.refuse("an integer")
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        self.refuse("a number")
    }

    fn visit_char<E: serde::de::Error>(self, _: char) -> Result<Secret, E> {
        self.refuse("a character")
    }

    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        self.refuse("bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "** REDACTED **");
        assert_eq!(format!("{secret}"), "** REDACTED **");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[derive(Debug, serde::Deserialize)]
    struct Holder {
        #[allow(dead_code)]
        password: Secret,
    }

    #[test]
    fn deserialize_errors_never_quote_the_value() {
        let holder: Holder = toml::from_str("password = \"hunter2\"").unwrap();
        assert_eq!(holder.password.expose(), "hunter2");
        let holder: Holder = serde_json::from_str(r#"{"password": "hunter2"}"#).unwrap();
        assert_eq!(holder.password.expose(), "hunter2");
        for text in [
            "password = 8675309",
            "password = 86753.09",
            "password = true",
            "password = [\"hunter2\"]",
            "password = 1979-05-27T07:32:00Z",
        ] {
            let error = toml::from_str::<Holder>(text).unwrap_err().to_string();
            for leaked in ["8675309", "86753.09", "true", "hunter2", "1979"] {
                let line = error.lines().next().unwrap_or_default();
                assert!(!line.contains(leaked), "{text}: {error}");
            }
            assert!(error.contains("a quoted string"), "{text}: {error}");
        }
        let error = serde_json::from_str::<Holder>(r#"{"password": 8675309}"#)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("8675309"), "{error}");
    }
}
