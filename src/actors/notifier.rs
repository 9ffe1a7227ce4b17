//! The e-mail notifier (DESIGN §11): mails a notice through an SMTP relay
//! when a payment ends `succeeded`, `failed` or `needs_review`.
//!
//! It must never slow or fail a payment. So the payment path only hands a
//! notice to the cheap [`Notifier`] handle, which never waits: it counts
//! the notices queued and drops (and counts, and logs) one that finds the
//! queue full. The actor sends one e-mail at a time; a failed send is
//! retried a few times with backoff, then given up and logged. Notices are
//! at most once: one queued when the engine stops, or whose status change
//! was written just before a crash, is not mailed. The durable record of
//! every change is the payment's audit trail.

use crate::config::EmailSettings;
use crate::config::EmailTls;
use crate::domain::PaymentStatus;
use crate::error::EngineError;
use crate::messages::notifier::PaymentNotice;
use actix::prelude::*;
use lettre::message::{header::ContentType, Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Notices waiting to be mailed (the one being sent included); past it a
/// new notice is dropped. A thousand notices is a relay that has been down
/// for a while: the audit trail still has every change.
pub const NOTIFIER_QUEUE_CAPACITY: usize = 1_000;
/// Tries per e-mail, the first included.
pub const MAX_SEND_ATTEMPTS: u32 = 3;
/// The wait before the second try; it doubles for each further one.
pub const SEND_BACKOFF_BASE_MS: u64 = 1_000;
/// While notices are dropped, one warning per this many drops.
const DROP_LOG_EVERY: u64 = 100;

/// What the notifier has done since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifierCounts {
    /// Notices waiting or being sent now.
    pub queued: usize,
    pub sent: u64,
    /// Notices given up after their last try.
    pub failed: u64,
    /// Notices refused because the queue was full.
    pub dropped: u64,
}

/// Counters shared by the handle and the actor.
#[derive(Debug, Default)]
struct Shared {
    queued: AtomicUsize,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// The payment path's way to the notifier: cheap to clone, never waits,
/// and does nothing when `[email]` is off.
#[derive(Clone, Default)]
pub struct Notifier(Option<Arc<Active>>);

/// A running notifier, as its handle sees it.
struct Active {
    addr: Addr<NotifierActor>,
    /// The statuses `email.events` asks notices for.
    statuses: Vec<PaymentStatus>,
    capacity: usize,
    shared: Arc<Shared>,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Notifier(None)
    }

    /// Starts the notifier `settings` describe (a disabled one when
    /// `[email]` is off). Must run inside an actix system.
    pub fn start(settings: &EmailSettings) -> Result<Self, EngineError> {
        Self::start_with_capacity(settings, NOTIFIER_QUEUE_CAPACITY)
    }

    /// As [`Notifier::start`], with a queue of `capacity` notices.
    pub fn start_with_capacity(
        settings: &EmailSettings,
        capacity: usize,
    ) -> Result<Self, EngineError> {
        if !settings.enabled {
            return Ok(Notifier::disabled());
        }
        let mailer = Mailer::new(settings)?;
        let statuses = settings
            .events
            .iter()
            .filter_map(|event| event.strip_prefix("payment.")?.parse().ok())
            .collect();
        let shared = Arc::new(Shared::default());
        let actor = NotifierActor {
            mailer,
            shared: shared.clone(),
        };
        tracing::info!(host = ?settings.smtp_host, port = settings.smtp_port, tls = ?settings.tls, events = ?settings.events, "e-mail notifier started");
        Ok(Notifier(Some(Arc::new(Active {
            addr: actor.start(),
            statuses,
            capacity: capacity.max(1),
            shared,
        }))))
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Queues `notice` if its status is one to mail; never waits. A full
    /// queue drops it (counted, logged).
    pub fn notify(&self, notice: PaymentNotice) {
        let Some(active) = &self.0 else { return };
        if !active.statuses.contains(&notice.status) {
            return;
        }
        let shared = &active.shared;
        if shared.queued.fetch_add(1, Ordering::SeqCst) >= active.capacity {
            shared.queued.fetch_sub(1, Ordering::SeqCst);
            dropped(shared, &notice, "queue full");
            return;
        }
        if active.addr.try_send(notice.clone()).is_err() {
            shared.queued.fetch_sub(1, Ordering::SeqCst);
            dropped(shared, &notice, "notifier unavailable");
        }
    }

    /// What it has done so far (all zero when disabled).
    pub fn counts(&self) -> NotifierCounts {
        let Some(active) = &self.0 else {
            return NotifierCounts::default();
        };
        let shared = &active.shared;
        NotifierCounts {
            queued: shared.queued.load(Ordering::SeqCst),
            sent: shared.sent.load(Ordering::SeqCst),
            failed: shared.failed.load(Ordering::SeqCst),
            dropped: shared.dropped.load(Ordering::SeqCst),
        }
    }
}

fn dropped(shared: &Shared, notice: &PaymentNotice, why: &str) {
    let count = shared.dropped.fetch_add(1, Ordering::SeqCst) + 1;
    if count == 1 || count.is_multiple_of(DROP_LOG_EVERY) {
        tracing::warn!(payment_id = %notice.payment_id, status = %notice.status, dropped = count, "e-mail notice dropped: {why}");
    }
}

/// The relay and the envelope, fixed at start.
#[derive(Clone)]
struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// Longest one try may take, whatever the relay does.
    timeout: Duration,
}

