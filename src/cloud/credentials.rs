//! Credential providers: what a vendor client asks, per request, for the keys to sign with.
//!
//! A [`CredentialProvider`] hands out [`Credentials`] (AccessKeyId, secret, optional
//! security token) behind an `Arc`: a call signs with the snapshot it was given, so a refresh
//! never changes the keys of a call in flight. Two shapes:
//! - **files** (`access_key`, `sts`, QingCloud keys): the values come from the config, the
//!   environment or files; a file is re-read on use when its size, mtime or inode changed,
//!   so a secret replaced under a running daemon is used by the next call without SIGHUP.
//! - **refreshed** (`ram_role_arn`, `ecs_ram_role`, `oidc_role_arn`, Huawei `ecs_metadata`
//!   and `iam_temporary`): a vendor [`CredentialSource`] fetches temporary keys; the provider
//!   caches them and fetches again shortly before they expire. One refresh runs at a time
//!   (single flight: the cache lock is held across the fetch, so concurrent callers wait for
//!   and share its result). A vendor that refuses a token as expired makes the client call
//!   [`CredentialProvider::expired`] and retry once.
//!
//! Nothing here logs, prints or returns a secret: `Debug` of [`Credentials`] redacts.

use crate::cloud::account::{read_secret_text, CredentialKind, ResolvedCredentials};
use crate::error::{CloudError, ErrorClass};
use crate::secret::Secret;
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// The keys one call signs with.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret: Secret,
    /// The STS / temporary-AK security token (`x-acs-security-token`, `SecurityToken`,
    /// `X-Security-Token`), `None` for long-lived keys.
    pub security_token: Option<Secret>,
    /// When temporary keys stop working (`None`: never, or unknown).
    pub expires_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &self.secret)
            .field("security_token", &self.security_token)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Fetches temporary credentials from a vendor service (STS, a metadata service, IAM).
#[async_trait]
pub trait CredentialSource: Send + Sync {
    /// The vendor, for errors (`alibaba`, `huawei`).
    fn vendor(&self) -> &'static str;
    /// Fresh credentials; `now` is the caller's clock, for sources that only say how long
    /// the keys live.
    async fn fetch(
        &self,
        http: &reqwest::Client,
        now: OffsetDateTime,
    ) -> Result<Credentials, CloudError>;
}

/// How long before expiry temporary keys are replaced: the official SDKs refresh 180 s
/// early; keys that live only a few seconds (the simulator's) are replaced after three
/// quarters of their life instead.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(180);

/// Where "now" comes from; tests may pin it.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// One account's credentials, asked for on every call.
pub struct CredentialProvider {
    name: String,
    shape: Shape,
    clock: Clock,
}

enum Shape {
    Files(FileCredentials),
    Refreshed {
        source: Box<dyn CredentialSource>,
        http: reqwest::Client,
        cached: tokio::sync::Mutex<Option<Cached>>,
    },
}

struct Cached {
    credentials: Arc<Credentials>,
    /// When to fetch again (before `expires_at`, see [`REFRESH_BEFORE`]).
    refresh_at: OffsetDateTime,
}

/// A value given directly or kept in a file that is re-read when it changes.
enum Value {
    Fixed(Secret),
    File(WatchedFile),
}

impl Value {
    fn read(&self, vendor: &'static str, account: &str) -> Result<Secret, CloudError> {
        match self {
            Value::Fixed(value) => Ok(value.clone()),
            Value::File(file) => file.read(vendor, account),
        }
    }
}

struct FileCredentials {
    vendor: &'static str,
    access_key_id: Value,
    secret: Value,
    security_token: Option<Value>,
}

/// What tells a replaced file from the one read before: size, mtime and inode.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn stamp_of(path: &Path) -> std::io::Result<Stamp> {
    let metadata = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        len: metadata.len(),
        modified: metadata.modified().ok(),
        inode,
    })
}

/// A secret file, read again on use when its [`Stamp`] changed.
pub struct WatchedFile {
    path: PathBuf,
    last: Mutex<Option<(Stamp, Secret)>>,
}

