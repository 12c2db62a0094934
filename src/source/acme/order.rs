//! One ACME order (RFC 8555 §7.4) from newOrder to the downloaded chain: identifiers for
//! every name (wildcards included), challenges answered through the configured solver, a
//! fresh key and an rcgen CSR, finalize, and the full chain. Polling honours the CA's
//! Retry-After and otherwise starts at the configured first delay, doubling: fast on a local
//! CA, polite on a real one. Challenge material is always removed when the order ends.

use super::challenge::{dns01_record_name, ChallengeSolver, TokenGuard};
use super::errors::{classify, ORIGIN};
use super::PollSettings;
use crate::cloud::DnsRecord;
use crate::error::ErrorClass;
use crate::secret::Secret;
use crate::source::{CertificateRequest, SourceError};
use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    Order, OrderStatus, RetryPolicy,
};

/// What a finished order hands back.
pub(crate) struct Finished {
    pub chain_pem: String,
    pub key_pem: Secret,
}

/// Why newOrder failed: kept raw so the caller can tell "account gone" and "replaces
/// refused" apart before classifying.
pub(crate) enum OrderFailure {
    NewOrder(instant_acme::Error),
    Other(SourceError),
}

impl From<SourceError> for OrderFailure {
    fn from(error: SourceError) -> Self {
        OrderFailure::Other(error)
    }
}

fn retry_policy(poll: &PollSettings) -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(poll.first_delay)
        .backoff(poll.backoff)
        .timeout(poll.timeout)
}

/// Creates the order; answers, finalizes and downloads it.
pub(crate) async fn run(
    account: &Account,
    request: &CertificateRequest,
    solver: &ChallengeSolver,
    poll: &PollSettings,
    profile: Option<&str>,
    replaces: Option<CertificateIdentifier<'static>>,
    key: &Secret,
) -> Result<Finished, OrderFailure> {
    let identifiers: Vec<Identifier> = request
        .domains
        .iter()
        .map(|name| Identifier::Dns(name.clone()))
        .collect();
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(profile) = profile {
        new_order = new_order.profile(profile);
    }
    if let Some(replaces) = replaces {
        new_order = new_order.replaces(replaces);
    }
    let mut order = account
        .new_order(&new_order)
        .await
        .map_err(OrderFailure::NewOrder)?;

    let mut guard = TokenGuard::default();
    let mut records = Vec::new();
    let outcome = complete(
        &mut order,
        request,
        solver,
        poll,
        key,
        &mut guard,
        &mut records,
    )
    .await;
    drop(guard);
    if let ChallengeSolver::Dns01 { solver, .. } = solver {
        for record in &records {
            if let Err(error) = solver.cleanup(record).await {
                // The certificate (or the order's own error) matters more; a leftover TXT
                // record is harmless and the next cleanup of the same name removes it.
                tracing::warn!(record = %record.fqdn, error = %error, "could not remove DNS-01 record");
            }
        }
    }
    Ok(outcome?)
}

async fn complete(
    order: &mut Order,
    request: &CertificateRequest,
    solver: &ChallengeSolver,
    poll: &PollSettings,
    key: &Secret,
    guard: &mut TokenGuard,
    records: &mut Vec<DnsRecord>,
) -> Result<Finished, SourceError> {
    let policy = retry_policy(poll);
    let wanted = match solver {
        ChallengeSolver::Http01(_) => ChallengeType::Http01,
        ChallengeSolver::Dns01 { .. } => ChallengeType::Dns01,
    };

    // First pass: publish every pending challenge, so a multi-name order waits for DNS
    // propagation once rather than once per name.
    let mut pending = 0usize;
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|error| classify("authorization", &error))?;
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(SourceError::new(
                    ORIGIN,
                    "authorization",
                    ErrorClass::Invalid,
                    "AuthorizationState",
                    format!("authorization is {other:?}"),
                ))
            }
        }
        let domain = authz.identifier().to_string();
        let challenge = authz.challenge(wanted.clone()).ok_or_else(|| {
            SourceError::new(
                ORIGIN,
                "authorization",
                ErrorClass::Unsupported,
                "NoChallenge",
                format!("the CA offers no {wanted:?} challenge for {domain}"),
            )
        })?;
        let key_authorization = challenge.key_authorization();
        match solver {
            ChallengeSolver::Http01(responder) => {
                responder.publish(guard, &challenge.token, key_authorization.as_str());
            }
            ChallengeSolver::Dns01 { solver, .. } => {
                let record = solver
                    .present(&dns01_record_name(&domain), &key_authorization.dns_value())
                    .await
                    .map_err(|error| {
                        SourceError::new(
                            ORIGIN,
                            "dns01 present",
                            error.class,
                            error.code.clone(),
                            error.to_string(),
                        )
                        .with_retry_after(error.retry_after)
                    })?;
                records.push(record);
            }
        }
        pending += 1;
    }
    if pending > 0 {
        if let ChallengeSolver::Dns01 {
            propagation_wait, ..
        } = solver
        {
            tokio::time::sleep(*propagation_wait).await;
        }
        // Second pass (no network: the authorizations are cached): tell the CA to look.
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|error| classify("authorization", &error))?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut challenge) = authz.challenge(wanted.clone()) {
                challenge
                    .set_ready()
                    .await
                    .map_err(|error| classify("challenge", &error))?;
            }
        }
    }

    let status = order
        .poll_ready(&policy)
        .await
        .map_err(|error| classify("poll order", &error))?;
    if status != OrderStatus::Ready {
        return Err(failed_validation(order).await);
    }

    // CN = first name, SANs = all names; signed with whatever key type was configured.
    let csr = crate::cert::csr_der(key, &request.domains).map_err(|error| {
        SourceError::new(ORIGIN, "csr", ErrorClass::Invalid, "Csr", error.to_string())
    })?;
    order
        .finalize_csr(&csr)
        .await
        .map_err(|error| classify("finalize", &error))?;
    let chain_pem = order
        .poll_certificate(&policy)
        .await
        .map_err(|error| classify("certificate", &error))?;
    Ok(Finished {
        chain_pem,
        key_pem: key.clone(),
    })
}

/// The error of an order that went invalid: the first failed challenge's problem, which
/// names what the CA saw (wrong response, DNS failure, CAA...).
async fn failed_validation(order: &mut Order) -> SourceError {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if let Ok(state) = authz.refresh().await {
            for challenge in &state.challenges {
                if let Some(problem) = &challenge.error {
                    return classify("validation", &instant_acme::Error::Api(problem.clone()));
                }
            }
        }
    }
    SourceError::new(
        ORIGIN,
        "validation",
        ErrorClass::Invalid,
        "OrderInvalid",
        "the order became invalid without naming a challenge error",
    )
}
