//! Bearer API keys, one merchant each.

use super::error::ApiError;
use super::AppState;
use crate::config::{ApiKey, DEVELOPMENT_API_KEY, DEVELOPMENT_MERCHANT};
use crate::domain::MerchantId;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::{ready, Ready};
use std::ops::Deref;

/// Maps API keys to merchants. Keys are held only as SHA-256 digests, so a
/// memory dump does not leak them and lookups do not compare secrets.
#[derive(Debug, Clone)]
pub struct Authenticator {
    by_digest: HashMap<String, MerchantId>,
    /// True when no keys were configured and the development key is active.
    development: bool,
}

fn digest(key: &str) -> String {
    format!("{:x}", Sha256::digest(key.as_bytes()))
}

impl Authenticator {
    pub fn new(keys: &[ApiKey]) -> Self {
        if keys.is_empty() {
            let mut by_digest = HashMap::new();
            by_digest.insert(
                digest(DEVELOPMENT_API_KEY),
                MerchantId::new(DEVELOPMENT_MERCHANT),
            );
            return Authenticator {
                by_digest,
                development: true,
            };
        }
        let by_digest = keys
            .iter()
            .map(|k| (digest(&k.key), MerchantId::new(k.merchant.clone())))
            .collect();
        Authenticator {
            by_digest,
            development: false,
        }
    }

    /// Whether the well-known development key is accepted (never off loopback).
    pub fn is_development(&self) -> bool {
        self.development
    }

    pub fn authenticate(&self, header: Option<&str>) -> Result<MerchantId, ApiError> {
        let Some(header) = header else {
            return Err(ApiError::Unauthenticated {
                code: "missing_api_key",
                message: "send your API key as Authorization: Bearer <key>",
            });
        };
        let key = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or(ApiError::Unauthenticated {
                code: "invalid_authorization",
                message: "the Authorization header must be Bearer <key>",
            })?;
        self.by_digest
            .get(&digest(key))
            .cloned()
            .ok_or(ApiError::Unauthenticated {
                code: "invalid_api_key",
                message: "invalid API key",
            })
    }
}

/// The authenticated merchant of a request (an actix extractor).
#[derive(Debug, Clone)]
pub struct Merchant(pub MerchantId);

impl Deref for Merchant {
    type Target = MerchantId;
    fn deref(&self) -> &MerchantId {
        &self.0
    }
}

impl FromRequest for Merchant {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return ready(Err(ApiError::Engine(crate::error::EngineError::Internal(
                "app state missing".into(),
            ))));
        };
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .map(|value| value.to_str().unwrap_or(""));
        ready(state.auth.authenticate(header).map(Merchant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_key_only_without_configured_keys() {
        let dev = Authenticator::new(&[]);
        assert!(dev.is_development());
        assert_eq!(
            dev.authenticate(Some("Bearer sk_test_default"))
                .unwrap()
                .as_str(),
            "default"
        );
        let configured = Authenticator::new(&[ApiKey {
            merchant: "acme".into(),
            key: "sk_acme_1234".into(),
        }]);
        assert!(!configured.is_development());
        assert!(configured
            .authenticate(Some("Bearer sk_test_default"))
            .is_err());
        assert_eq!(
            configured
                .authenticate(Some("Bearer sk_acme_1234"))
                .unwrap()
                .as_str(),
            "acme"
        );
        assert!(configured.authenticate(None).is_err());
        assert!(configured.authenticate(Some("Basic abc")).is_err());
        assert!(configured.authenticate(Some("Bearer ")).is_err());
    }
}
