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
        webhook_secret: Some("whsec_secret".into()),
        webhook_tolerance_secs: DEFAULT_WEBHOOK_TOLERANCE_SECS,
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
    assert!(!debug.contains("whsec_secret"), "{debug}");
    for broken in [
        StripeConfig {
            webhook_secret: Some(" ".into()),
            ..config("https://x", "sk_test_1", 1000)
        },
        StripeConfig {
            webhook_tolerance_secs: 0,
            ..config("https://x", "sk_test_1", 1000)
        },
    ] {
        assert!(StripeProvider::new("s", broken).is_err());
    }
}

#[tokio::test]
async fn dot_segments_are_not_looked_up() {
    let provider = StripeProvider::new(
        "s",
        StripeConfig {
            base_url: "http://127.0.0.1:9".into(),
            api_key: "sk_test_1".into(),
            timeout_ms: 1000,
            webhook_secret: None,
            webhook_tolerance_secs: DEFAULT_WEBHOOK_TOLERANCE_SECS,
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

mod webhooks {
    use super::*;
    use crate::providers::signature::signature_header;
    use crate::providers::webhook::timestamp_from_unix_secs;
    use crate::providers::{WebhookError, WebhookHeaders, WebhookKind};

    const SECRET: &str = "whsec_adapter";
    const SIGNED_AT: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_9","object":"event","type":"payment_intent.succeeded","created":1700000000,"data":{"object":{"id":"pi_9","status":"succeeded","amount":700,"currency":"eur"}}}"#;

    fn provider(secret: Option<&str>) -> StripeProvider {
        StripeProvider::new(
            "stripe",
            StripeConfig {
                base_url: "http://127.0.0.1:9".into(),
                api_key: "sk_test_1".into(),
                timeout_ms: 1000,
                webhook_secret: secret.map(str::to_string),
                webhook_tolerance_secs: DEFAULT_WEBHOOK_TOLERANCE_SECS,
            },
        )
        .expect("valid configuration")
    }

    fn at(seconds: i64) -> Timestamp {
        timestamp_from_unix_secs(seconds).expect("representable")
    }

    fn headers(value: String) -> WebhookHeaders {
        [("Stripe-Signature", value)].into_iter().collect()
    }

    #[test]
    fn a_valid_signature_is_accepted() {
        let events = provider(Some(SECRET))
            .verify_webhook(
                &headers(signature_header(SECRET, SIGNED_AT, BODY)),
                BODY,
                at(SIGNED_AT + 10),
            )
            .expect("verified");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, WebhookKind::ChargeSucceeded);
        assert_eq!(events[0].provider_payment_id.as_deref(), Some("pi_9"));
    }

    #[test]
    fn forged_missing_and_mistimed_signatures_are_refused() {
        let stripe = provider(Some(SECRET));
        let valid = headers(signature_header(SECRET, SIGNED_AT, BODY));
        let tampered = String::from_utf8_lossy(BODY).replace("700", "70000");
        let cases: [(&str, WebhookHeaders, &[u8], i64); 5] = [
            (
                "tampered body",
                valid.clone(),
                tampered.as_bytes(),
                SIGNED_AT,
            ),
            (
                "wrong secret",
                headers(signature_header("whsec_other", SIGNED_AT, BODY)),
                BODY,
                SIGNED_AT,
            ),
            ("missing header", WebhookHeaders::new(), BODY, SIGNED_AT),
            ("stale", valid.clone(), BODY, SIGNED_AT + 301),
            ("future", valid, BODY, SIGNED_AT - 301),
        ];
        for (case, headers, body, now) in cases {
            let result = stripe.verify_webhook(&headers, body, at(now));
            let expected_stale = matches!(case, "stale" | "future");
            assert!(
                match &result {
                    Err(WebhookError::Stale { .. }) => expected_stale,
                    Err(WebhookError::BadSignature(_)) => !expected_stale,
                    _ => false,
                },
                "{case}: {result:?}"
            );
        }
    }

    #[test]
    fn a_rotated_secret_with_one_matching_signature_is_accepted() {
        let old = signature_header("whsec_old", SIGNED_AT, BODY);
        let current = signature_header(SECRET, SIGNED_AT, BODY);
        let old_v1 = old.split(",v1=").nth(1).expect("a v1");
        let both = format!("{current},v1={old_v1}");
        let events = provider(Some(SECRET))
            .verify_webhook(&headers(both.clone()), BODY, at(SIGNED_AT))
            .expect("one signature matches");
        assert_eq!(events.len(), 1);
        assert!(matches!(
            provider(Some("whsec_neither")).verify_webhook(&headers(both), BODY, at(SIGNED_AT)),
            Err(WebhookError::BadSignature(_))
        ));
    }

    #[test]
    fn without_a_secret_webhooks_are_unsupported() {
        let result = provider(None).verify_webhook(
            &headers(signature_header(SECRET, SIGNED_AT, BODY)),
            BODY,
            at(SIGNED_AT),
        );
        assert!(
            matches!(result, Err(WebhookError::Unsupported(_))),
            "{result:?}"
        );
    }
}
