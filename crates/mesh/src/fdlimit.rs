//! The process's open-file limit: raised to the hard limit when a command
//! starts (the whole mesh shares one process, so one fd table), and the
//! one-line hint a user gets when descriptors ran out.

use meshsim_proxy::fd_exhaustion_events;

/// The open-file limit before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub before: u64,
    pub now: u64,
    pub hard: u64,
}

impl std::fmt::Display for FdLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.before == self.now {
            write!(f, "open-file limit {} (hard limit {})", self.now, self.hard)
        } else {
            write!(
                f,
                "open-file limit raised from {} to {} (the hard limit)",
                self.before, self.now
            )
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as the scenario
/// runner does; what it was and is.
pub fn raise() -> FdLimit {
    let (before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0));
    let now = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(before);
    FdLimit { before, now, hard }
}

/// The current soft and hard limits.
pub fn current() -> (u64, u64) {
    rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0))
}

/// Descriptors this process has open (`/proc/self/fd`).
pub fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

/// Whether an error message is descriptor exhaustion (EMFILE, ENFILE).
pub fn says_exhausted(msg: &str) -> bool {
    msg.contains("Too many open files")
        || msg.contains("os error 24")
        || msg.contains("os error 23")
}

/// The hint for a run that ran out of descriptors: the limit, the
/// descriptors in use, what to do.
pub fn hint() -> String {
    let (soft, hard) = current();
    let open = open_fds().map_or("?".to_string(), |n| n.to_string());
    format!(
        "hint: this process ran out of file descriptors (open-file limit {soft}, hard limit {hard}, {open} open now): every simulated proxy, app and client shares it; use fewer connections or raise the limit (`ulimit -n`, at most the hard limit)"
    )
}

/// The hint, when descriptors ran out since `since` (a count of
/// [`exhaustion_events`]) or an error said so.
pub fn hint_if(since: u64, errors: &[&str]) -> Option<String> {
    (exhaustion_events() > since || errors.iter().any(|e| says_exhausted(e))).then(hint)
}

/// How many times a proxy, app or client of this process hit EMFILE/ENFILE.
pub fn exhaustion_events() -> u64 {
    fd_exhaustion_events()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_is_recognised_in_error_text() {
        let e = std::io::Error::from_raw_os_error(24);
        assert!(says_exhausted(&e.to_string()));
        assert!(!says_exhausted("Connection refused (os error 111)"));
        assert!(hint().contains("open-file limit"));
    }
}
