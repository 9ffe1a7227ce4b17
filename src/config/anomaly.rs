//! `[anomaly]`: the anomaly rules' actions and numbers (DESIGN §10).
//!
//! The section and key names are a contract (scripts and the acceptance
//! suite write them). Every rule is `[anomaly.<rule>]` with an `action`
//! (`flag`, `block` or `off`) and the rule's numbers; a rule fires when its
//! count goes *over* its maximum. Beside the rules: how many customers are
//! tracked at most, when an idle customer is forgotten, and whether the
//! windows are per instance or shared by a cluster.

use super::validate::{invalid, ConfigError};
use crate::domain::{Currency, RuleAction, CARD_METHOD_SLOTS, DUPLICATE_RING_ENTRIES, MAX_AMOUNT};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Threshold of `large_amount` for a currency with no entry of its own and
/// no `"*"` entry, in minor units.
pub const DEFAULT_LARGE_AMOUNT_MINOR: i64 = 500_000;
/// The `thresholds` key that stands for every currency not listed.
pub const ANY_CURRENCY: &str = "*";
/// Most customers `max_customers` may ask for: at a few hundred bytes each,
/// ten million is a few GiB, past which the cap no longer protects memory.
pub const MAX_TRACKED_CUSTOMERS: usize = 10_000_000;
/// Longest window of any rule, in seconds (a day).
pub const MAX_WINDOW_SECS: u32 = 86_400;
/// Largest `velocity.max_count`: a velocity bucket counts up to `u16::MAX`.
pub const MAX_VELOCITY_COUNT: u32 = 60_000;

/// The whole `[anomaly]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalySettings {
    /// Most customers tracked at once (all merchants together); past it the
    /// least recently seen customer is forgotten.
    pub max_customers: usize,
    /// A customer with no payment and no outcome for this long is
    /// forgotten. At least the longest window of an enabled rule; it is
    /// also how long a `failed_streak` survives without news.
    pub idle_secs: u32,
    pub scope: AnomalyScope,
    pub velocity: VelocityRule,
    pub large_amount: LargeAmountRule,
    pub failed_streak: FailedStreakRule,
    pub duplicate_amount: DuplicateAmountRule,
    pub card_testing: CardTestingRule,
}

/// Where the counts come from: each instance's own windows, or also the
/// shared store (every instance's payments, at a store read per payment;
/// see `actors::anomaly::gate`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyScope {
    /// Each instance counts the payments it sees.
    #[default]
    Instance,
    /// All instances count together: each payment reads its customer's
    /// counts from the shared store.
    Cluster,
}

/// `[anomaly.velocity]`: too many payments by one customer too fast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VelocityRule {
    pub action: RuleAction,
    pub max_count: u32,
    pub window_secs: u32,
}

/// `[anomaly.large_amount]`: one payment above its currency's threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LargeAmountRule {
    pub action: RuleAction,
    /// Lowercase currency code (or `"*"`) to minor units.
    pub thresholds: BTreeMap<String, i64>,
}

/// `[anomaly.failed_streak]`: a customer whose payments keep failing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailedStreakRule {
    pub action: RuleAction,
    pub max_failures: u32,
}

/// `[anomaly.duplicate_amount]`: the same amount again and again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DuplicateAmountRule {
    pub action: RuleAction,
    pub max_count: u32,
    pub window_secs: u32,
}

/// `[anomaly.card_testing]`: many cards tried by one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CardTestingRule {
    pub action: RuleAction,
    pub max_methods: u32,
    pub window_secs: u32,
}

impl Default for AnomalySettings {
    fn default() -> Self {
        AnomalySettings {
            max_customers: 100_000,
            idle_secs: 3_600,
            scope: AnomalyScope::Instance,
            velocity: VelocityRule::default(),
            large_amount: LargeAmountRule::default(),
            failed_streak: FailedStreakRule::default(),
            duplicate_amount: DuplicateAmountRule::default(),
            card_testing: CardTestingRule::default(),
        }
    }
}

impl Default for VelocityRule {
    fn default() -> Self {
        VelocityRule {
            action: RuleAction::Flag,
            max_count: 5,
            window_secs: 60,
        }
    }
}

impl Default for LargeAmountRule {
    fn default() -> Self {
        LargeAmountRule {
            action: RuleAction::Flag,
            thresholds: BTreeMap::from([("usd".to_string(), DEFAULT_LARGE_AMOUNT_MINOR)]),
        }
    }
}

impl Default for FailedStreakRule {
    fn default() -> Self {
        FailedStreakRule {
            action: RuleAction::Flag,
            max_failures: 3,
        }
    }
}

