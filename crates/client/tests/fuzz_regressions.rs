//! Replays the fuzzer's kept inputs for the client's trust-roots parser
//! (`fuzz/regressions/trustroots_client/`: crashes it found and a small minimized
//! corpus) through the same calls as the `trustroots_client` fuzz target, so the
//! default test run covers them without cargo-fuzz.

use onlineca_client::certs::CertSummary;
use onlineca_client::trustroots::parse_answer;
use onlineca_core::trustroots::valid_file_name;

#[test]
fn trustroots_regressions_are_read_or_refused_never_a_panic() {
    let mut read = 0;
    for (path, data) in onlineca_testkit::fuzz_inputs("trustroots_client") {
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
