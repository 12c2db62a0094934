//! Process-wide hardening applied before anything else runs: the daemon holds private keys
//! and cloud secrets in memory, so it must not leave them in a core dump or let another
//! process of the same user read its memory.

use std::io;

/// Marks the process not dumpable (`prctl(PR_SET_DUMPABLE, 0)`, see prctl(2)): no core
/// file is written on a crash, and processes of the same user can no longer attach with
/// ptrace or read `/proc/PID/mem` or `environ` (those files become root-owned). `execve`
/// resets it, so a reload command we spawn starts like any other program.
pub fn harden() -> io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_is_no_longer_dumpable() {
        harden().unwrap();
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            rustix::process::DumpableBehavior::NotDumpable
        );
    }
}
