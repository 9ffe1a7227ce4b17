//! Outcome classification as data.
//!
//! Each adapter declares one [`CodeTable`]: the provider's codes and the
//! class each belongs to. The table, not scattered `match` arms, is the
//! adapter's whole opinion about what a code means, so it can be read,
//! reviewed and tested as one list.

use crate::domain::OutcomeClass;

/// A provider's codes and their classes, with the class of a code not in the
/// table.
#[derive(Debug, Clone, Copy)]
pub struct CodeTable {
    pub entries: &'static [(&'static str, OutcomeClass)],
    /// The class of an unlisted code. For decline codes this is usually
    /// `HardDecline`: never retry what we do not understand.
    pub otherwise: OutcomeClass,
}

impl CodeTable {
    pub fn classify(&self, code: &str) -> OutcomeClass {
        self.entries
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(code))
            .map_or(self.otherwise, |(_, class)| *class)
    }

    /// Each code appears once (checked by adapters' tests).
    pub fn is_unambiguous(&self) -> bool {
        self.entries.iter().enumerate().all(|(i, (code, _))| {
            !self.entries[..i]
                .iter()
                .any(|(other, _)| other.eq_ignore_ascii_case(code))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: CodeTable = CodeTable {
        entries: &[
            ("insufficient_funds", OutcomeClass::SoftDecline),
            ("expired_card", OutcomeClass::HardDecline),
        ],
        otherwise: OutcomeClass::HardDecline,
    };

    #[test]
    fn listed_codes_map_and_unlisted_fall_back() {
        assert_eq!(
            TABLE.classify("insufficient_funds"),
            OutcomeClass::SoftDecline
        );
        assert_eq!(
            TABLE.classify("INSUFFICIENT_FUNDS"),
            OutcomeClass::SoftDecline
        );
        assert_eq!(TABLE.classify("something_new"), OutcomeClass::HardDecline);
        assert!(TABLE.is_unambiguous());
    }
}