impl WatchedFile {
    /// Watches `path`, seeding it with the value read at start (`initial`), if any.
    pub fn new(path: PathBuf, initial: Option<Secret>) -> Self {
        let last = initial.and_then(|value| stamp_of(&path).ok().map(|stamp| (stamp, value)));
        Self {
            path,
            last: Mutex::new(last),
        }
    }

    /// The file's value: the one read before if the file did not change, else its new
    /// contents. A file that cannot be read now (being replaced) keeps the last good value;
    /// one never read is an error naming the path (never the contents).
    pub fn read(&self, vendor: &'static str, account: &str) -> Result<Secret, CloudError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = stamp_of(&self.path);
        if let (Ok(stamp), Some((seen, value))) = (&stamp, last.as_ref()) {
            if stamp == seen {
                return Ok(value.clone());
            }
        }
        let fresh = stamp.and_then(|stamp| read_secret_text(&self.path).map(|v| (stamp, v)));
        match (fresh, last.as_ref()) {
            (Ok((stamp, value)), _) => {
                if last.is_some() {
                    tracing::info!(account, path = %self.path.display(), "secret file changed; using its new contents");
                }
                *last = Some((stamp, value.clone()));
                Ok(value)
            }
            (Err(error), Some((_, value))) => {
                tracing::warn!(account, path = %self.path.display(), error = %error, "cannot re-read a secret file; keeping its last contents");
                Ok(value.clone())
            }
            (Err(error), None) => Err(CloudError::new(
                vendor,
                "credentials",
                ErrorClass::Invalid,
                "SecretFileUnreadable",
                format!(
                    "credentials.{account}: cannot read {}: {error}",
                    self.path.display()
                ),
            )),
        }
    }
}

impl CredentialProvider {
    /// Keys that never change, a token included if given (tests, benchmarks).
    pub fn fixed(name: &str, credentials: Credentials) -> Self {
        Self::from_files(
            name,
            FileCredentials {
                vendor: "static",
                access_key_id: Value::Fixed(Secret::new(credentials.access_key_id)),
                secret: Value::Fixed(credentials.secret),
                security_token: credentials.security_token.map(Value::Fixed),
            },
        )
    }

    fn from_files(name: &str, files: FileCredentials) -> Self {
        Self {
            name: name.to_owned(),
            shape: Shape::Files(files),
            clock: Arc::new(OffsetDateTime::now_utc),
        }
    }

    /// Temporary keys fetched by `source` and refreshed before they expire.
    pub fn refreshed(name: &str, source: Box<dyn CredentialSource>, http: reqwest::Client) -> Self {
        Self {
            name: name.to_owned(),
            shape: Shape::Refreshed {
                source,
                http,
                cached: tokio::sync::Mutex::new(None),
            },
            clock: Arc::new(OffsetDateTime::now_utc),
        }
    }

    /// Replaces the clock (tests of refresh timing).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The provider for an account as configured: its kind decides the shape; files named
    /// by `access_key_id_file`, `access_key_secret_file` and `security_token_file` are
    /// watched. Vendor sources (STS, metadata services, IAM) are built by the vendor folder.
    pub fn for_account(credentials: &ResolvedCredentials, http: &reqwest::Client) -> Self {
        let source: Option<Box<dyn CredentialSource>> = match credentials.kind {
            CredentialKind::AccessKey | CredentialKind::Sts => None,
            CredentialKind::RamRoleArn => Some(Box::new(super::alibaba::sts::AssumeRole::new(
                credentials,
                Self::files_of(credentials),
            ))),
            CredentialKind::EcsRamRole => {
                Some(Box::new(super::alibaba::sts::EcsRamRole::new(credentials)))
            }
            CredentialKind::OidcRoleArn => {
                Some(Box::new(super::alibaba::sts::OidcRole::new(credentials)))
            }
            CredentialKind::EcsMetadata => Some(Box::new(
                super::huawei::securitykey::Metadata::new(credentials),
            )),
            CredentialKind::IamTemporary => Some(Box::new(
                super::huawei::securitykey::IamTemporary::new(credentials),
            )),
        };
        match source {
            Some(source) => Self::refreshed(&credentials.name, source, http.clone()),
            None => Self::files_of(credentials),
        }
    }

