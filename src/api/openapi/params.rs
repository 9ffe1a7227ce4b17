//! Parameters that several routes share, as OpenAPI parameter sets: the
//! page of a list and the `Idempotency-Key` header. Handlers read them
//! from the request themselves ([`super::super::input`]); these structs
//! only describe them and are never built.
#![allow(dead_code)]

use utoipa::IntoParams;

/// A page of a list: at most `limit` items after the item `starting_after`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Items per page, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The id of the last item of the previous page.
    pub starting_after: Option<String>,
}

/// Makes a create safe to retry: the same key with the same request
/// answers the stored result (with `Idempotent-Replayed: true`); with
/// another request, 422.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// 1 to 255 printable ASCII characters.
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255)]
    pub idempotency_key: String,
}
