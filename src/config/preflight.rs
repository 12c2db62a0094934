//! What `certkeeper check` verifies beyond validation because `run` will need it: every
//! secret can be read (environment, file, `$CREDENTIALS_DIRECTORY`), the certificate and key
//! files of file sources and local CAs (and ACME CA bundles) are readable regular files, and
//! the state directory is writable or can be created. Unlike `validate`, this touches the
//! environment and the file system (read-only, but for one probe file in the state
//! directory); `check --offline` skips it. Each problem names the key and how the thing was
//! looked up. It also asks each `alibaba-rds` instance whose config does not state `engine`
//! for its engine (DescribeDBInstanceAttribute, one read) and refuses what that engine cannot
//! take, as `run` would before any write; an instance that cannot be asked (network,
//! credentials) is left to `run` and `plan`, which report it.

use super::credentials::{resolve_secret, SecretEnvironment};
use super::{Config, ConfigIssue, SourceConfig};
use crate::cloud::alibaba::rds::RdsSettings;
use std::path::{Path, PathBuf};

/// Every problem `run` would meet reading what the config names.
pub fn preflight(config: &Config, environment: &dyn SecretEnvironment) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    for (name, credentials) in &config.credentials {
        if let Err(error) = credentials.resolve(name, environment) {
            issues.push(error.issue());
        }
    }
    for (name, acme) in &config.acme {
        if let Err(error) = resolve_secret(
            &format!("acme.{name}"),
            "eab_hmac_key",
            acme.eab_hmac_key.as_ref(),
            acme.eab_hmac_key_env.as_deref(),
            acme.eab_hmac_key_file.as_deref(),
            environment,
        ) {
            issues.push(error.issue());
        }
        if let Some(bundle) = &acme.ca_bundle {
            readable_file(bundle, format!("acme.{name}.ca_bundle"), &mut issues);
        }
    }
    for (name, ca) in &config.local_ca {
        for (key, file) in [("cert", &ca.cert), ("key", &ca.key)] {
            if let Some(file) = file {
                readable_file(file, format!("local_ca.{name}.{key}"), &mut issues);
            }
        }
    }
    for (index, certificate) in config.certificates.iter().enumerate() {
        if let SourceConfig::File { cert, key, chain } = &certificate.source {
            let path = format!("certificate[{index}].source.file");
            readable_file(cert, format!("{path}.cert"), &mut issues);
            readable_file(key, format!("{path}.key"), &mut issues);
            if let Some(chain) = chain {
                readable_file(chain, format!("{path}.chain"), &mut issues);
            }
        }
    }
    if let Err(error) = config.store.resolve_key(environment) {
        issues.push(error.issue());
    }
    if let Err(message) = writable_state_dir(&config.daemon.state_dir) {
        issues.push(ConfigIssue::new("daemon.state_dir", message));
    }
    // The shared store's URL is a secret like the others (it is not connected to here).
    if config.store.backend == super::store::StoreBackend::Postgres {
        if let Err(error) = super::credentials::resolve_secret(
            "store",
            "url",
            None,
            config.store.url_env.as_deref(),
            config.store.url_file.as_deref(),
            environment,
        ) {
            issues.push(error.issue());
        }
        if let Some(ca_file) = &config.store.ca_file {
            readable_file(ca_file, "store.ca_file".into(), &mut issues);
        }
    }
    issues.extend(rds_engine_issues(config, environment));
    issues
}