    /// The file-shaped provider of an account's own keys (for `ram_role_arn`, its source).
    pub fn files_of(credentials: &ResolvedCredentials) -> Self {
        let temporary = &credentials.temporary;
        let value = |file: &Option<PathBuf>, initial: Option<Secret>| match file {
            Some(path) => Value::File(WatchedFile::new(path.clone(), initial)),
            None => Value::Fixed(initial.unwrap_or_default()),
        };
        let files = FileCredentials {
            vendor: credentials.provider.as_str(),
            access_key_id: value(
                &temporary.access_key_id_file,
                Some(Secret::new(credentials.access_key_id.as_str())),
            ),
            secret: value(
                &temporary.access_key_secret_file,
                Some(credentials.access_key_secret.clone()),
            ),
            security_token: match (&temporary.security_token_file, &temporary.security_token) {
                (None, None) => None,
                (file, initial) => Some(value(file, initial.clone())),
            },
        };
        Self::from_files(&credentials.name, files)
    }

    /// The account (section) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the keys are temporary, fetched from a service (so an expired-token refusal
    /// is worth a refresh and one more attempt).
    pub fn is_refreshed(&self) -> bool {
        matches!(self.shape, Shape::Refreshed { .. })
    }

    /// The credentials to sign the next call with.
    pub async fn current(&self) -> Result<Arc<Credentials>, CloudError> {
        match &self.shape {
            Shape::Files(files) => {
                let (vendor, name) = (files.vendor, self.name.as_str());
                Ok(Arc::new(Credentials {
                    access_key_id: files.access_key_id.read(vendor, name)?.expose().to_owned(),
                    secret: files.secret.read(vendor, name)?,
                    security_token: files
                        .security_token
                        .as_ref()
                        .map(|token| token.read(vendor, name))
                        .transpose()?,
                    expires_at: None,
                }))
            }
            Shape::Refreshed {
                source,
                http,
                cached,
            } => {
                // Held across the fetch: one refresh at a time, its result shared.
                let mut cached = cached.lock().await;
                let now = (self.clock)();
                if let Some(entry) = cached.as_ref() {
                    if now < entry.refresh_at {
                        return Ok(entry.credentials.clone());
                    }
                }
                match source.fetch(http, now).await {
                    Ok(fresh) => {
                        let refresh_at = refresh_time(now, fresh.expires_at);
                        tracing::debug!(account = %self.name, "temporary credentials refreshed");
                        let credentials = Arc::new(fresh);
                        *cached = Some(Cached {
                            credentials: credentials.clone(),
                            refresh_at,
                        });
                        Ok(credentials)
                    }
                    Err(error) => match cached.as_ref() {
                        // Keys still valid for a while beat no keys: a metadata service that
                        // hiccups must not fail the deploys of an instance.
                        Some(entry)
                            if entry
                                .credentials
                                .expires_at
                                .is_none_or(|expires| now < expires) =>
                        {
                            tracing::warn!(account = %self.name, error = %error, "refreshing temporary credentials failed; using the current ones until they expire");
                            Ok(entry.credentials.clone())
                        }
                        _ => Err(error),
                    },
                }
            }
        }
    }

    /// Says that the vendor refused `used` as expired: the next [`current`](Self::current)
    /// fetches new keys, unless another call already replaced them.
    pub async fn expired(&self, used: &Arc<Credentials>) {
        if let Shape::Refreshed { cached, .. } = &self.shape {
            let mut cached = cached.lock().await;
            if cached
                .as_ref()
                .is_some_and(|entry| Arc::ptr_eq(&entry.credentials, used))
            {
                *cached = None;
            }
        }
    }
}

/// When keys fetched at `now` and expiring at `expires_at` are replaced: [`REFRESH_BEFORE`]
/// before expiry, or after three quarters of a shorter life; keys without an expiry are
/// fetched again after an hour.
pub fn refresh_time(now: OffsetDateTime, expires_at: Option<OffsetDateTime>) -> OffsetDateTime {
    let Some(expires_at) = expires_at else {
        return now + Duration::from_secs(3600);
    };
    let life = expires_at - now;
    let early = time::Duration::try_from(REFRESH_BEFORE).unwrap_or(time::Duration::ZERO);
    if life > early * 4 {
        expires_at - early
    } else {
        now + life * 3 / 4
    }
}

