//! Log set-up. Human-readable output on a terminal, JSON lines otherwise (journald and
//! container log collectors parse them); `--log-format` overrides, `RUST_LOG` or
//! `--log-level` sets the filter.

use crate::error::ErrorClass;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Whether a failure needs a human (logged at ERROR): it is parked, or its class is one
/// that waiting does not fix (credentials, billing, a missing or unsupported resource, a
/// rejected request). Throttled, transient and busy failures are retried and logged at WARN.
pub fn needs_human(class: ErrorClass, parked: bool) -> bool {
    parked
        || matches!(
            class,
            ErrorClass::Auth
                | ErrorClass::Billing
                | ErrorClass::NotFound
                | ErrorClass::Unsupported
                | ErrorClass::Invalid
        )
}

/// Logs a failure at ERROR when a human must act (see [`needs_human`]), else at WARN; the
/// arguments are those of `tracing::error!`.
macro_rules! failure {
    ($needs_human:expr, $($arguments:tt)+) => {
        if $needs_human {
            tracing::error!($($arguments)+)
        } else {
            tracing::warn!($($arguments)+)
        }
    };
}
pub(crate) use failure;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human on a terminal, JSON otherwise.
    Auto,
    Human,
    Json,
}

/// Crates whose debug output is about connections, pools and files rather than certificates:
/// kept at WARN unless the filter names them (`--log-level debug,hyper=trace`). A bare
/// `trace` does not wake them: an operator chasing a certkeeper decision would drown in
/// connection-pool lines (and the HTTP stack's trace output is not certkeeper's to vouch for);
/// auditing it means naming each crate.
const QUIET_CRATES: [&str; 13] = [
    "hyper",
    "hyper_util",
    "reqwest",
    "rustls",
    "h2",
    "notify",
    "rusqlite",
    "tower",
    "tokio_util",
    "want",
    "mio",
    "tungstenite",
    "cron",
];

/// `spec` (an `EnvFilter` directive list) with `crate=warn` added for every quiet crate it
/// does not name itself, whatever its default level.
pub fn with_quiet_crates(spec: &str) -> String {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let named: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .map(|directive| {
            let end = directive.find(['[', '=']).unwrap_or(directive.len());
            &directive[..end]
        })
        .filter(|target| !LEVELS.contains(&target.to_ascii_lowercase().as_str()))
        .collect();
    let mut directives = vec![spec.trim().to_owned()];
    for quiet in QUIET_CRATES {
        let mentioned = named.iter().any(|target| {
            *target == quiet
                || target
                    .strip_prefix(quiet)
                    .is_some_and(|rest| rest.starts_with("::"))
        });
        if !mentioned {
            directives.push(format!("{quiet}=warn"));
        }
    }
    directives.retain(|directive| !directive.is_empty());
    directives.join(",")
}

/// Installs the global subscriber, writing to stderr. Safe to call once per process.
pub fn init(format: LogFormat, level: &str) {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|spec| !spec.trim().is_empty())
        .unwrap_or_else(|| level.to_owned());
    let filter = EnvFilter::new(with_quiet_crates(&spec));
    let json = match format {
        LogFormat::Auto => !std::io::stderr().is_terminal(),
        LogFormat::Human => false,
        LogFormat::Json => true,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) fails harmlessly.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn third_party_crates_stay_at_warn_unless_named() {
        let spec = with_quiet_crates("debug");
        assert!(spec.starts_with("debug,"), "{spec}");
        assert!(
            spec.contains("hyper=warn") && spec.contains("rusqlite=warn"),
            "{spec}"
        );
        let spec = with_quiet_crates("debug,hyper=trace");
        assert!(!spec.contains("hyper=warn"), "{spec}");
        assert!(spec.contains("hyper_util=warn"), "{spec}");
        let spec = with_quiet_crates("info,reqwest::connect=debug,h2");
        assert!(
            !spec.contains("reqwest=warn") && !spec.contains(",h2=warn"),
            "{spec}"
        );
        assert!(EnvFilter::try_new(with_quiet_crates("debug,hyper=trace")).is_ok());
        let spec = with_quiet_crates("trace");
        assert!(spec.starts_with("trace,"), "{spec}");
        for quiet in QUIET_CRATES {
            assert!(spec.contains(&format!(",{quiet}=warn")), "{quiet}: {spec}");
        }
        let spec = with_quiet_crates("TRACE,rustls=trace");
        assert!(
            !spec.contains("rustls=warn") && spec.contains("hyper=warn"),
            "{spec}"
        );
    }

    #[test]
    fn a_human_must_act_on_credentials_billing_and_parked_failures() {
        assert!(needs_human(ErrorClass::Auth, false));
        assert!(needs_human(ErrorClass::Billing, false));
        assert!(needs_human(ErrorClass::Busy, true));
        for class in [
            ErrorClass::Transient,
            ErrorClass::Busy,
            ErrorClass::Throttled,
        ] {
            assert!(!needs_human(class, false), "{class}");
        }
    }
}
