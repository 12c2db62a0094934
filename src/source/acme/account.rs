//! The ACME account of one `[acme.NAME]` (RFC 8555 §7.3): registered once (contact, terms
//! agreed, optional External Account Binding), its credentials kept in the store and reused
//! after a restart, so a daemon never sends a second newAccount for the same name. When the
//! CA has forgotten the account (`accountDoesNotExist`, e.g. Pebble restarted) the stored
//! credentials are dropped and the account is registered again.

use super::errors::{classify, ORIGIN};
use super::http::AcmeHttp;
use super::{AcmeEvent, AcmeSettings};
use crate::error::ErrorClass;
use crate::secret::Secret;
use crate::source::{SourceError, SourceStore};
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// External Account Binding: the key id and the base64url HMAC key the CA handed out.
#[derive(Clone, Debug)]
pub struct Eab {
    pub kid: String,
    pub hmac_key: Secret,
}

/// Holds the live account, creating or restoring it on first use. Concurrent orders wait
/// on the same lock so that only one of them ever registers.
pub(crate) struct AccountManager {
    settings: Arc<AcmeSettings>,
    http: AcmeHttp,
    store: Arc<dyn SourceStore>,
    events: Option<UnboundedSender<AcmeEvent>>,
    account: tokio::sync::Mutex<Option<Account>>,
}

impl AccountManager {
    pub(crate) fn new(
        settings: Arc<AcmeSettings>,
        http: AcmeHttp,
        store: Arc<dyn SourceStore>,
        events: Option<UnboundedSender<AcmeEvent>>,
    ) -> Self {
        Self {
            settings,
            http,
            store,
            events,
            account: tokio::sync::Mutex::new(None),
        }
    }

    /// The account, restored from the store or registered now.
    pub(crate) async fn get(&self) -> Result<Account, SourceError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let name = &self.settings.account;
        let account = match self.store.load_account(name)? {
            Some(stored) => {
                let credentials: AccountCredentials = serde_json::from_str(stored.expose())
                    .map_err(|error| {
                        SourceError::new(
                            ORIGIN,
                            "restore account",
                            ErrorClass::Invalid,
                            "StoredAccount",
                            format!(
                                "stored credentials of account `{name}` are unreadable: {error}"
                            ),
                        )
                    })?;
                let account = Account::builder_with_http(Box::new(self.http.clone()))
                    .from_credentials(credentials)
                    .await
                    .map_err(|error| classify("restore account", &error))?;
                self.emit(AcmeEvent::AccountReused {
                    account: name.clone(),
                    url: account.id().to_owned(),
                });
                account
            }
            None => self.register().await?,
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Forgets the account `stale` after the CA said it does not exist, so the next
    /// [`get`](Self::get) registers again. A newer account already in place is kept.
    pub(crate) async fn forget(&self, stale: &Account) -> Result<(), SourceError> {
        let mut slot = self.account.lock().await;
        if slot.as_ref().is_some_and(|live| live.id() == stale.id()) {
            *slot = None;
            self.store.delete_account(&self.settings.account)?;
        }
        Ok(())
    }

    async fn register(&self) -> Result<Account, SourceError> {
        let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
        let new_account = NewAccount {
            contact: &contact,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let eab = self.settings.eab.as_ref().map(|eab| {
            ExternalAccountKey::new(eab.kid.clone(), &decode_hmac(eab.hmac_key.expose()))
        });
        let (account, credentials) = Account::builder_with_http(Box::new(self.http.clone()))
            .create(&new_account, self.settings.directory.clone(), eab.as_ref())
            .await
            .map_err(|error| classify("newAccount", &error))?;
        let json = serde_json::to_string(&credentials).map_err(|error| {
            SourceError::new(
                ORIGIN,
                "newAccount",
                ErrorClass::Transient,
                "Serialize",
                error.to_string(),
            )
        })?;
        self.store
            .save_account(&self.settings.account, &Secret::new(json))?;
        tracing::info!(account = %self.settings.account, url = %account.id(), "registered ACME account");
        self.emit(AcmeEvent::AccountCreated {
            account: self.settings.account.clone(),
            url: account.id().to_owned(),
        });
        Ok(account)
    }

    fn emit(&self, event: AcmeEvent) {
        if let Some(events) = &self.events {
            // A closed receiver only means nobody listens any more.
            let _ = events.send(event);
        }
    }
}

/// EAB HMAC keys are handed out base64url-encoded (RFC 8555 §7.3.4); some CAs pad them or
/// use the standard alphabet, so both are accepted. A key that is not base64 is used as is.
fn decode_hmac(key: &str) -> Vec<u8> {
    use base64::Engine as _;
    let trimmed = key.trim().trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .unwrap_or_else(|_| trimmed.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_keys_decode_from_either_alphabet() {
        assert_eq!(decode_hmac("AQID"), vec![1, 2, 3]);
        assert_eq!(decode_hmac("-_8"), vec![0xfb, 0xff]);
        assert_eq!(decode_hmac("+/8="), vec![0xfb, 0xff]);
    }
}
