//! Describe → compare → correct → verify by reading back, over the cloud traits: a target
//! converges to a certificate ([`converge`]), a policy resource to its desired state
//! ([`apply_policy`]). The vendors (`crate::cloud`) only observe and write; deciding when to
//! write and checking the result is the engine's job, so it lives here.

use crate::cert::CertificateBundle;
use crate::cloud::{Policy, PolicyFinding, PolicyMode, Remediation, Target};
use crate::error::{CloudError, ErrorClass};
use time::OffsetDateTime;

/// How a convergence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convergence {
    /// The target already served the bundle: no write call was made.
    AlreadyInSync,
    /// The bundle was deployed and read back.
    Deployed,
}

/// Describe → compare → deploy → verify by reading back. Idempotent: a target that already
/// serves `bundle` gets no write call.
pub async fn converge(
    target: &dyn Target,
    bundle: &CertificateBundle,
) -> Result<Convergence, CloudError> {
    if target.observe().await?.serves(bundle) {
        return Ok(Convergence::AlreadyInSync);
    }
    deploy_and_verify(target, bundle).await?;
    Ok(Convergence::Deployed)
}

/// The second half of [`converge`]: deploy, then verify by reading back. For callers that
/// have just observed a difference, so the read before the write is not paid twice.
pub async fn deploy_and_verify(
    target: &dyn Target,
    bundle: &CertificateBundle,
) -> Result<(), CloudError> {
    target.deploy(bundle).await?;
    let live = target.observe().await?;
    if live.serves(bundle) {
        Ok(())
    } else {
        Err(CloudError::new(
            "certkeeper",
            format!("verify {}", target.kind()),
            ErrorClass::Invalid,
            "VerificationFailed",
            format!(
                "target {} does not serve certificate {} after deploy",
                target.name(),
                bundle.fingerprint()
            ),
        ))
    }
}

/// The result of one policy pass over one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyOutcome {
    Compliant,
    /// Audit mode: violation reported, nothing written.
    Reported(PolicyFinding),
    /// Enforce mode outside the window: nothing written; the window opens at this time.
    Deferred {
        finding: PolicyFinding,
        window_opens: Option<OffsetDateTime>,
    },
    /// Enforce mode, but the resource is busy now.
    Busy(PolicyFinding),
    /// Corrected and read back compliant.
    Remediated(Remediation),
}

/// check → (audit: report) | (enforce: window open and resource idle → remediate → verify).
pub async fn apply_policy(
    policy: &dyn Policy,
    resource: &str,
    now: OffsetDateTime,
) -> Result<PolicyOutcome, CloudError> {
    let finding = policy.check(resource).await?;
    if finding.compliant {
        return Ok(PolicyOutcome::Compliant);
    }
    if policy.mode() == PolicyMode::Audit {
        return Ok(PolicyOutcome::Reported(finding));
    }
    if let Some(window) = policy.maintenance_window() {
        if !window.is_open(now) {
            let window_opens = window.next_open(now);
            return Ok(PolicyOutcome::Deferred {
                finding,
                window_opens,
            });
        }
    }
    if finding.busy {
        return Ok(PolicyOutcome::Busy(finding));
    }
    let remediation = policy.remediate(resource).await?;
    let after = policy.check(resource).await?;
    if after.compliant {
        Ok(PolicyOutcome::Remediated(remediation))
    } else {
        Err(CloudError::new(
            "certkeeper",
            format!("verify {}", policy.kind()),
            ErrorClass::Invalid,
            "VerificationFailed",
            format!("{} still {} after remediation", resource, after.observed),
        ))
    }
}

/// When the engine may next remediate a resource after `apply_policy` failed with `error`.
///
/// A remediation whose vendor job ran and failed (or outlived its deadline) returns an
/// error carrying `job_id`. Such a change restarts a database, so it is retried in the
/// *next* maintenance window, never again in the current one: this returns when that
/// window opens. The engine keeps checking (and reporting) the resource meanwhile but does
/// not call `remediate` before this time. `None` means the error follows the ordinary
/// per-class backoff (no job ran, or the policy has no window).
pub fn remediation_deferred_until(
    policy: &dyn Policy,
    error: &CloudError,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    error.job_id.as_ref()?;
    let window = policy.maintenance_window()?;
    // Inside an open window `next_open` is the start of the following occurrence.
    window.next_open(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::bundle::testing;
    use crate::cloud::file::{FileSettings, FileTarget};
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn deploys_files_and_is_idempotent() {
        let directory = tempfile::tempdir().unwrap();
        let marker = directory.path().join("reloaded");
        let script = format!("echo x >> {}", marker.display());
        let settings = FileSettings {
            directory: directory.path().join("tls"),
            owner: None,
            group: None,
            reload_command: Some(vec!["sh".into(), "-c".into(), script]),
            reload_timeout: Some(std::time::Duration::from_secs(5)),
        };
        let target = FileTarget::new("files", &settings).unwrap();
        let bundle = testing::fresh(&["www.example.com"]);
        assert_eq!(
            converge(&target, &bundle).await.unwrap(),
            Convergence::Deployed
        );
        assert_eq!(
            converge(&target, &bundle).await.unwrap(),
            Convergence::AlreadyInSync
        );
        let tls = directory.path().join("tls");
        assert_eq!(
            std::fs::read_to_string(tls.join("cert.pem")).unwrap(),
            bundle.leaf_pem
        );
        assert_eq!(
            std::fs::read_to_string(tls.join("key.pem")).unwrap(),
            bundle.key_pem.expose()
        );
        assert_eq!(
            std::fs::metadata(tls.join("key.pem"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // One reload: the second converge wrote nothing.
        assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
    }
}