impl Mailer {
    fn new(settings: &EmailSettings) -> Result<Self, EngineError> {
        let fail = |e: String| EngineError::Config(format!("email: {e}"));
        let host = settings.smtp_host.clone().unwrap_or_default();
        let builder = match settings.tls {
            EmailTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            EmailTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
                .map_err(|e| fail(e.to_string()))?,
            EmailTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
                .map_err(|e| fail(e.to_string()))?,
        };
        let timeout = Duration::from_millis(settings.timeout_ms);
        let mut builder = builder.port(settings.smtp_port).timeout(Some(timeout));
        if let Some((username, password)) = settings.resolved_login().map_err(fail)? {
            builder = builder.credentials(Credentials::new(username, password));
        }
        Ok(Mailer {
            transport: builder.build(),
            from: settings.from_mailbox().map_err(|e| fail(e.to_string()))?,
            to: settings.to_mailboxes().map_err(|e| fail(e.to_string()))?,
            timeout,
        })
    }

    /// Sends `notice`, retrying with backoff; the outcome is counted and
    /// logged, never returned: nobody waits for it.
    async fn deliver(&self, notice: &PaymentNotice, shared: &Shared) {
        let email = match compose(notice, &self.from, &self.to) {
            Ok(email) => email,
            Err(error) => {
                shared.failed.fetch_add(1, Ordering::SeqCst);
                tracing::error!(payment_id = %notice.payment_id, %error, "e-mail notice could not be built");
                return;
            }
        };
        for attempt in 1..=MAX_SEND_ATTEMPTS {
            let error = match tokio::time::timeout(self.timeout, self.transport.send(email.clone()))
                .await
            {
                Ok(Ok(_)) => {
                    shared.sent.fetch_add(1, Ordering::SeqCst);
                    tracing::info!(payment_id = %notice.payment_id, status = %notice.status, "e-mail notice sent");
                    return;
                }
                Ok(Err(error)) if error.is_permanent() => {
                    tracing::warn!(payment_id = %notice.payment_id, attempt, %error, "e-mail notice refused by the relay");
                    break;
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => "timed out".to_string(),
            };
            tracing::warn!(payment_id = %notice.payment_id, attempt, %error, "e-mail notice not sent");
            if attempt < MAX_SEND_ATTEMPTS {
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        shared.failed.fetch_add(1, Ordering::SeqCst);
        tracing::error!(payment_id = %notice.payment_id, status = %notice.status, "e-mail notice given up");
    }
}

/// The wait after failed try number `attempt` (1-based).
fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    Duration::from_millis(SEND_BACKOFF_BASE_MS.saturating_mul(1 << doublings))
}

/// Sends notices one at a time, so a slow relay makes the queue (bounded
/// by the handle) grow, never the number of connections.
pub struct NotifierActor {
    mailer: Mailer,
    shared: Arc<Shared>,
}

impl Actor for NotifierActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The handle bounds the queue itself; this keeps actix's own
        // channel from growing past it either.
        ctx.set_mailbox_capacity(NOTIFIER_QUEUE_CAPACITY);
    }
}

impl Handler<PaymentNotice> for NotifierActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, notice: PaymentNotice, _ctx: &mut Self::Context) -> Self::Result {
        let mailer = self.mailer.clone();
        let shared = self.shared.clone();
        AtomicResponse::new(Box::pin(
            async move {
                mailer.deliver(&notice, &shared).await;
                shared.queued.fetch_sub(1, Ordering::SeqCst);
            }
            .into_actor(self),
        ))
    }
}

/// The e-mail for `notice`.
fn compose(
    notice: &PaymentNotice,
    from: &Mailbox,
    to: &[Mailbox],
) -> Result<Message, lettre::error::Error> {
    let builder = to.iter().fold(
        Message::builder()
            .from(from.clone())
            .subject(subject(notice)),
        |builder, to| builder.to(to.clone()),
    );
    builder.header(ContentType::TEXT_PLAIN).body(body(notice))
}

/// `Payment pay_… succeeded: 19.99 USD`: only values the engine made, so
/// nothing a client sent can reach a header.
pub fn subject(notice: &PaymentNotice) -> String {
    format!(
        "Payment {} {}: {}",
        notice.payment_id,
        notice.status,
        money(notice)
    )
}

