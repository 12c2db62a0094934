//! One shape for every vendor client's table of documented error codes: the code as the
//! vendor writes it (QingCloud's numeric `ret_code` as text), the [`ErrorClass`] it is
//! handled as, and a note on what the documents say it means. The client classifies
//! through its table, and `cloud::registry::is_known_code` bounds the metric labels with
//! the same tables. The simulators keep their own tables (the vendor's documents as data),
//! which the fidelity tests compare with these.

use crate::error::ErrorClass;

/// One documented code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    /// As the vendor sends it: `Throttling.User`, `DBS.200019`, `1400`.
    pub code: &'static str,
    pub class: ErrorClass,
    /// What the vendor's documents say the code means; empty when the code says it.
    pub note: &'static str,
}

impl ErrorCode {
    pub const fn new(code: &'static str, class: ErrorClass, note: &'static str) -> Self {
        Self { code, class, note }
    }
}

/// A vendor's documented codes, each listed once.
#[derive(Debug, Clone, Copy)]
pub struct ErrorTable {
    rows: &'static [ErrorCode],
}

impl ErrorTable {
    pub const fn new(rows: &'static [ErrorCode]) -> Self {
        Self { rows }
    }

    /// Every row, in the order the table lists them.
    pub fn rows(&self) -> &'static [ErrorCode] {
        self.rows
    }

    /// The row of `code`, if documented.
    pub fn find(&self, code: &str) -> Option<&'static ErrorCode> {
        self.rows.iter().find(|row| row.code == code)
    }

    /// The class of `code`, if documented.
    pub fn class_of(&self, code: &str) -> Option<ErrorClass> {
        self.find(code).map(|row| row.class)
    }

    /// Whether `code` is documented (so it may be a metric label).
    pub fn contains(&self, code: &str) -> bool {
        self.find(code).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: ErrorTable = ErrorTable::new(&[
        ErrorCode::new("Throttling", ErrorClass::Throttled, ""),
        ErrorCode::new("1400", ErrorClass::Busy, "access denied"),
    ]);

    #[test]
    fn a_table_answers_by_the_code_as_text() {
        assert_eq!(TABLE.class_of("1400"), Some(ErrorClass::Busy));
        assert_eq!(
            TABLE.find("1400").map(|row| row.note),
            Some("access denied")
        );
        assert!(TABLE.contains("Throttling"));
        assert!(!TABLE.contains("Throttling.User"));
        assert_eq!(TABLE.class_of("01400"), None);
        assert_eq!(TABLE.rows().len(), 2);
    }
}
