//! Bearer API keys: who a request is for, and what it may do.
//!
//! A key belongs to a merchant, to the operator, or to both (the same key
//! in `api_keys` and `admin_keys`). Handlers say what they need with an
//! extractor: [`Merchant`] for a merchant's own resources, [`Operator`] for
//! operator actions (DESIGN §6: draining providers, the sandbox's knobs and
//! record hooks, resolving discrepancies, wallet top-ups, re-delivering
//! events), [`Caller`] for what either may read.
//!
//! Which keys are active:
//!
//! | configured | development key `sk_test_default` | operator |
//! |---|---|---|
//! | nothing | merchant `default` and operator | the development key |
//! | admin keys only | merchant `default` only | the admin keys |
//! | merchant keys only | off | nobody (operator actions answer 403) |
//! | both | off | the admin keys |
//!
//! With admin keys but no merchant keys the development key stays on for
//! merchant `default`, so configuring an operator does not also turn off
//! the only merchant a development setup has; it is no longer the operator
//! key, or configuring admin keys would protect nothing. Wherever it is
//! active, `serve` refuses a non-loopback address.
//!
//! A valid key used beyond its role is `403 permission_error`, not `401`:
//! it did authenticate, and the code says which role the action needs
//! (`operator_key_required`, `merchant_key_required`).

use super::error::ApiError;
use super::input::single_header;
use super::AppState;
use crate::config::{ApiKey, Config, KeyDigest, DEVELOPMENT_API_KEY, DEVELOPMENT_MERCHANT};
use crate::domain::MerchantId;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use std::collections::{BTreeSet, HashMap};
use std::future::{ready, Ready};
use std::ops::Deref;

/// The authentication scheme, matched ignoring case (RFC 9110 §11.1).
const BEARER_SCHEME: &str = "bearer";
/// The header keys travel in, as errors name it.
const AUTHORIZATION_HEADER: &str = "Authorization";

/// What a key may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// The merchant whose resources the key reaches, if any.
    pub merchant: Option<MerchantId>,
    /// Whether the key may take operator actions.
    pub operator: bool,
}

/// Maps API keys to what they may do. Keys are held only as SHA-256
/// digests (from configuration on), so a memory dump does not leak them and
/// lookups do not compare secrets.
#[derive(Debug, Clone)]
pub struct Authenticator {
    by_digest: HashMap<KeyDigest, Principal>,
    /// True when no merchant keys were configured and the development key
    /// is active.
    development: bool,
}

impl Authenticator {
    /// The keys of `config`.
    pub fn from_config(config: &Config) -> Self {
        Self::new(&config.api_keys, &config.admin_keys)
    }

    /// Merchant keys and operator keys, with the development key where the
    /// module's table says.
    pub fn new(merchant_keys: &[ApiKey], admin_keys: &[KeyDigest]) -> Self {
        let development = merchant_keys.is_empty();
        let mut by_digest: HashMap<KeyDigest, Principal> = HashMap::new();
        if development {
            by_digest.insert(
                KeyDigest::of(DEVELOPMENT_API_KEY),
                Principal {
                    merchant: Some(MerchantId::new(DEVELOPMENT_MERCHANT)),
                    operator: admin_keys.is_empty(),
                },
            );
        }
        for key in merchant_keys {
            by_digest.entry(key.key).or_default().merchant =
                Some(MerchantId::new(key.merchant.clone()));
        }
        for key in admin_keys {
            by_digest.entry(*key).or_default().operator = true;
        }
        Authenticator {
            by_digest,
            development,
        }
    }

    /// Whether the well-known development key is accepted (never off loopback).
    pub fn is_development(&self) -> bool {
        self.development
    }

    /// The merchants some key belongs to, sorted, for the start-up log.
    pub fn merchants(&self) -> Vec<&str> {
        let names: BTreeSet<&str> = self
            .by_digest
            .values()
            .filter_map(|principal| principal.merchant.as_ref().map(MerchantId::as_str))
            .collect();
        names.into_iter().collect()
    }

    /// How many keys may take operator actions.
    pub fn operator_keys(&self) -> usize {
        self.by_digest.values().filter(|p| p.operator).count()
    }

    /// The principal of an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, ApiError> {
        self.authenticate_key(header)
            .map(|(_, principal)| principal)
    }

    /// The principal of an `Authorization` header value, with the key's
    /// digest (what the rate limit is kept by).
    pub fn authenticate_key(
        &self,
        header: Option<&str>,
    ) -> Result<(KeyDigest, Principal), ApiError> {
        let Some(header) = header else {
            return Err(ApiError::Unauthenticated {
                code: "missing_api_key",
                message: "send your API key as Authorization: Bearer <key>",
            });
        };
        let key = header
            .trim()
            .split_once(|c: char| c.is_ascii_whitespace())
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(BEARER_SCHEME))
            .map(|(_, key)| key.trim())
            .filter(|key| !key.is_empty())
            .ok_or(ApiError::Unauthenticated {
                code: "invalid_authorization",
                message: "the Authorization header must be Bearer <key>",
            })?;
        let digest = KeyDigest::of(key);
        let principal = self
            .by_digest
            .get(&digest)
            .cloned()
            .ok_or(ApiError::Unauthenticated {
                code: "invalid_api_key",
                message: "invalid API key",
            })?;
        Ok((digest, principal))
    }
}

