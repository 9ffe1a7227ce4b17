//! Unit tests of the Adyen adapter's private helpers; its behaviour on the
//! wire is tested against a fake Adyen in `tests/integration/adyen.rs`.

use super::*;

#[test]
fn short_keys_are_sent_as_they_are() {
    let key = "pay_0190a5b2c3d4e5f60718293a4b5c6d7e-1";
    assert_eq!(idempotency_key(key), key);
    let exactly_64 = "k".repeat(64);
    assert_eq!(idempotency_key(&exactly_64), exactly_64.as_str());
}

#[test]
fn long_keys_are_hashed_to_64_characters() {
    let long = format!("pay_{}-1", "a".repeat(80));
    let derived = idempotency_key(&long);
    assert_eq!(derived.len(), MAX_IDEMPOTENCY_KEY_CHARS);
    assert!(derived
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(derived, idempotency_key(&long), "deterministic");
    assert_ne!(derived, idempotency_key(&format!("{long}x")));
    // SHA-256 of "a" * 65, independently known.
    assert_eq!(
        idempotency_key(&"a".repeat(65)),
        "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"
    );
    // Keys Adyen would refuse as header values are hashed too.
    assert_eq!(idempotency_key("key with spaces").len(), 64);
}

#[test]
fn configuration_is_checked() {
    let config = AdyenConfig {
        base_url: "https://checkout-test.adyen.com/v71".into(),
        api_key: "AQE_secret".into(),
        merchant_account: "TestMerchant".into(),
        timeout_ms: 1000,
        hmac_key: Some("44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056".into()),
    };
    let provider = AdyenProvider::new("adyen", config.clone()).expect("valid");
    assert_eq!(
        provider.url(&["payments"]).as_str(),
        "https://checkout-test.adyen.com/v71/payments"
    );
    assert_eq!(
        provider.url(&["payments", "AB/C", "refunds"]).as_str(),
        "https://checkout-test.adyen.com/v71/payments/AB%2FC/refunds"
    );
    assert!(!format!("{config:?}").contains("AQE_secret"));
    assert!(!format!("{config:?}").contains("44782DEF"));
    for broken in [
        AdyenConfig {
            base_url: "not a url".into(),
            ..config.clone()
        },
        AdyenConfig {
            base_url: "ftp://example.com".into(),
            ..config.clone()
        },
        AdyenConfig {
            api_key: " ".into(),
            ..config.clone()
        },
        AdyenConfig {
            merchant_account: String::new(),
            ..config.clone()
        },
        AdyenConfig {
            timeout_ms: 0,
            ..config.clone()
        },
        AdyenConfig {
            hmac_key: Some("not hex".into()),
            ..config.clone()
        },
        AdyenConfig {
            hmac_key: Some(String::new()),
            ..config.clone()
        },
    ] {
        assert!(matches!(
            AdyenProvider::new("adyen", broken),
            Err(ProviderError::Refused(_))
        ));
    }
}
