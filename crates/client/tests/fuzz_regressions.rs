//! Replays the fuzzer's kept inputs for the client's trust-roots parser
//! (`fuzz/regressions/trustroots_client/`: crashes it found and a small minimized
//! corpus) through the same calls as the `trustroots_client` fuzz target, so the
//! default test run covers them without cargo-fuzz.

use std::path::PathBuf;

use onlineca_client::certs::CertSummary;
use onlineca_client::trustroots::parse_answer;
use onlineca_core::trustroots::valid_file_name;

#[test]
fn trustroots_regressions_are_read_or_refused_never_a_panic() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/trustroots_client");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no inputs in {}", dir.display());
    let mut read = 0;
    for path in paths {
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| {
            let Ok(answer) = parse_answer(&data) else {
                return false;
            };
            for f in &answer.files {
                assert!(valid_file_name(&f.name), "unsafe file name {:?}", f.name);
                assert!(!f.name.contains('/') && !f.name.starts_with('.'));
            }
            assert!(!answer.ca_ders.is_empty());
            assert_eq!(answer.ca_ders.len(), answer.cas.len());
            for der in &answer.ca_ders {
                let _ = CertSummary::describe(der);
            }
            true
        });
        match r {
            Ok(ok) => read += ok as usize,
            Err(_) => panic!("{} panicked", path.display()),
        }
    }
    assert!(read > 0, "no regression answer was read");
}