impl Default for DuplicateAmountRule {
    fn default() -> Self {
        DuplicateAmountRule {
            action: RuleAction::Flag,
            max_count: 3,
            window_secs: 300,
        }
    }
}

impl Default for CardTestingRule {
    fn default() -> Self {
        CardTestingRule {
            action: RuleAction::Flag,
            max_methods: 5,
            window_secs: 3_600,
        }
    }
}

impl LargeAmountRule {
    /// The threshold for `currency`: its own entry, else `"*"`, else
    /// [`DEFAULT_LARGE_AMOUNT_MINOR`].
    pub fn threshold(&self, currency: Currency) -> i64 {
        self.thresholds
            .get(currency.code())
            .or_else(|| self.thresholds.get(ANY_CURRENCY))
            .copied()
            .unwrap_or(DEFAULT_LARGE_AMOUNT_MINOR)
    }
}

impl AnomalySettings {
    /// The longest window of an enabled windowed rule, in seconds (0 when
    /// none is enabled).
    pub fn longest_window_secs(&self) -> u32 {
        [
            (self.velocity.action, self.velocity.window_secs),
            (
                self.duplicate_amount.action,
                self.duplicate_amount.window_secs,
            ),
            (self.card_testing.action, self.card_testing.window_secs),
        ]
        .into_iter()
        .filter(|(action, _)| action.is_on())
        .map(|(_, secs)| secs)
        .max()
        .unwrap_or(0)
    }

    /// How far back a warm-up after a restart must read payments, in
    /// seconds: the longest window, or `idle_secs` while `failed_streak`
    /// is on (a streak is remembered that long).
    pub fn warm_horizon_secs(&self) -> u32 {
        let streak = if self.failed_streak.action.is_on() {
            self.idle_secs
        } else {
            0
        };
        self.longest_window_secs().max(streak)
    }

    /// Every check of the section; each error names the key.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_TRACKED_CUSTOMERS).contains(&self.max_customers) {
            return Err(invalid(
                "anomaly.max_customers",
                format!("must be 1 to {MAX_TRACKED_CUSTOMERS}"),
            ));
        }
        self.validate_windows()?;
        self.validate_counts()?;
        self.validate_thresholds()?;
        let longest = self.longest_window_secs().max(1);
        if self.idle_secs < longest {
            return Err(invalid(
                "anomaly.idle_secs",
                format!("must be at least {longest}, the longest window of an enabled rule"),
            ));
        }
        Ok(())
    }

    fn validate_windows(&self) -> Result<(), ConfigError> {
        let windows = [
            ("anomaly.velocity.window_secs", self.velocity.window_secs),
            (
                "anomaly.duplicate_amount.window_secs",
                self.duplicate_amount.window_secs,
            ),
            (
                "anomaly.card_testing.window_secs",
                self.card_testing.window_secs,
            ),
        ];
        for (name, secs) in windows {
            in_range(name, secs, 1, MAX_WINDOW_SECS)?;
        }
        Ok(())
    }

    fn validate_counts(&self) -> Result<(), ConfigError> {
        in_range(
            "anomaly.velocity.max_count",
            self.velocity.max_count,
            1,
            MAX_VELOCITY_COUNT,
        )?;
        in_range(
            "anomaly.failed_streak.max_failures",
            self.failed_streak.max_failures,
            1,
            u32::MAX - 1,
        )?;
        // The ring must hold max_count + 1 entries to see the count go over.
        in_range(
            "anomaly.duplicate_amount.max_count",
            self.duplicate_amount.max_count,
            1,
            DUPLICATE_RING_ENTRIES as u32 - 1,
        )?;
        in_range(
            "anomaly.card_testing.max_methods",
            self.card_testing.max_methods,
            1,
            CARD_METHOD_SLOTS as u32 - 1,
        )
    }

    fn validate_thresholds(&self) -> Result<(), ConfigError> {
        const NAME: &str = "anomaly.large_amount.thresholds";
        for (currency, minor) in &self.large_amount.thresholds {
            let known = currency == ANY_CURRENCY
                || Currency::parse(currency).is_some_and(|c| c.code() == currency);
            if !known {
                return Err(invalid(
                    NAME,
                    format!("{currency:?} is not a lowercase ISO 4217 code or \"*\""),
                ));
            }
            if !(1..=MAX_AMOUNT).contains(minor) {
                return Err(invalid(
                    NAME,
                    format!("{currency} = {minor}: must be 1 to {MAX_AMOUNT} minor units"),
                ));
            }
        }
        Ok(())
    }
}

