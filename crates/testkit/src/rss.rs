//! Peak resident memory of a child process, as the kernel accounts it (`wait4`'s rusage).

use std::process::Command;

/// Runs `cmd` to its end and returns its peak RSS in bytes; panics unless it exits 0.
///
/// The figure includes the *calling* process's high-water mark: Linux folds the parent's
/// peak into the child's `ru_maxrss` when the child execs (it starts as a vfork of the
/// parent). Call it from a small test process (see `crates/cli/tests/memory/`).
pub fn peak_rss(cmd: &mut Command) -> u64 {
    // wait4 below reaps the child itself, to read that child's own rusage.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("the binary starts");
    let mut status = 0;
    // SAFETY: rusage is a plain C struct of integers, for which all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and fills `usage`; the Child handle is not waited again.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed: {status}"
    );
    usage.ru_maxrss as u64 * 1024
}
