//! Checks on a request that the types cannot express (lengths, counts,
//! printable characters). They run before anything is written, so a bad
//! request changes nothing, whether it came over HTTP or from an embedder.

use crate::error::EngineError;
use crate::messages::payment::PaymentRequest;
use crate::routing::ProviderDirectory;
use sha2::{Digest, Sha256};

/// Longest idempotency key (DESIGN §5).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
/// Longest id-like string field (`customer_id`, `order_id`, `payment_method`).
pub const MAX_ID_FIELD_CHARS: usize = 255;
pub const MAX_DESCRIPTION_CHARS: usize = 1_000;
pub const MAX_METADATA_KEYS: usize = 50;
pub const MAX_METADATA_KEY_CHARS: usize = 40;
pub const MAX_METADATA_VALUE_CHARS: usize = 500;

/// The name the idempotency key is reported under in errors.
pub const IDEMPOTENCY_KEY_PARAM: &str = "Idempotency-Key";

pub fn idempotency_key(key: &str) -> Result<(), EngineError> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(EngineError::invalid(
            IDEMPOTENCY_KEY_PARAM,
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
        ));
    }
    if !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(EngineError::invalid(
            IDEMPOTENCY_KEY_PARAM,
            "must be printable ASCII",
        ));
    }
    Ok(())
}

fn id_field(param: &str, value: &str) -> Result<(), EngineError> {
    if value.trim().is_empty() {
        return Err(EngineError::invalid(
            param,
            format!("{param} must not be empty"),
        ));
    }
    if value.chars().count() > MAX_ID_FIELD_CHARS {
        return Err(EngineError::invalid(
            param,
            format!("{param} must be at most {MAX_ID_FIELD_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(EngineError::invalid(
            param,
            format!("{param} must not contain control characters"),
        ));
    }
    Ok(())
}

/// Free text may hold any character but NUL, which PostgreSQL's text type
/// cannot store (and no legitimate description needs).
fn no_nul(param: &str, value: &str) -> Result<(), EngineError> {
    if value.contains('\0') {
        return Err(EngineError::invalid(
            param,
            format!("{param} must not contain NUL characters"),
        ));
    }
    Ok(())
}

pub fn payment_request<A: Clone>(
    request: &PaymentRequest,
    providers: &ProviderDirectory<A>,
) -> Result<(), EngineError> {
    id_field("customer_id", &request.customer_id)?;
    id_field("order_id", &request.order_id)?;
    id_field("payment_method", &request.payment_method)?;
    if let Some(description) = &request.description {
        no_nul("description", description)?;
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(EngineError::invalid(
                "description",
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
    }
    if request.metadata.len() > MAX_METADATA_KEYS {
        return Err(EngineError::invalid(
            "metadata",
            format!("at most {MAX_METADATA_KEYS} keys"),
        ));
    }
    for (key, value) in &request.metadata {
        no_nul("metadata", key)?;
        no_nul(&format!("metadata[{key}]"), value)?;
        if key.is_empty() || key.chars().count() > MAX_METADATA_KEY_CHARS {
            return Err(EngineError::invalid(
                "metadata",
                format!("keys must be 1 to {MAX_METADATA_KEY_CHARS} characters"),
            ));
        }
        if value.chars().count() > MAX_METADATA_VALUE_CHARS {
            return Err(EngineError::invalid(
                &format!("metadata[{key}]"),
                format!("values must be at most {MAX_METADATA_VALUE_CHARS} characters"),
            ));
        }
    }
    if let Some(pinned) = &request.provider {
        let Some(entry) = providers.get(pinned) else {
            return Err(EngineError::invalid(
                "provider",
                format!("no provider named {pinned:?}"),
            ));
        };
        if !entry.supports(request.currency) {
            return Err(EngineError::invalid(
                "provider",
                format!("{pinned} does not support {}", request.currency),
            ));
        }
        if providers
            .supporting(request.currency, Some(pinned), &request.payment_method)
            .is_empty()
        {
            return Err(EngineError::invalid(
                "provider",
                format!(
                    "{pinned} does not take payment method {:?}",
                    request.payment_method
                ),
            ));
        }
    } else if providers
        .supporting(request.currency, None, &request.payment_method)
        .is_empty()
    {
        if request.payment_method == crate::domain::WALLET_PAYMENT_METHOD {
            return Err(EngineError::invalid(
                "payment_method",
                format!("no wallet provider takes {}", request.currency),
            ));
        }
        return Err(EngineError::invalid(
            "currency",
            format!("no provider supports {}", request.currency),
        ));
    }
    Ok(())
}

/// SHA-256 of the canonical form of the request. Semantically equal requests
/// (field order, whitespace, currency case) share a fingerprint.
pub fn fingerprint(request: &PaymentRequest) -> String {
    let canonical = serde_json::to_vec(request).unwrap_or_default();
    format!("{:x}", Sha256::digest(&canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_refused_in_free_text() {
        use crate::domain::{Amount, Currency};
        let request = PaymentRequest {
            amount: Amount::new(100).unwrap(),
            currency: Currency::parse("usd").unwrap(),
            customer_id: "c".into(),
            order_id: "o".into(),
            payment_method: "pm_card_visa".into(),
            description: Some("a\0b".into()),
            metadata: Default::default(),
            provider: None,
        };
        let directory = ProviderDirectory::<()>::default();
        match payment_request(&request, &directory) {
            Err(EngineError::InvalidParam { param, .. }) => assert_eq!(param, "description"),
            other => panic!("expected a 400 on description, got {other:?}"),
        }
        let with_metadata = PaymentRequest {
            description: None,
            metadata: [("k".to_string(), "v\0".to_string())].into(),
            ..request
        };
        match payment_request(&with_metadata, &directory) {
            Err(EngineError::InvalidParam { param, .. }) => assert_eq!(param, "metadata[k]"),
            other => panic!("expected a 400 on metadata[k], got {other:?}"),
        }
    }

    #[test]
    fn idempotency_key_bounds() {
        assert!(idempotency_key("k").is_ok());
        assert!(idempotency_key(&"k".repeat(255)).is_ok());
        assert!(idempotency_key("").is_err());
        assert!(idempotency_key(&"k".repeat(256)).is_err());
        assert!(idempotency_key("tab\there").is_err());
        assert!(idempotency_key("ünïcode").is_err());
    }
}