/// Whether a vendor code says the keys a call carried are stale (retry once with the keys
/// the provider hands out next): the token expired, or (an `sts` set of files caught
/// mid-replacement) the token belongs to another key id.
pub fn is_stale_token_code(code: &str) -> bool {
    matches!(
        code,
        "InvalidSecurityToken.Expired" | "InvalidSecurityToken.MismatchWithAccessKey"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use time::macros::datetime;

    struct Counting {
        fetched: Arc<AtomicU32>,
        life: Duration,
    }

    #[async_trait]
    impl CredentialSource for Counting {
        fn vendor(&self) -> &'static str {
            "test"
        }
        async fn fetch(
            &self,
            _: &reqwest::Client,
            now: OffsetDateTime,
        ) -> Result<Credentials, CloudError> {
            // A slow fetch: concurrent callers must wait for this one, not start their own.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let n = self.fetched.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Credentials {
                access_key_id: format!("STS.{n}"),
                secret: Secret::new(format!("secret-{n}")),
                security_token: Some(Secret::new(format!("token-{n}"))),
                expires_at: Some(now + self.life),
            })
        }
    }

    #[test]
    fn refresh_comes_early_and_short_lives_are_cut_by_a_quarter() {
        let now = datetime!(2024-01-01 00:00 UTC);
        assert_eq!(
            refresh_time(now, Some(now + Duration::from_secs(3600))),
            now + Duration::from_secs(3600 - 180)
        );
        assert_eq!(
            refresh_time(now, Some(now + Duration::from_secs(4))),
            now + Duration::from_secs(3)
        );
        assert_eq!(refresh_time(now, None), now + Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn one_refresh_at_a_time_and_calls_keep_what_they_signed_with() {
        let fetched = Arc::new(AtomicU32::new(0));
        let now = Arc::new(Mutex::new(datetime!(2024-01-01 00:00 UTC)));
        let clock_now = now.clone();
        let provider = Arc::new(
            CredentialProvider::refreshed(
                "ali",
                Box::new(Counting {
                    fetched: fetched.clone(),
                    life: Duration::from_secs(3600),
                }),
                reqwest::Client::new(),
            )
            .with_clock(Arc::new(move || *clock_now.lock().unwrap())),
        );
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let provider = provider.clone();
                tokio::spawn(async move { provider.current().await.unwrap() })
            })
            .collect();
        let mut seen = Vec::new();
        for call in calls {
            seen.push(call.await.unwrap());
        }
        assert_eq!(fetched.load(Ordering::SeqCst), 1, "single flight");
        assert!(seen.iter().all(|c| c.access_key_id == "STS.1"));
        let in_flight = seen[0].clone();
        // Near expiry: the next call gets new keys; the one in flight keeps its own.
        *now.lock().unwrap() += Duration::from_secs(3500);
        let next = provider.current().await.unwrap();
        assert_eq!(next.access_key_id, "STS.2");
        assert_eq!(in_flight.access_key_id, "STS.1");
        // A refusal of stale keys does not throw away newer ones...
        provider.expired(&in_flight).await;
        assert_eq!(provider.current().await.unwrap().access_key_id, "STS.2");
        // ...and a refusal of the current ones fetches again.
        provider.expired(&next).await;
        assert_eq!(provider.current().await.unwrap().access_key_id, "STS.3");
        assert!(!format!("{next:?}").contains("secret-2"));
        assert!(!format!("{next:?}").contains("token-2"));
    }

    #[tokio::test]
    async fn a_replaced_secret_file_is_used_by_the_next_call() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("secret");
        std::fs::write(&path, "first\n").unwrap();
        let file = WatchedFile::new(path.clone(), None);
        assert_eq!(file.read("test", "a").unwrap().expose(), "first");
        // Replaced the way operators and config managers do: write aside, rename over.
        let aside = directory.path().join("secret.new");
        std::fs::write(&aside, "second\n").unwrap();
        std::fs::rename(&aside, &path).unwrap();
        assert_eq!(file.read("test", "a").unwrap().expose(), "second");
        // Gone for a moment: the last good value stays.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(file.read("test", "a").unwrap().expose(), "second");
        let never = WatchedFile::new(directory.path().join("missing"), None);
        let error = never.read("test", "a").unwrap_err();
        assert!(error.message.contains("missing"), "{error}");
    }
}
