//! `[email]`: the optional e-mail notifier (DESIGN §11).
//!
//! Off by default. When on, a notice is mailed through an SMTP relay for
//! each payment that reaches one of the chosen final statuses. The relay's
//! password is a credential: it is never shown by `Debug` or written back
//! out by `Serialize`, and outside development it is better read from the
//! environment variable `password_env` names.

use super::providers::Secret;
use super::validate::{invalid, ConfigError};
use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};

/// The events a notice may be sent for, as DESIGN §11 names them.
pub const EMAIL_EVENTS: &[&str] = &[
    "payment.succeeded",
    "payment.failed",
    "payment.needs_review",
];
/// The submission port (STARTTLS), the relay port by default.
pub const DEFAULT_SMTP_PORT: u16 = 587;
/// How long one exchange with the relay may take, by default.
pub const DEFAULT_EMAIL_TIMEOUT_MS: u64 = 10_000;
/// Longest `email.timeout_ms`: past two minutes a relay is not answering.
pub const MAX_EMAIL_TIMEOUT_MS: u64 = 120_000;
/// Most recipients: a notice is for an operations mailbox or two, not a list.
pub const MAX_EMAIL_RECIPIENTS: usize = 50;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailTls {
    /// Plain SMTP: only for a relay on the same host or a test.
    None,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// The whole `[email]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailSettings {
    pub enabled: bool,
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    pub tls: EmailTls,
    /// The relay's login; with `password` or `password_env`.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The environment variable holding the password (wins over `password`).
    pub password_env: Option<String>,
    /// The sender, `ops@example.com` or `Payments <ops@example.com>`.
    pub from: Option<String>,
    /// The recipients.
    pub to: Vec<String>,
    /// Which of [`EMAIL_EVENTS`] are mailed.
    pub events: Vec<String>,
    /// Longest one exchange with the relay may take (connect, a command).
    pub timeout_ms: u64,
}

impl Default for EmailSettings {
    fn default() -> Self {
        EmailSettings {
            enabled: false,
            smtp_host: None,
            smtp_port: DEFAULT_SMTP_PORT,
            tls: EmailTls::default(),
            username: None,
            password: None,
            password_env: None,
            from: None,
            to: Vec::new(),
            events: EMAIL_EVENTS.iter().map(|e| e.to_string()).collect(),
            timeout_ms: DEFAULT_EMAIL_TIMEOUT_MS,
        }
    }
}

