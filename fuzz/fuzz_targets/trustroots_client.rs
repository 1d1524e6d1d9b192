//! The client's trust-roots parser: the body of `GET {prefix}/trustroots/` (either
//! encoding) into files and the CA certificates they hold, as `onlineca
//! trustroots` reads it before any trust decision. Every file name it accepts must
//! be one the client may write (no path, no leading dot).

#![no_main]

use libfuzzer_sys::fuzz_target;
use onlineca_client::certs::CertSummary;
use onlineca_client::trustroots::parse_answer;
use onlineca_core::trustroots::valid_file_name;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = parse_answer(data) else {
        return;
    };
    for f in &answer.files {
        assert!(
            valid_file_name(&f.name),
            "accepted an unsafe file name {:?}",
            f.name
        );
        assert!(!f.name.contains('/') && !f.name.starts_with('.'));
    }
    assert!(!answer.ca_ders.is_empty());
    assert_eq!(answer.ca_ders.len(), answer.cas.len());
    for der in &answer.ca_ders {
        let _ = CertSummary::describe(der);
    }
});
