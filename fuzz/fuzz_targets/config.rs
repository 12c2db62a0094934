//! Config parsing and validation from text (`config::load_str`, the path `load` takes after
//! reading the file), and the human durations it uses. Input: the config text.
//! Invariants: errors point inside the text; a parsed duration formats and reparses to itself.
#![no_main]

use certkeeper::config::{format_duration, load_str, parse_duration, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    match load_str("fuzz.toml", text) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                let _ = warning.to_string();
            }
        }
        Err(error) => {
            let _ = error.to_string();
            if let ConfigError::Invalid(_) = &error {
                assert!(
                    !error.issues().is_empty(),
                    "an invalid config names an issue"
                );
            }
            for issue in error.issues() {
                let _ = issue.to_string();
                if let Some(position) = issue.position {
                    assert!(position.line >= 1 && position.line <= lines, "{position:?}");
                    assert!(position.column >= 1, "{position:?}");
                }
            }
        }
    }
    if text.len() <= 64 {
        if let Ok(duration) = parse_duration(text) {
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
    }
});
