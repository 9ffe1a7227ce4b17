//! Provider fees: what a provider keeps of a charge, in minor units.
//!
//! Routing compares fees (the `cost` strategy) and the ledger books them
//! (`provider_fees:{provider}`), so the rule lives once, here, beside the
//! money type. Rounding rule: the percentage part is rounded half up to the
//! minor unit (`amount * bps / 10_000`, +0.5), then the fixed part is added;
//! all arithmetic is checked, and an overflow is `None`, never a wrap.

use serde::{Deserialize, Serialize};

/// A fee: fixed part plus a percentage of the amount, in minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fee {
    pub fixed: i64,
    /// Hundredths of a percent (290 = 2.90 %).
    pub percent_bps: i64,
}

impl Fee {
    /// The fee on `amount` minor units, rounded half up; `None` on overflow.
    pub fn on(&self, amount: i64) -> Option<i64> {
        let variable = amount.checked_mul(self.percent_bps)?.checked_add(5_000)? / 10_000;
        self.fixed.checked_add(variable)
    }
}

#[cfg(test)]
mod tests {
    use super::Fee;

    #[test]
    fn fees_round_half_up_and_never_overflow_silently() {
        let card = Fee {
            fixed: 30,
            percent_bps: 290,
        };
        assert_eq!(card.on(1_000), Some(59));
        assert_eq!(card.on(1), Some(30));
        assert_eq!(
            Fee {
                fixed: 0,
                percent_bps: 150
            }
            .on(100),
            Some(2)
        );
        assert_eq!(card.on(i64::MAX), None);
    }
}
