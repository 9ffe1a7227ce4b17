//! Unit tests of the Stripe adapter's private helpers; the adapter's
//! behaviour on the wire is tested against a fake Stripe in
//! `tests/integration/stripe.rs`.

use super::client::{parse_bool, search_quoted};
use super::*;

#[test]
fn should_retry_is_a_boolean() {
    assert_eq!(parse_bool("true"), Some(true));
    assert_eq!(parse_bool("False"), Some(false));
    assert_eq!(parse_bool("maybe"), None);
}

#[test]
fn search_values_are_quoted() {
    assert_eq!(search_quoted("pay_1-1"), "'pay_1-1'");
    assert_eq!(search_quoted("a'b\\c"), r"'a\'b\\c'");
}

#[test]
fn configuration_is_validated() {
    let config = |base_url: &str, api_key: &str, timeout_ms| StripeConfig {
        base_url: base_url.into(),
        api_key: api_key.into(),
        timeout_ms,
    };
    assert!(StripeProvider::new("s", config("https://api.stripe.com/", "sk_test_1", 1000)).is_ok());
    assert!(StripeProvider::new("s", config("api.stripe.com", "sk_test_1", 1000)).is_err());
    assert!(StripeProvider::new("s", config("ftp://x", "sk_test_1", 1000)).is_err());
    assert!(StripeProvider::new("s", config("https://x", "", 1000)).is_err());
    assert!(StripeProvider::new("s", config("https://x", "sk\n", 1000)).is_err());
    assert!(StripeProvider::new("s", config("https://x", "sk_test_1", 0)).is_err());
    let provider = StripeProvider::new("s", config("https://x//", "sk_test_1", 1000))
        .expect("valid configuration");
    assert_eq!(provider.base_url, "https://x");
    assert_eq!(provider.mask("key sk_test_1!"), "key [REDACTED]!");
    let debug = format!("{:?}", config("https://x", "sk_test_secret", 1));
    assert!(!debug.contains("sk_test_secret"), "{debug}");
}
