//! The simulator's table of temporary keys it issued (Alibaba STS and instance roles, Huawei
//! metadata and IAM temporary AK/SK): each is an AccessKeyId, a secret and a security token
//! that stop working at their expiry. Each vendor simulator turns a [`KeyCheck`] into its
//! own documented refusal. Written from the vendor docs, independent of the client code.

use super::sim::SimResponse;
use std::collections::HashMap;
use std::sync::Mutex;
use time::OffsetDateTime;

/// One issued key.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub access_key_id: String,
    pub secret: String,
    pub security_token: String,
    pub expires_at: OffsetDateTime,
}

/// What a request's key id and token amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// Not a key this table issued (a long-lived key, or unknown): no token may come with it.
    NotIssued,
    /// An issued key with its own, unexpired token: the secret to verify the signature with.
    Valid(String),
    /// An issued key sent without a token.
    MissingToken,
    /// A token that this table never issued (forged or garbled).
    Malformed,
    /// A real token sent with another key id.
    Mismatch,
    /// The key's token expired.
    Expired,
}

/// Issued keys, kept an hour past expiry so a late use is told "expired", not "unknown".
#[derive(Default)]
pub struct IssuedKeys {
    keys: Mutex<HashMap<String, IssuedKey>>,
    issued: Mutex<u64>,
}

/// How long an expired key is remembered.
const REMEMBER_EXPIRED: time::Duration = time::Duration::hours(1);

impl IssuedKeys {
    /// Issues a key living `lifetime` from `now`; `prefix` starts its id (`STS.`).
    pub fn issue(&self, prefix: &str, now: OffsetDateTime, lifetime: time::Duration) -> IssuedKey {
        let random = || uuid::Uuid::new_v4().simple().to_string();
        let key = IssuedKey {
            access_key_id: format!("{prefix}{}", &random()[..20]),
            secret: random(),
            security_token: format!("CAIS{}{}", random(), random()),
            // Whole seconds: the expiry is written to the second, and a key must stop
            // working when its written expiry says so, not a fraction of a second later.
            expires_at: truncate_to_second(now + lifetime),
        };
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.retain(|_, key| key.expires_at + REMEMBER_EXPIRED > now);
        keys.insert(key.access_key_id.clone(), key.clone());
        *self.issued.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        key
    }

    /// How many keys were issued so far (the state dump shows it).
    pub fn issued(&self) -> u64 {
        *self.issued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the key id and token of a request received at `at`.
    pub fn check(&self, access_key_id: &str, token: Option<&str>, at: OffsetDateTime) -> KeyCheck {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        match (keys.get(access_key_id), token) {
            (None, None) => KeyCheck::NotIssued,
            (None, Some(token)) => {
                if keys.values().any(|key| key.security_token == token) {
                    KeyCheck::Mismatch
                } else {
                    KeyCheck::Malformed
                }
            }
            (Some(_), None) => KeyCheck::MissingToken,
            (Some(key), Some(token)) if key.security_token != token => {
                if keys.values().any(|other| other.security_token == token) {
                    KeyCheck::Mismatch
                } else {
                    KeyCheck::Malformed
                }
            }
            (Some(key), Some(_)) if key.expires_at <= at => KeyCheck::Expired,
            (Some(key), Some(_)) => KeyCheck::Valid(key.secret.clone()),
        }
    }
}

/// Session tokens of a metadata service's hardened mode (Alibaba IMDSv2, Huawei
/// `X-Metadata-Token`): `PUT` one with a TTL header, send it on every read.
#[derive(Default)]
pub struct SessionTokens(Mutex<HashMap<String, OffsetDateTime>>);

/// The longest session a metadata service grants (6 h, both vendors).
pub const MAX_SESSION_TTL_SECONDS: u64 = 21_600;

impl SessionTokens {
    /// A new session for the TTL header's value, `None` if it is missing or out of range.
    pub fn open(&self, ttl_header: Option<&str>, now: OffsetDateTime) -> Option<String> {
        let ttl = ttl_header
            .and_then(|ttl| ttl.trim().parse::<u64>().ok())
            .filter(|ttl| (1..=MAX_SESSION_TTL_SECONDS).contains(ttl))?;
        let token = format!("mdt{}", uuid::Uuid::new_v4().simple());
        let mut sessions = self.0.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, expires| *expires > now);
        sessions.insert(token.clone(), now + time::Duration::seconds(ttl as i64));
        Some(token)
    }

    /// Whether `token` is a live session.
    pub fn is_live(&self, token: Option<&str>, now: OffsetDateTime) -> bool {
        token.is_some_and(|token| {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(token)
                .is_some_and(|expires| *expires > now)
        })
    }
}

/// A metadata service's plain-text answer.
pub fn plain(status: u16, body: &str) -> SimResponse {
    SimResponse {
        status,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: body.as_bytes().to_vec(),
        outcome: if status == 200 {
            "ok".into()
        } else {
            format!("HTTP{status}")
        },
    }
}

fn truncate_to_second(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(0).unwrap_or(at)
}

/// RFC 3339 UTC to the second, as STS and the metadata services write `Expiration`.
pub fn format_expiry(at: OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn tokens_are_checked_against_their_key_and_expiry() {
        let keys = IssuedKeys::default();
        let now = datetime!(2024-01-01 00:00 UTC);
        let a = keys.issue("STS.", now, time::Duration::seconds(5));
        let b = keys.issue("STS.", now, time::Duration::seconds(50));
        let token = Some(a.security_token.as_str());
        assert_eq!(
            keys.check(&a.access_key_id, token, now),
            KeyCheck::Valid(a.secret.clone())
        );
        assert_eq!(
            keys.check(&a.access_key_id, token, now + time::Duration::seconds(5)),
            KeyCheck::Expired
        );
        assert_eq!(
            keys.check(&a.access_key_id, None, now),
            KeyCheck::MissingToken
        );
        assert_eq!(
            keys.check(&a.access_key_id, Some("CAISforged"), now),
            KeyCheck::Malformed
        );
        assert_eq!(keys.check(&b.access_key_id, token, now), KeyCheck::Mismatch);
        assert_eq!(keys.check("LTAIstatic", None, now), KeyCheck::NotIssued);
        assert_eq!(
            keys.check("LTAIstatic", Some("CAISforged"), now),
            KeyCheck::Malformed
        );
        assert_eq!(keys.issued(), 2);
    }
}
