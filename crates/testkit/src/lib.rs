//! What the tests of several crates share: how a test whose prerequisite (a tool, a
//! database) is missing says so, and the fuzzers' kept inputs to replay.
//!
//! `cargo test` captures what a passing test prints with `println!`/`eprintln!`, so
//! a skip reported that way is invisible and the run just says "ok". [`skip`]
//! instead writes to the process's standard error directly (which the harness does
//! not capture), appends the skip to the file named by `ONLINECA_SKIP_LOG` (where
//! `./test.sh` collects them for its closing summary), and with `CI` set fails the
//! test: CI installs everything and must run every test.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable naming the file skips are appended to.
pub const SKIP_LOG: &str = "ONLINECA_SKIP_LOG";

/// Reports that the calling test does not run because `what` is missing (`why`
/// says how that was found out; `install` what to do about it). Panics when `CI`
/// is set. The caller returns right after.
pub fn skip(what: &str, why: &str, install: &str) {
    let log = std::env::var_os(SKIP_LOG);
    let ci = std::env::var_os("CI").is_some();
    record(what, why, install, ci, log.as_deref().map(Path::new));
}

/// [`skip`] with its environment passed in.
fn record(what: &str, why: &str, install: &str, ci: bool, log: Option<&Path>) {
    let thread = std::thread::current();
    // The harness names each test's thread after the test.
    let test = thread.name().unwrap_or("?");
    if ci {
        panic!("{what} is missing ({why}) and CI is set: every test must run; {install}");
    }
    let line = format!("SKIPPED {test}: {what} is missing ({why}); {install}");
    // A line of its own, although the harness's "test ... ok" lines may interleave.
    let _ = writeln!(std::io::stderr().lock(), "\n{line}");
    if let Some(log) = log {
        // One short write with O_APPEND: lines from parallel tests do not interleave.
        let entry = format!("{what}\t{install}\t{test}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(entry.as_bytes()));
        if let Err(e) = written {
            let _ = writeln!(
                std::io::stderr().lock(),
                "cannot record the skip in {}: {e}",
                log.display()
            );
        }
    }
}

/// The kept inputs of fuzz target `target` (`fuzz/regressions/<target>/`), with their
/// paths, in name order; panics if there are none, so that a moved directory cannot
/// make a replay test pass on nothing.
pub fn fuzz_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no inputs in {}", dir.display());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_recorded_for_the_summary() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips");
        record(
            "nginx",
            "not on PATH",
            "apt-get install nginx",
            false,
            Some(&log),
        );
        record(
            "nginx",
            "not on PATH",
            "apt-get install nginx",
            false,
            Some(&log),
        );
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.starts_with("nginx\tapt-get install nginx\ttests::a_skip_is_recorded"),
            "{text}"
        );
    }

    #[test]
    #[should_panic(expected = "CI is set")]
    fn in_ci_a_skip_is_a_failure() {
        record("nginx", "not on PATH", "apt-get install nginx", true, None);
    }
}
