//! Amounts of money in a currency's minor unit.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest amount the engine accepts, in minor units (DESIGN §3).
///
/// It is far below `i64::MAX`, so sums of a few amounts (refund totals, fees,
/// ledger balances over one payment) cannot overflow before the checked
/// arithmetic notices.
pub const MAX_AMOUNT: i64 = 99_999_999_999;

/// A positive amount of money in minor units (cents, yen, fils...).
///
/// Exists so that a raw `i64` from the outside world can never reach a
/// provider or the ledger without having been range-checked, and so that
/// arithmetic on money is always checked (`checked_add`, `checked_sub`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Amount(i64);

/// Why a number is not a valid [`Amount`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount must be greater than 0")]
    NotPositive,
    #[error("amount must be at most {MAX_AMOUNT}")]
    TooLarge,
    #[error("arithmetic on amounts overflowed")]
    Overflow,
}

impl Amount {
    /// An amount between 1 and [`MAX_AMOUNT`] inclusive.
    pub fn new(minor_units: i64) -> Result<Self, AmountError> {
        if minor_units <= 0 {
            return Err(AmountError::NotPositive);
        }
        if minor_units > MAX_AMOUNT {
            return Err(AmountError::TooLarge);
        }
        Ok(Amount(minor_units))
    }

    pub fn minor_units(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Amount) -> Result<Amount, AmountError> {
        let sum = self.0.checked_add(other.0).ok_or(AmountError::Overflow)?;
        Amount::new(sum)
    }

    /// `self - other`, or `None` when the result would not be positive.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0
            .checked_sub(other.0)
            .and_then(|rest| Amount::new(rest).ok())
    }
}

impl TryFrom<i64> for Amount {
    type Error = AmountError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Amount::new(value)
    }
}

impl From<Amount> for i64 {
    fn from(value: Amount) -> i64 {
        value.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_enforced() {
        assert_eq!(Amount::new(0), Err(AmountError::NotPositive));
        assert_eq!(Amount::new(-5), Err(AmountError::NotPositive));
        assert_eq!(Amount::new(MAX_AMOUNT + 1), Err(AmountError::TooLarge));
        assert_eq!(Amount::new(i64::MAX), Err(AmountError::TooLarge));
        assert_eq!(Amount::new(1).map(Amount::minor_units), Ok(1));
        assert_eq!(
            Amount::new(MAX_AMOUNT).map(Amount::minor_units),
            Ok(MAX_AMOUNT)
        );
    }

    #[test]
    fn arithmetic_is_checked() {
        let max = Amount::new(MAX_AMOUNT).unwrap();
        let one = Amount::new(1).unwrap();
        assert_eq!(max.checked_add(one), Err(AmountError::TooLarge));
        assert_eq!(one.checked_sub(one), None);
        assert_eq!(
            max.checked_sub(one).map(Amount::minor_units),
            Some(MAX_AMOUNT - 1)
        );
    }

    #[test]
    fn deserialization_validates() {
        assert!(serde_json::from_str::<Amount>("0").is_err());
        assert!(serde_json::from_str::<Amount>("100000000000").is_err());
        assert_eq!(
            serde_json::from_str::<Amount>("250").unwrap().minor_units(),
            250
        );
    }
}