/// The principal of `req`: one `Authorization` header, a known key, under
/// its rate limit (a key over it is answered `429` here, before the
/// handler reads anything).
fn principal(req: &HttpRequest) -> Result<Principal, ApiError> {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return Err(ApiError::Engine(crate::error::EngineError::Internal(
            "app state missing".into(),
        )));
    };
    // A header that is not visible ASCII cannot hold a key: "" is refused
    // as a malformed header below.
    let header = single_header(req, AUTHORIZATION_HEADER)?;
    let (digest, principal) = state
        .auth
        .authenticate_key(header.map(|v| v.to_str().unwrap_or("")))?;
    state.limiter.check(&digest)?;
    Ok(principal)
}

/// Any authenticated caller, merchant or operator (an actix extractor), for
/// what both may read; handlers narrow what they show by [`Principal`].
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(principal(req).map(Caller))
    }
}

/// The authenticated merchant of a request (an actix extractor). An
/// operator key that belongs to no merchant is refused with `403`.
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
        ready(principal(req).and_then(|principal| {
            principal.merchant.map(Merchant).ok_or(ApiError::Forbidden {
                code: "merchant_key_required",
                message: "this endpoint needs a merchant's API key; an operator key reaches no merchant's resources",
            })
        }))
    }
}

/// Proof that a request carries an operator key (an actix extractor): every
/// operator action takes one, so none can forget the check. A merchant key
/// is refused with `403`.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The merchant the key also belongs to, if any (for audit logs).
    pub merchant: Option<MerchantId>,
}

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(principal(req).and_then(|principal| {
            if principal.operator {
                Ok(Operator {
                    merchant: principal.merchant,
                })
            } else {
                Err(ApiError::Forbidden {
                    code: "operator_key_required",
                    message: "this action needs an operator key (PAYMENTS_ADMIN_KEYS)",
                })
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant_of(auth: &Authenticator, header: &str) -> Option<String> {
        auth.authenticate(Some(header))
            .ok()
            .and_then(|p| p.merchant)
            .map(|m| m.as_str().to_string())
    }

    fn is_operator(auth: &Authenticator, header: &str) -> bool {
        auth.authenticate(Some(header)).is_ok_and(|p| p.operator)
    }

    fn acme() -> ApiKey {
        ApiKey::new("acme", "sk_acme_1234").unwrap()
    }

    #[test]
    fn development_key_only_without_configured_merchant_keys() {
        let dev = Authenticator::new(&[], &[]);
        assert!(dev.is_development());
        assert_eq!(
            merchant_of(&dev, "Bearer sk_test_default").as_deref(),
            Some("default")
        );
        assert!(is_operator(&dev, "Bearer sk_test_default"));

        let configured = Authenticator::new(&[acme()], &[]);
        assert!(!configured.is_development());
        assert!(configured
            .authenticate(Some("Bearer sk_test_default"))
            .is_err());
        assert_eq!(
            merchant_of(&configured, "Bearer sk_acme_1234").as_deref(),
            Some("acme")
        );
        assert!(!is_operator(&configured, "Bearer sk_acme_1234"));
        assert_eq!(configured.operator_keys(), 0, "nobody is the operator");
        assert!(configured.authenticate(None).is_err());
        assert!(configured.authenticate(Some("Basic abc")).is_err());
        assert!(configured.authenticate(Some("Bearer ")).is_err());
        assert!(configured.authenticate(Some("Bearersk_acme_1234")).is_err());
    }

    #[test]
    fn admin_keys_without_merchant_keys_keep_the_development_merchant() {
        let ops = KeyDigest::of("sk_ops_12345678");
        let auth = Authenticator::new(&[], &[ops]);
        assert!(auth.is_development(), "still loopback-only");
        assert_eq!(
            merchant_of(&auth, "Bearer sk_test_default").as_deref(),
            Some("default")
        );
        assert!(!is_operator(&auth, "Bearer sk_test_default"));
        assert!(is_operator(&auth, "Bearer sk_ops_12345678"));
        assert_eq!(merchant_of(&auth, "Bearer sk_ops_12345678"), None);
    }

    #[test]
    fn a_key_may_be_both_merchant_and_operator() {
        let auth = Authenticator::new(&[acme()], &[KeyDigest::of("sk_acme_1234")]);
        assert_eq!(
            merchant_of(&auth, "Bearer sk_acme_1234").as_deref(),
            Some("acme")
        );
        assert!(is_operator(&auth, "Bearer sk_acme_1234"));
        assert_eq!(auth.merchants(), ["acme"]);
    }

    #[test]
    fn the_scheme_is_matched_ignoring_case() {
        let auth = Authenticator::new(&[acme()], &[]);
        for header in [
            "bearer sk_acme_1234",
            "BEARER sk_acme_1234",
            "Bearer   sk_acme_1234 ",
            "bEaReR\tsk_acme_1234",
        ] {
            assert_eq!(
                merchant_of(&auth, header).as_deref(),
                Some("acme"),
                "{header:?}"
            );
        }
    }
}
