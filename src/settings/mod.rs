//! What the config and the products share to read settings, below both: the issue a
//! check reports ([`ConfigIssue`], located by key path), reading a table into a settings
//! type with the nearest valid key suggested ([`settings_at`]), durations as written
//! ([`duration`]) and domain-name syntax ([`check_domain`]). The products in `cloud/`
//! import these from here; `config` re-exports them, so `config` sits above `cloud`.

pub mod duration;

use serde::de::DeserializeOwned;
use std::fmt;

/// One problem found by validation, located by its key path (`target[2].domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, with `[i]` for array entries: `target[2].maintenance_window.schedule`.
    pub path: String,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A product's own keys (`table` without the common ones) as its settings type `T`; an
/// unknown key is named at `path` with the nearest of `T`'s and the `common` keys.
pub fn settings_at<T: DeserializeOwned>(
    table: toml::Table,
    path: &str,
    common: &[&str],
) -> Result<T, ConfigIssue> {
    deserialize_at(toml::Value::Table(table), path, common)
}

/// Deserializes with the failing key's path kept, turning serde's "unknown field" message
/// into one that suggests the nearest valid key.
pub fn deserialize_at<'de, T: DeserializeOwned, D>(
    deserializer: D,
    prefix: &str,
    extra_keys: &[&str],
) -> Result<T, ConfigIssue>
where
    D: serde::Deserializer<'de, Error = toml::de::Error>,
{
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let inner_path = error.path().to_string();
        let message = error.inner().message().to_owned();
        let mut path = join_path(prefix, if inner_path == "." { "" } else { &inner_path });
        let message = match unknown_field(&message) {
            Some((field, mut expected)) => {
                expected.extend(extra_keys.iter().map(|key| key.to_string()));
                // serde_path_to_error already names the unknown key in some positions.
                if !path.ends_with(field.as_str()) {
                    path = join_path(&path, &field);
                }
                let mut text = format!("unknown key `{field}`");
                if let Some(nearest) = nearest(&field, &expected) {
                    text.push_str(&format!(" (did you mean `{nearest}`?)"));
                }
                text
            }
            None => message.trim().to_owned(),
        };
        ConfigIssue::new(path, message)
    })
}

fn join_path(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if rest.starts_with('[') => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

/// Reads serde's ``unknown field `x`, expected one of `a`, `b` `` (or ``expected `a` ``).
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    let field = rest[..end].to_owned();
    let expected = rest[end + 1..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((field, expected))
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a typo.
pub fn nearest(word: &str, candidates: &[String]) -> Option<String> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(word, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.clone())
}

/// Checks a DNS name (optionally a wildcard) and pushes an issue when it is not valid.
pub fn check_domain(domain: &str, path: &str, allow_wildcard: bool, issues: &mut Vec<ConfigIssue>) {
    if let Err(reason) = domain_syntax(domain, allow_wildcard) {
        issues.push(ConfigIssue::new(
            path,
            format!("`{domain}` is not a valid domain name: {reason}"),
        ));
    }
}

fn domain_syntax(domain: &str, allow_wildcard: bool) -> Result<(), String> {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    if name.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err("needs at least two labels".into());
    }
    for (index, label) in labels.iter().enumerate() {
        if *label == "*" {
            if index != 0 {
                return Err("`*` may only be the first label".into());
            }
            if !allow_wildcard {
                return Err("wildcards are not allowed here".into());
            }
            continue;
        }
        if label.is_empty() || label.len() > 63 {
            return Err("each label must be 1 to 63 characters".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` starts or ends with `-`"));
        }
        if !label
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '-')
        {
            return Err(format!(
                "label `{label}` has characters other than letters, digits and `-`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_messages_are_read() {
        let (field, expected) =
            unknown_field("unknown field `domian`, expected one of `domain`, `api`").unwrap();
        assert_eq!(field, "domian");
        assert_eq!(expected, vec!["domain", "api"]);
        assert_eq!(nearest("domian", &expected), Some("domain".into()));
        assert_eq!(nearest("zzzz", &expected), None);
    }

    #[test]
    fn domains() {
        assert!(domain_syntax("www.example.com", false).is_ok());
        assert!(domain_syntax("*.example.com", true).is_ok());
        assert!(domain_syntax("*.example.com", false).is_err());
        assert!(domain_syntax("a.*.example.com", true).is_err());
        assert!(domain_syntax("-a.example.com", true).is_err());
        assert!(domain_syntax("localhost", true).is_err());
        assert!(domain_syntax("exa_mple.com", true).is_err());
    }
}
