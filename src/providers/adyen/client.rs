//! Adyen's HTTP client: building requests, sending them, reading answers,
//! and recording them with the API key masked. What an answer means is
//! decided in `classify`, never here.

use super::{idempotency_key, AdyenProvider, MASK};
use crate::providers::transport;
use reqwest::header::CONTENT_TYPE;
use reqwest::Url;
use std::time::Duration;

/// The most of an answer's body the adapter reads; a longer one is treated
/// as unreadable. Adyen's answers to the calls made here are a few KiB.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most of a body kept in `raw` when it is not JSON.
const MAX_RAW_TEXT_CHARS: usize = 4096;

/// What came back from one call, before it is classified.
pub(super) enum Answer {
    /// An HTTP answer; `body` is `Err` when it could not be read whole.
    Http {
        status: u16,
        retry_after_ms: Option<u64>,
        body: Result<Vec<u8>, String>,
    },
    /// No HTTP answer.
    Transport(reqwest::Error),
}

/// The HTTP client for one merchant account.
pub(super) fn http_client(timeout_ms: u64) -> reqwest::Result<reqwest::Client> {
    let timeout = Duration::from_millis(timeout_ms);
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // A payment API never redirects; following one would resend a
        // charge somewhere else.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

impl AdyenProvider {
    /// `{base_url}/{segments...}`, each segment percent-encoded.
    pub(super) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `text` with the API key masked.
    pub(super) fn mask(&self, text: &str) -> String {
        transport::mask(text, &self.config.api_key, MASK).into_owned()
    }

    /// Posts `body` as JSON under the Adyen form of `engine_key`.
    pub(super) async fn post(&self, url: Url, engine_key: &str, body: Vec<u8>) -> Answer {
        let sent = self
            .client
            .post(url)
            .header("X-API-Key", &self.config.api_key)
            .header("Idempotency-Key", idempotency_key(engine_key).as_ref())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Err(error) => Answer::Transport(error),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after_ms = transport::retry_after_ms(response.headers());
                let body = transport::read_body(response, MAX_BODY_BYTES)
                    .await
                    .map_err(|error| error.to_string());
                Answer::Http {
                    status,
                    retry_after_ms,
                    body,
                }
            }
        }
    }

    /// The raw record of an HTTP answer: its status and body (JSON kept as
    /// JSON), API key masked.
    ///
    /// Only the key is masked: none of the fields Adyen documents for these
    /// answers (`additionalData` included) is a credential. Card data comes
    /// back only as summaries (last four digits, BIN), and the stored-card
    /// reference is useless without the API key.
    pub(super) fn raw(&self, status: u16, body: &Result<Vec<u8>, String>) -> String {
        let body = match body {
            Ok(bytes) => {
                let text = self.mask(&String::from_utf8_lossy(bytes));
                serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|_| {
                    serde_json::Value::String(text.chars().take(MAX_RAW_TEXT_CHARS).collect())
                })
            }
            Err(error) => serde_json::json!({ "unreadable": self.mask(error) }),
        };
        serde_json::json!({ "http_status": status, "body": body }).to_string()
    }
}
