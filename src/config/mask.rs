//! Credentials out of messages: every URL in a text, its password masked.
//!
//! Database URLs carry passwords (`postgres://user:secret@host/db`, or
//! `?password=secret`), and they end up in error messages (a refused
//! configuration, a store that cannot open) and log lines (the engine
//! names its database at start). This lives in `config`, below both the
//! configuration's validation and the engine's boot, so both mask the same
//! way; the binary also passes every message and log line through it.
//!
//! It errs towards masking too much: a URL is found by its `://` whatever
//! its scheme (a mistyped `postgress://` is masked too), everything before
//! the last `@` of the URL is taken as credentials, and every query
//! parameter whose name looks like a credential loses its value.

/// What replaces a credential.
const MASK: &str = "***";
/// Query parameters whose value is masked: those whose name contains one
/// of these, ignoring case (`password`, `sslpassword`, `api_key`...).
const SECRET_PARAM_MARKERS: &[&str] = &["pass", "pwd", "secret", "token", "key"];

/// `text` with the credentials of every URL in it replaced by `***`.
pub fn mask_urls(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(separator) = rest.find("://") {
        let start = scheme_start(&rest[..separator]);
        let end = separator + url_len(&rest[separator..]);
        masked.push_str(&rest[..start]);
        masked.push_str(&mask_url(&rest[start..end]));
        rest = &rest[end..];
    }
    masked.push_str(rest);
    masked
}

/// Where the scheme ending `before` starts.
fn scheme_start(before: &str) -> usize {
    before
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .map_or(0, |(at, c)| at + c.len_utf8())
}

/// Bytes of the URL at the start of `from` (which starts at its `://`): up
/// to whitespace or a character that delimits a URL in prose or JSON.
fn url_len(from: &str) -> usize {
    from.char_indices()
        .find(|(_, c)| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
        .map_or(from.len(), |(at, _)| at)
}

/// One URL, masked: query credentials first (the user part may hide a
/// `?`), then everything before its last `@`.
fn mask_url(url: &str) -> String {
    let body_at = url.find("://").map_or(0, |at| at + "://".len());
    let (scheme, body) = url.split_at(body_at);
    let body = mask_query(body);
    match body.rfind('@') {
        Some(at) => format!("{scheme}{MASK}{}", &body[at..]),
        None => format!("{scheme}{body}"),
    }
}

/// The values of credential-like query parameters masked.
fn mask_query(body: &str) -> String {
    let Some(query_at) = body.find('?') else {
        return body.to_string();
    };
    let (path, query) = body.split_at(query_at + 1);
    let (query, fragment) = query.split_at(query.find('#').unwrap_or(query.len()));
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if is_secret_param(name) => format!("{name}={MASK}"),
            _ => param.to_string(),
        })
        .collect();
    format!("{path}{}{fragment}", params.join("&"))
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAM_MARKERS
        .iter()
        .any(|marker| name.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_the_user_part_are_masked() {
        assert_eq!(
            mask_urls("postgres://user:secret@db.internal:5432/payments"),
            "postgres://***@db.internal:5432/payments"
        );
        assert_eq!(
            mask_urls("a pa:ss@word postgres://u:p@ss@host/db"),
            "a pa:ss@word postgres://***@host/db",
            "a password holding @"
        );
    }

    #[test]
    fn passwords_in_the_query_are_masked() {
        assert_eq!(
            mask_urls("postgres://db/payments?user=app&password=secret&sslmode=require"),
            "postgres://db/payments?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            mask_urls("postgres://u@h/db?sslPassword=secret#frag"),
            "postgres://***@h/db?sslPassword=***#frag"
        );
        let masked = mask_urls("postgres://u:pa?ss@h/db?password=secret");
        assert!(
            !masked.contains("secret") && !masked.contains("pa?ss"),
            "{masked}"
        );
    }

    #[test]
    fn every_url_in_a_message_is_masked_whatever_its_scheme() {
        let message = "unsupported database url: postgress://user:secret@host/db; \
                       also \"mysql://root:hunter2@x\" and (sqlite://data/p.db)";
        let masked = mask_urls(message);
        assert!(!masked.contains("secret"), "{masked}");
        assert!(!masked.contains("hunter2"), "{masked}");
        assert!(masked.contains("postgress://***@host/db;"), "{masked}");
        assert!(masked.contains("(sqlite://data/p.db)"), "{masked}");
    }

    #[test]
    fn text_without_credentials_is_unchanged() {
        for text in [
            "",
            "no url here",
            "sqlite://data/payments.db",
            "listening on http://127.0.0.1:8080",
            "é://ü and :// alone",
        ] {
            assert_eq!(mask_urls(text), text);
        }
    }
}