/// How long `check` waits for one instance's engine.
const ENGINE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What each `alibaba-rds` target without `engine` asks that its instance's engine cannot
/// take, learnt from the instance. Only from a plain thread (`check` is one): inside an
/// async runtime it asks nothing rather than block that runtime.
fn rds_engine_issues(config: &Config, environment: &dyn SecretEnvironment) -> Vec<ConfigIssue> {
    use crate::cloud::alibaba::client::{default_rate_limits, AlibabaClient};
    use crate::cloud::alibaba::rds::RdsTarget;
    let probes: Vec<(usize, &super::TargetConfig, &RdsSettings, String)> = config
        .targets
        .iter()
        .enumerate()
        .filter_map(|(index, target)| {
            let settings = target.settings.downcast_ref::<RdsSettings>()?;
            settings
                .engine
                .is_none()
                .then(|| Some((index, target, settings, target.credentials.clone()?)))?
        })
        .collect();
    if probes.is_empty() || tokio::runtime::Handle::try_current().is_ok() {
        return Vec::new();
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let Ok(http) = crate::cloud::http::client(crate::cloud::http::HttpSettings {
        connect_timeout: ENGINE_PROBE_TIMEOUT,
        request_timeout: ENGINE_PROBE_TIMEOUT,
    }) else {
        return Vec::new();
    };
    let mut issues = Vec::new();
    runtime.block_on(async {
        for (index, target, settings, credentials) in probes {
            let Some(Ok(resolved)) = config
                .credentials
                .get(&credentials)
                .map(|entry| entry.resolve(&credentials, environment))
            else {
                continue;
            };
            let client = AlibabaClient::new(resolved, http.clone(), default_rate_limits());
            let probe = RdsTarget::new(&target.name, settings.clone(), client.into());
            let Ok(engine) = probe.reported_engine().await else {
                continue;
            };
            for refusal in settings.refusals_for(engine) {
                issues.push(ConfigIssue::new(
                    format!("target[{index}].{}", refusal.key),
                    format!(
                        "{} (instance {} runs {engine}, as DescribeDBInstanceAttribute reports)",
                        refusal.message, settings.instance_id
                    ),
                ));
            }
        }
    });
    issues
}

/// A regular file this process can open for reading. Opens nothing that is not a regular
/// file: opening a FIFO blocks.
fn readable_file(file: &Path, path: String, issues: &mut Vec<ConfigIssue>) {
    let problem = match std::fs::metadata(file) {
        Err(error) => Some(format!("cannot read {}: {error}", file.display())),
        Ok(metadata) if !metadata.is_file() => {
            Some(format!("{} is not a regular file", file.display()))
        }
        Ok(_) => std::fs::File::open(file)
            .err()
            .map(|error| format!("cannot read {}: {error}", file.display())),
    };
    if let Some(message) = problem {
        issues.push(ConfigIssue::new(path, message));
    }
}

/// The state directory exists and takes a new file, or its nearest existing ancestor does
/// (the daemon creates the rest).
fn writable_state_dir(state_dir: &Path) -> Result<(), String> {
    let mut existing: PathBuf = state_dir.to_owned();
    while std::fs::symlink_metadata(&existing).is_err() {
        match existing.parent() {
            Some(parent) => existing = parent.to_owned(),
            None => return Err(format!("{}: no existing parent", state_dir.display())),
        }
    }
    let metadata = std::fs::metadata(&existing)
        .map_err(|error| format!("cannot read {}: {error}", existing.display()))?;
    let subject = if existing == state_dir {
        format!("{}", state_dir.display())
    } else {
        format!(
            "{} does not exist and its parent {}",
            state_dir.display(),
            existing.display()
        )
    };
    if !metadata.is_dir() {
        return Err(format!("{subject} is not a directory"));
    }
    // The only reliable test of "may I create a file here" (ACLs, read-only mounts,
    // capabilities) is to create one.
    let probe = existing.join(format!(".certkeeper-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(error) => Err(format!("{subject} is not writable: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::credentials::SecretEnvironment;

    struct Empty;

    impl SecretEnvironment for Empty {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
        fn credentials_directory(&self) -> Option<PathBuf> {
            None
        }
    }

    #[test]
    fn names_each_missing_thing_and_how_it_was_looked_up() {
        let directory = tempfile::tempdir().unwrap();
        let blocker = directory.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let text = format!(
            "[daemon]\nstate_dir = {:?}\n\n\
             [credentials.ali]\nprovider = \"alibaba\"\naccess_key_id = \"AK\"\naccess_key_secret_env = \"PREFLIGHT_UNSET_X\"\n\n\
             [credentials.ali2]\nprovider = \"alibaba\"\naccess_key_id = \"AK\"\naccess_key_secret_file = \"alibaba-secret\"\n\n\
             [[certificate]]\nname = \"www\"\ndomains = [\"www.example.com\"]\nsource = {{ file = {{ cert = {:?}, key = {:?} }} }}\n",
            blocker.join("state"),
            directory.path().join("missing.pem"),
            directory.path(),
        );
        let loaded = crate::config::load_str("t.toml", &text).unwrap();
        let issues: Vec<String> = preflight(&loaded.config, &Empty)
            .into_iter()
            .map(|issue| format!("{}: {}", issue.path, issue.message))
            .collect();
        let expected = [
            "credentials.ali.access_key_secret_env: environment variable PREFLIGHT_UNSET_X is not set",
            "credentials.ali2.access_key_secret_file: \"alibaba-secret\" is relative and $CREDENTIALS_DIRECTORY is not set",
            "certificate[0].source.file.cert: cannot read",
            "certificate[0].source.file.key: ",
            "is not a regular file",
            "daemon.state_dir: ",
            "is not a directory",
        ];
        for fragment in expected {
            assert!(
                issues.iter().any(|issue| issue.contains(fragment)),
                "{fragment} in {issues:#?}"
            );
        }
        assert_eq!(issues.len(), 5, "{issues:#?}");
    }

    #[test]
    fn a_creatable_state_dir_passes() {
        let directory = tempfile::tempdir().unwrap();
        assert_eq!(writable_state_dir(&directory.path().join("a/b")), Ok(()));
        assert_eq!(writable_state_dir(directory.path()), Ok(()));
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 0);
    }
}
