//! The systemd notify protocol behind one small API: READY, WATCHDOG, STATUS, RELOADING and
//! STOPPING. Outside systemd (`$NOTIFY_SOCKET` unset) every call is a no-op, so the daemon
//! runs the same in a container or a terminal.

use sd_notify::NotifyState;
use std::time::Duration;

/// Sends notifications to the service manager, if there is one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier {
    _private: (),
}

impl Notifier {
    pub fn new() -> Self {
        Self { _private: () }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        // A failure to notify must never stop the daemon; systemd's watchdog catches a
        // daemon that really stopped notifying.
        if let Err(error) = sd_notify::notify(false, states) {
            tracing::debug!(error = %error, "systemd notify failed");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// RELOADING=1 must carry MONOTONIC_USEC for `Type=notify-reload`; sd-notify adds it.
    pub fn reloading(&self) {
        self.send(&[
            NotifyState::Reloading,
            NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading")),
        ]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Half the watchdog interval systemd asked for, if it asked: the keep-alive period.
    /// `WATCHDOG_PID`, when set, must name this process (it is unset when the service
    /// manager's own child is the one being watched, e.g. under a test harness).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.parse::<u32>().ok()? != std::process::id() {
                return None;
            }
        }
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}
