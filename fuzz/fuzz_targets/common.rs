//! Input layouts shared by the byte-oriented targets, kept trivial so that seeds can be
//! written by hand or by `scripts/fuzz-seeds`: see `docs/fuzzing.md`.

// Each target uses only the layouts it needs.
#![allow(dead_code)]

/// Splits `data` at its first NUL byte: `(before, after)`; without a NUL, `(data, [])`.
pub fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|byte| *byte == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// A reply as `status (2 bytes, big-endian) | header lines | NUL | body`. Header lines are
/// the values of the target's headers in a fixed order, one per line (an empty line is an
/// absent header). Without a NUL the whole rest is the body and there are no headers.
pub struct Reply<'a> {
    pub status: u16,
    pub headers: Vec<Option<String>>,
    pub body: &'a [u8],
}

impl<'a> Reply<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        if data.len() < 2 {
            return None;
        }
        let status = u16::from_be_bytes([data[0], data[1]]);
        let rest = &data[2..];
        let (headers, body) = match rest.iter().position(|byte| *byte == 0) {
            Some(at) => (
                String::from_utf8_lossy(&rest[..at])
                    .split('\n')
                    .map(|line| (!line.is_empty()).then(|| line.to_owned()))
                    .collect(),
                &rest[at + 1..],
            ),
            None => (Vec::new(), rest),
        };
        Some(Self {
            status,
            headers,
            body,
        })
    }

    /// The `index`th header value, if given.
    pub fn header(&self, index: usize) -> Option<String> {
        self.headers.get(index).cloned().flatten()
    }
}

/// Fields of a structured input: `field NUL field NUL ...`, each read as lossy UTF-8. A list
/// field holds items separated by `\x01`, each `name \x02 value` (no `\x02`: empty value).
/// Text keeps the seeds readable (the signature vectors are written this way) while any byte
/// string is still a valid input.
pub struct Fields(Vec<String>);

impl Fields {
    pub fn parse(data: &[u8]) -> Self {
        Self(
            data.split(|byte| *byte == 0)
                .map(|field| String::from_utf8_lossy(field).into_owned())
                .collect(),
        )
    }

    /// Field `index` as text; empty when absent.
    pub fn text(&self, index: usize) -> String {
        self.0.get(index).cloned().unwrap_or_default()
    }

    /// Field `index` as `(name, value)` pairs.
    pub fn pairs(&self, index: usize) -> Vec<(String, String)> {
        let field = self.text(index);
        if field.is_empty() {
            return Vec::new();
        }
        field
            .split('\x01')
            .map(|item| match item.split_once('\x02') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => (item.to_owned(), String::new()),
            })
            .collect()
    }

    /// Field `index` as a number: decimal if it is one, else folded from its bytes.
    pub fn number(&self, index: usize) -> u64 {
        let field = self.text(index);
        field.trim().parse().unwrap_or_else(|_| {
            field.bytes().fold(0u64, |acc, byte| {
                acc.wrapping_mul(131).wrapping_add(u64::from(byte))
            })
        })
    }
}
