//! Unit tests of the Stripe adapter's private helpers; the adapter's
//! behaviour on the wire is tested against a fake Stripe in
//! `tests/integration/stripe.rs`.

use super::client::{parse_bool, path_segment, search_quoted};
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
fn ids_are_one_path_segment() {
    assert_eq!(
        path_segment("pi_3MtwBwLkdIwHu7ix28a3tqPa"),
        "pi_3MtwBwLkdIwHu7ix28a3tqPa"
    );
    assert_eq!(path_segment("a/../b?c=d#e f"), "a%2F..%2Fb%3Fc%3Dd%23e%20f");
    assert_eq!(path_segment("ü"), "%C3%BC");
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

#[tokio::test]
async fn dot_segments_are_not_looked_up() {
    let provider = StripeProvider::new(
        "s",
        StripeConfig {
            base_url: "http://127.0.0.1:9".into(),
            api_key: "sk_test_1".into(),
            timeout_ms: 1000,
        },
    )
    .expect("valid configuration");
    for id in ["", ".", ".."] {
        let result = provider.lookup_reference(id).await;
        assert!(
            matches!(result, Err(ProviderError::Refused(_))),
            "{id:?}: {result:?}"
        );
    }
}