fn in_range(name: &str, value: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(name, format!("{value}: must be {min} to {max}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn parse(text: &str) -> Result<AnomalySettings, toml::de::Error> {
        toml::from_str::<Config>(text).map(|config| config.anomaly)
    }

    fn refused(text: &str) -> String {
        let settings = parse(text).expect("parses");
        settings.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_the_contract_numbers() {
        let settings = AnomalySettings::default();
        settings.validate().expect("defaults are valid");
        assert_eq!(settings.velocity.max_count, 5);
        assert_eq!(settings.velocity.window_secs, 60);
        assert_eq!(settings.failed_streak.max_failures, 3);
        assert_eq!(settings.duplicate_amount.max_count, 3);
        assert_eq!(settings.duplicate_amount.window_secs, 300);
        assert_eq!(settings.card_testing.max_methods, 5);
        assert_eq!(settings.card_testing.window_secs, 3_600);
        assert_eq!(settings.scope, AnomalyScope::Instance);
        let usd = Currency::parse("usd").expect("usd");
        let eur = Currency::parse("eur").expect("eur");
        assert_eq!(settings.large_amount.threshold(usd), 500_000);
        assert_eq!(settings.large_amount.threshold(eur), 500_000);
        assert_eq!(settings.warm_horizon_secs(), 3_600);
    }

    #[test]
    fn the_contract_names_parse() {
        let settings = parse(
            r#"
            [anomaly]
            max_customers = 1000
            idle_secs = 7200
            scope = "cluster"
            [anomaly.velocity]
            action = "block"
            max_count = 10
            window_secs = 30
            [anomaly.large_amount]
            action = "off"
            thresholds = { eur = 100000, "*" = 700000 }
            [anomaly.failed_streak]
            max_failures = 4
            [anomaly.duplicate_amount]
            max_count = 2
            window_secs = 120
            [anomaly.card_testing]
            action = "flag"
            max_methods = 3
            window_secs = 600
            "#,
        )
        .expect("parses");
        settings.validate().expect("valid");
        assert_eq!(settings.scope, AnomalyScope::Cluster);
        assert_eq!(settings.velocity.action, RuleAction::Block);
        assert_eq!(settings.large_amount.action, RuleAction::Off);
        assert_eq!(settings.failed_streak.action, RuleAction::Flag);
        let eur = Currency::parse("eur").expect("eur");
        let usd = Currency::parse("usd").expect("usd");
        assert_eq!(settings.large_amount.threshold(eur), 100_000);
        assert_eq!(settings.large_amount.threshold(usd), 700_000, "the * entry");
        assert_eq!(settings.card_testing.max_methods, 3);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                "[anomaly.velocity]\nmax_count = 0",
                "anomaly.velocity.max_count",
            ),
            (
                "[anomaly.velocity]\nwindow_secs = 0",
                "anomaly.velocity.window_secs",
            ),
            (
                "[anomaly.duplicate_amount]\nmax_count = 8",
                "anomaly.duplicate_amount.max_count",
            ),
            (
                "[anomaly.card_testing]\nmax_methods = 16",
                "anomaly.card_testing.max_methods",
            ),
            (
                "[anomaly.card_testing]\nwindow_secs = 90000",
                "anomaly.card_testing.window_secs",
            ),
            (
                "[anomaly.failed_streak]\nmax_failures = 0",
                "anomaly.failed_streak.max_failures",
            ),
            ("[anomaly]\nmax_customers = 0", "anomaly.max_customers"),
            ("[anomaly]\nidle_secs = 60", "anomaly.idle_secs"),
            (
                "[anomaly.large_amount]\nthresholds = { USD = 1 }",
                "anomaly.large_amount.thresholds",
            ),
            (
                "[anomaly.large_amount]\nthresholds = { usd = 0 }",
                "anomaly.large_amount.thresholds",
            ),
        ];
        for (text, key) in cases {
            let error = refused(text);
            assert!(error.contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn an_idle_time_shorter_than_a_disabled_rules_window_is_fine() {
        let settings = parse(
            "[anomaly]\nidle_secs = 300\n[anomaly.card_testing]\naction = \"off\"\n[anomaly.failed_streak]\naction = \"off\"\n",
        )
        .expect("parses");
        settings.validate().expect("card testing is off");
        assert_eq!(settings.warm_horizon_secs(), 300);
    }

    #[test]
    fn unknown_actions_scopes_and_keys_are_refused_by_the_parser() {
        for (text, word) in [
            ("[anomaly.velocity]\naction = \"blok\"", "blok"),
            ("[anomaly]\nscope = \"global\"", "global"),
            ("[anomaly.velocity]\nmax_counts = 3", "max_counts"),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(word), "{error}");
        }
    }
}