impl EmailSettings {
    /// Checks what needs no I/O. A disabled notifier's settings are still
    /// checked when written, so a typo shows before it is switched on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_shape()?;
        if !self.enabled {
            return Ok(());
        }
        if self
            .smtp_host
            .as_deref()
            .is_none_or(|h| h.trim().is_empty())
        {
            return Err(invalid("email.smtp_host", "required when email is enabled"));
        }
        if self.from.is_none() {
            return Err(invalid("email.from", "required when email is enabled"));
        }
        if self.to.is_empty() {
            return Err(invalid(
                "email.to",
                "at least one recipient is required when email is enabled",
            ));
        }
        Ok(())
    }

    /// The checks that hold whether or not the notifier is enabled.
    fn validate_shape(&self) -> Result<(), ConfigError> {
        if self.smtp_port == 0 {
            return Err(invalid("email.smtp_port", "must be 1 to 65535"));
        }
        if !(1..=MAX_EMAIL_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(invalid(
                "email.timeout_ms",
                format!("must be 1 to {MAX_EMAIL_TIMEOUT_MS}"),
            ));
        }
        if let Some(from) = &self.from {
            parse_mailbox("email.from", from)?;
        }
        if self.to.len() > MAX_EMAIL_RECIPIENTS {
            return Err(invalid(
                "email.to",
                format!("at most {MAX_EMAIL_RECIPIENTS} recipients"),
            ));
        }
        for to in &self.to {
            parse_mailbox("email.to", to)?;
        }
        self.validate_events()?;
        self.validate_login()
    }

    fn validate_events(&self) -> Result<(), ConfigError> {
        if self.events.is_empty() {
            return Err(invalid(
                "email.events",
                format!("name at least one of {}", EMAIL_EVENTS.join(", ")),
            ));
        }
        match self
            .events
            .iter()
            .find(|e| !EMAIL_EVENTS.contains(&e.as_str()))
        {
            Some(unknown) => Err(invalid(
                "email.events",
                format!("{unknown:?} is not one of {}", EMAIL_EVENTS.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// A username needs a password and a password needs a username: half a
    /// login is a mistake the relay would only report at the first notice.
    fn validate_login(&self) -> Result<(), ConfigError> {
        if self.password.is_some() && self.password_env.is_some() {
            return Err(invalid(
                "email.password",
                "set password or password_env, not both",
            ));
        }
        let has_password = self.password.is_some() || self.password_env.is_some();
        match (&self.username, has_password) {
            (Some(_), false) => Err(invalid(
                "email.password",
                "email.username is set: set password or password_env too",
            )),
            (None, true) => Err(invalid(
                "email.username",
                "a password is set: set the username too",
            )),
            _ => Ok(()),
        }
    }

    /// The variable `password_env` names is set (checked by every command
    /// with the other credentials' variables).
    pub fn check_environment(
        &self,
        var: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        match &self.password_env {
            Some(variable) if self.enabled => {
                if var(variable).is_none_or(|value| value.is_empty()) {
                    return Err(invalid(
                        "email.password_env",
                        format!("environment variable {variable} is not set"),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The relay login in effect: the username and the password from the
    /// environment variable `password_env` names, else from the file.
    pub fn resolved_login(&self) -> Result<Option<(String, String)>, String> {
        let Some(username) = &self.username else {
            return Ok(None);
        };
        let password = match &self.password_env {
            Some(variable) => std::env::var(variable)
                .ok()
                .filter(|value| !value.is_empty())
                .ok_or_else(|| format!("environment variable {variable} is not set"))?,
            None => self
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default(),
        };
        Ok(Some((username.clone(), password)))
    }

    /// The sender, parsed (validated: parses once the section is valid).
    pub fn from_mailbox(&self) -> Result<Mailbox, ConfigError> {
        parse_mailbox("email.from", self.from.as_deref().unwrap_or_default())
    }

    /// The recipients, parsed.
    pub fn to_mailboxes(&self) -> Result<Vec<Mailbox>, ConfigError> {
        self.to
            .iter()
            .map(|to| parse_mailbox("email.to", to))
            .collect()
    }
}

/// `text` as an address (`a@b.example` or `Name <a@b.example>`), or an
/// error naming `key`.
fn parse_mailbox(key: &str, text: &str) -> Result<Mailbox, ConfigError> {
    text.parse::<Mailbox>()
        .map_err(|e| invalid(key, format!("{text:?} is not an e-mail address: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn enabled() -> EmailSettings {
        EmailSettings {
            enabled: true,
            smtp_host: Some("smtp.example.com".into()),
            from: Some("Payments <payments@example.com>".into()),
            to: vec!["ops@example.com".into()],
            ..EmailSettings::default()
        }
    }

    fn refusal(settings: EmailSettings) -> String {
        settings.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_off_and_valid() {
        let settings = EmailSettings::default();
        assert!(!settings.enabled);
        assert_eq!(settings.smtp_port, 587);
        assert_eq!(settings.tls, EmailTls::Starttls);
        assert_eq!(settings.timeout_ms, 10_000);
        assert_eq!(settings.events, EMAIL_EVENTS);
        settings.validate().unwrap();
        enabled().validate().unwrap();
    }

    #[test]
    fn an_enabled_notifier_needs_a_host_a_sender_and_recipients() {
        let cases = [
            (
                "email.smtp_host",
                EmailSettings {
                    smtp_host: None,
                    ..enabled()
                },
            ),
            (
                "email.from",
                EmailSettings {
                    from: None,
                    ..enabled()
                },
            ),
            (
                "email.to",
                EmailSettings {
                    to: vec![],
                    ..enabled()
                },
            ),
        ];
        for (key, settings) in cases {
            let error = refusal(settings);
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                "email.from",
                EmailSettings {
                    from: Some("not an address".into()),
                    ..enabled()
                },
            ),
            (
                "email.to",
                EmailSettings {
                    to: vec!["ops@".into()],
                    ..enabled()
                },
            ),
            (
                "email.events",
                EmailSettings {
                    events: vec!["payment.pending".into()],
                    ..enabled()
                },
            ),
            (
                "email.events",
                EmailSettings {
                    events: vec![],
                    ..enabled()
                },
            ),
            (
                "email.timeout_ms",
                EmailSettings {
                    timeout_ms: 0,
                    ..enabled()
                },
            ),
            (
                "email.smtp_port",
                EmailSettings {
                    smtp_port: 0,
                    ..enabled()
                },
            ),
            (
                "email.password",
                EmailSettings {
                    username: Some("u".into()),
                    ..enabled()
                },
            ),
            (
                "email.username",
                EmailSettings {
                    password: Some(Secret::new("p")),
                    ..enabled()
                },
            ),
        ];
        for (key, settings) in cases {
            let error = refusal(settings);
            assert!(error.contains(key), "{key}: {error}");
        }
        let unknown = toml::from_str::<Config>("[email]\ntls = \"ssl\"\n").unwrap_err();
        assert!(unknown.to_string().contains("ssl"), "{unknown}");
    }

    #[test]
    fn a_bad_address_is_refused_even_while_disabled() {
        let settings = EmailSettings {
            enabled: false,
            to: vec!["nobody".into()],
            ..EmailSettings::default()
        };
        assert!(refusal(settings).contains("email.to"));
    }

    #[test]
    fn the_password_is_never_shown() {
        let config: Config = toml::from_str(
            "[email]\nenabled = true\nsmtp_host = \"smtp.example.com\"\ntls = \"tls\"\n\
             username = \"mailer\"\npassword = \"hunter2-smtp\"\n\
             from = \"payments@example.com\"\nto = [\"ops@example.com\", \"Fin <fin@example.com>\"]\n",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.email.tls, EmailTls::Tls);
        assert!(!format!("{config:?}").contains("hunter2-smtp"));
        let dumped = toml::to_string(&config).unwrap();
        assert!(!dumped.contains("hunter2-smtp"), "{dumped}");
        let json = serde_json::to_string(&config).unwrap();
        assert!(!json.contains("hunter2-smtp"), "{json}");
        assert_eq!(
            config.email.resolved_login(),
            Ok(Some(("mailer".into(), "hunter2-smtp".into())))
        );
        assert_eq!(config.email.to_mailboxes().unwrap().len(), 2);
    }

    #[test]
    fn a_password_variable_must_be_set() {
        let settings = EmailSettings {
            username: Some("mailer".into()),
            password_env: Some("PAYMENTS_TEST_SURELY_UNSET_SMTP_PASSWORD".into()),
            ..enabled()
        };
        settings.validate().unwrap();
        let error = settings
            .check_environment(&|_| None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("email.password_env"), "{error}");
        assert!(
            error.contains("PAYMENTS_TEST_SURELY_UNSET_SMTP_PASSWORD"),
            "{error}"
        );
        settings
            .check_environment(&|_| Some("from-the-env".into()))
            .unwrap();
        let both = EmailSettings {
            password: Some(Secret::new("p")),
            ..settings
        };
        assert!(refusal(both).contains("email.password"));
    }
}
