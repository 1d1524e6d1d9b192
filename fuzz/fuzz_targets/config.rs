//! The configuration parser: TOML text to a checked `Config` (types, durations,
//! the subject template, the retriever entries, URLs), then the summary that
//! `onlineca config check` prints. No file is read.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use onlineca_server::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = Config::parse(text, Path::new("/etc/onlineca/onlineca.toml")) {
        let _ = cfg.summary();
        let _ = cfg
            .subject_template()
            .expect("checked subject template parses");
        let _ = onlineca_server::config::redact_url(&cfg.store.url);
    }
});