/// The notice's text. Values a client chose (merchant, order, customer)
/// are quoted and escaped, as in the logs.
pub fn body(notice: &PaymentNotice) -> String {
    let mut lines = vec![
        format!("Payment:  {}", notice.payment_id),
        format!("Status:   {}", notice.status),
        format!(
            "Amount:   {} ({} minor units)",
            money(notice),
            notice.amount.minor_units()
        ),
        format!("Merchant: {:?}", notice.merchant_id.as_str()),
        format!("Order:    {:?}", notice.order_id),
        format!("Customer: {:?}", notice.customer_id),
    ];
    if let Some(provider) = &notice.provider {
        lines.push(format!("Provider: {provider}"));
    }
    if let Some(code) = &notice.failure_code {
        lines.push(format!("Failure:  {code:?}"));
    }
    lines.push(format!("At:       {}", notice.at));
    if notice.status == PaymentStatus::NeedsReview {
        lines.push(String::new());
        lines.push(
            "The provider may have charged this payment and the engine could not find out: \
             a person must decide it."
                .into(),
        );
    }
    lines.push(String::new());
    lines.join("\n")
}

/// The amount in major units with its currency: `19.99 USD`, `500 JPY`.
fn money(notice: &PaymentNotice) -> String {
    let minor = notice.amount.minor_units();
    let digits = u32::from(notice.currency.minor_unit_digits());
    let code = notice.currency.code().to_ascii_uppercase();
    let Some(scale) = 10_i64.checked_pow(digits).filter(|_| digits > 0) else {
        return format!("{minor} {code}");
    };
    let width = digits as usize;
    format!("{}.{:0width$} {code}", minor / scale, minor % scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Amount, Currency, MerchantId, PaymentId, Timestamp};

    fn notice(status: PaymentStatus, currency: &str, minor: i64) -> PaymentNotice {
        PaymentNotice {
            payment_id: PaymentId::new(),
            merchant_id: MerchantId::new("acme"),
            status,
            amount: Amount::new(minor).expect("amount"),
            currency: Currency::parse(currency).expect("currency"),
            customer_id: "cus\nBcc: evil@example.com".into(),
            order_id: "ord_1".into(),
            provider: Some("sandbox_a".into()),
            failure_code: (status == PaymentStatus::Failed).then(|| "card_declined".into()),
            at: Timestamp::from_datetime(chrono::Utc::now()),
        }
    }

    #[test]
    fn amounts_are_shown_in_major_units() {
        assert_eq!(
            money(&notice(PaymentStatus::Succeeded, "usd", 1999)),
            "19.99 USD"
        );
        assert_eq!(
            money(&notice(PaymentStatus::Succeeded, "usd", 5)),
            "0.05 USD"
        );
        assert_eq!(
            money(&notice(PaymentStatus::Succeeded, "jpy", 500)),
            "500 JPY"
        );
    }

    #[test]
    fn the_text_names_the_payment_and_quotes_client_values() {
        let failed = notice(PaymentStatus::Failed, "eur", 1000);
        let subject = subject(&failed);
        assert!(
            subject.contains(&failed.payment_id.to_string()),
            "{subject}"
        );
        assert!(
            subject.contains("failed") && subject.contains("10.00 EUR"),
            "{subject}"
        );
        let body = body(&failed);
        assert!(body.contains("\"card_declined\""), "{body}");
        assert!(
            !body.contains("\nBcc:"),
            "a client value cannot add lines: {body}"
        );
        let review = body_of(PaymentStatus::NeedsReview);
        assert!(review.contains("a person must decide"), "{review}");
    }

    fn body_of(status: PaymentStatus) -> String {
        body(&notice(status, "usd", 100))
    }

    #[test]
    fn backoff_doubles() {
        assert_eq!(backoff(1), Duration::from_millis(SEND_BACKOFF_BASE_MS));
        assert_eq!(backoff(2), Duration::from_millis(2 * SEND_BACKOFF_BASE_MS));
        assert!(backoff(u32::MAX) >= backoff(3));
    }

    /// A relay that accepts the connection and never greets: the first
    /// notice waits on it, the queue fills, the rest are dropped at once.
    #[actix_rt::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let settings = EmailSettings {
            enabled: true,
            smtp_host: Some("127.0.0.1".into()),
            smtp_port: silent.local_addr().expect("addr").port(),
            tls: EmailTls::None,
            from: Some("payments@example.test".into()),
            to: vec!["ops@example.test".into()],
            timeout_ms: 60_000,
            ..EmailSettings::default()
        };
        let notifier = Notifier::start_with_capacity(&settings, 2).expect("starts");
        let started = std::time::Instant::now();
        for _ in 0..10 {
            notifier.notify(notice(PaymentStatus::Succeeded, "usd", 100));
        }
        notifier.notify(notice(PaymentStatus::Pending, "usd", 100));
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "never waits"
        );
        let counts = notifier.counts();
        assert_eq!(
            (counts.queued, counts.dropped, counts.sent),
            (2, 8, 0),
            "{counts:?}"
        );
    }

    #[test]
    fn a_disabled_notifier_takes_notices_and_does_nothing() {
        let notifier = Notifier::disabled();
        notifier.notify(notice(PaymentStatus::Succeeded, "usd", 100));
        assert!(!notifier.is_enabled());
        assert_eq!(notifier.counts(), NotifierCounts::default());
    }
}
