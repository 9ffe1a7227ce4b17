//! ISO 4217 currency codes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Active ISO 4217 codes with their minor-unit exponent (digits after the
/// decimal point). The exponent matters to later consumers (fee rounding,
/// per-currency anomaly thresholds); the engine itself only ever handles
/// integer minor units.
const ISO_4217: &[(&str, u8)] = &[
    ("aed", 2),
    ("afn", 2),
    ("all", 2),
    ("amd", 2),
    ("ang", 2),
    ("aoa", 2),
    ("ars", 2),
    ("aud", 2),
    ("awg", 2),
    ("azn", 2),
    ("bam", 2),
    ("bbd", 2),
    ("bdt", 2),
    ("bgn", 2),
    ("bhd", 3),
    ("bif", 0),
    ("bmd", 2),
    ("bnd", 2),
    ("bob", 2),
    ("brl", 2),
    ("bsd", 2),
    ("btn", 2),
    ("bwp", 2),
    ("byn", 2),
    ("bzd", 2),
    ("cad", 2),
    ("cdf", 2),
    ("chf", 2),
    ("clp", 0),
    ("cny", 2),
    ("cop", 2),
    ("crc", 2),
    ("cup", 2),
    ("cve", 2),
    ("czk", 2),
    ("djf", 0),
    ("dkk", 2),
    ("dop", 2),
    ("dzd", 2),
    ("egp", 2),
    ("ern", 2),
    ("etb", 2),
    ("eur", 2),
    ("fjd", 2),
    ("fkp", 2),
    ("gbp", 2),
    ("gel", 2),
    ("ghs", 2),
    ("gip", 2),
    ("gmd", 2),
    ("gnf", 0),
    ("gtq", 2),
    ("gyd", 2),
    ("hkd", 2),
    ("hnl", 2),
    ("htg", 2),
    ("huf", 2),
    ("idr", 2),
    ("ils", 2),
    ("inr", 2),
    ("iqd", 3),
    ("irr", 2),
    ("isk", 0),
    ("jmd", 2),
    ("jod", 3),
    ("jpy", 0),
    ("kes", 2),
    ("kgs", 2),
    ("khr", 2),
    ("kmf", 0),
    ("kpw", 2),
    ("krw", 0),
    ("kwd", 3),
    ("kyd", 2),
    ("kzt", 2),
    ("lak", 2),
    ("lbp", 2),
    ("lkr", 2),
    ("lrd", 2),
    ("lsl", 2),
    ("lyd", 3),
    ("mad", 2),
    ("mdl", 2),
    ("mga", 2),
    ("mkd", 2),
    ("mmk", 2),
    ("mnt", 2),
    ("mop", 2),
    ("mru", 2),
    ("mur", 2),
    ("mvr", 2),
    ("mwk", 2),
    ("mxn", 2),
    ("myr", 2),
    ("mzn", 2),
    ("nad", 2),
    ("ngn", 2),
    ("nio", 2),
    ("nok", 2),
    ("npr", 2),
    ("nzd", 2),
    ("omr", 3),
    ("pab", 2),
    ("pen", 2),
    ("pgk", 2),
    ("php", 2),
    ("pkr", 2),
    ("pln", 2),
    ("pyg", 0),
    ("qar", 2),
    ("ron", 2),
    ("rsd", 2),
    ("rub", 2),
    ("rwf", 0),
    ("sar", 2),
    ("sbd", 2),
    ("scr", 2),
    ("sdg", 2),
    ("sek", 2),
    ("sgd", 2),
    ("shp", 2),
    ("sle", 2),
    ("sos", 2),
    ("srd", 2),
    ("ssp", 2),
    ("stn", 2),
    ("svc", 2),
    ("syp", 2),
    ("szl", 2),
    ("thb", 2),
    ("tjs", 2),
    ("tmt", 2),
    ("tnd", 3),
    ("top", 2),
    ("try", 2),
    ("ttd", 2),
    ("twd", 2),
    ("tzs", 2),
    ("uah", 2),
    ("ugx", 0),
    ("usd", 2),
    ("uyu", 2),
    ("uzs", 2),
    ("ves", 2),
    ("vnd", 0),
    ("vuv", 0),
    ("wst", 2),
    ("xaf", 0),
    ("xcd", 2),
    ("xof", 0),
    ("xpf", 0),
    ("yer", 2),
    ("zar", 2),
    ("zmw", 2),
    ("zwg", 2),
];

/// An ISO 4217 currency, accepted in any case and always shown lowercase.
///
/// Exists so that an unknown code is refused at the edge (a 400) instead of
/// reaching a provider, and so that "USD" and "usd" can never become two
/// ledger currencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency(&'static str);

impl Currency {
    /// The currency for `code` in any letter case, or `None` if unknown.
    pub fn parse(code: &str) -> Option<Currency> {
        if code.len() != 3 {
            return None;
        }
        let lower = code.to_ascii_lowercase();
        ISO_4217
            .iter()
            .find(|(known, _)| *known == lower)
            .map(|(known, _)| Currency(known))
    }

    /// The lowercase three-letter code.
    pub fn code(&self) -> &'static str {
        self.0
    }

    /// Digits after the decimal point in this currency's major unit.
    pub fn minor_unit_digits(&self) -> u8 {
        ISO_4217
            .iter()
            .find(|(known, _)| *known == self.0)
            .map(|(_, digits)| *digits)
            .unwrap_or(2)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Currency::parse(&text).ok_or_else(|| serde::de::Error::custom("unknown currency"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_case_in_lowercase_out() {
        assert_eq!(Currency::parse("USD").map(|c| c.code()), Some("usd"));
        assert_eq!(Currency::parse("eUr").map(|c| c.code()), Some("eur"));
        assert_eq!(
            Currency::parse("jpy").map(|c| c.minor_unit_digits()),
            Some(0)
        );
        assert_eq!(Currency::parse("xyz"), None);
        assert_eq!(Currency::parse("usdd"), None);
        assert_eq!(Currency::parse(""), None);
    }

    #[test]
    fn table_is_sorted_lowercase_and_unique() {
        for pair in ISO_4217.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        assert!(ISO_4217
            .iter()
            .all(|(code, _)| code.len() == 3 && code.chars().all(|c| c.is_ascii_lowercase())));
    }
}
