//! The HTTP/JSON API (DESIGN §6): a thin layer over [`EngineHandle`].
//!
//! Handlers parse and validate input ([`input`]), call the handle, and
//! serialize the answer. Who may call what is [`auth`]'s: each handler
//! takes a `Merchant`, `Operator` or `Caller` extractor. Errors become
//! responses in one place ([`error`]).

mod anomalies;
pub mod auth;
pub mod error;
mod events;
pub mod input;
mod money;
mod payments;
mod providers;
pub mod rate_limit;
mod reconciliation;
mod sandbox;
pub mod trace;
mod webhooks;

pub use payments::REPLAYED_HEADER;

use crate::config::mask_urls;
use crate::engine::EngineHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use auth::Authenticator;
use error::ApiError;
use serde_json::json;
use std::net::IpAddr;
use std::time::Duration;
use tracing::Instrument;

/// The shape of every list answer: `{data, has_more}`.
#[derive(Debug, serde::Serialize)]
pub struct ListBody<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

impl<T> ListBody<T> {
    /// A complete list (no further page).
    pub fn complete(data: Vec<T>) -> Self {
        ListBody {
            data,
            has_more: false,
        }
    }
}

/// What every handler can reach.
pub struct AppState {
    pub handle: EngineHandle,
    pub auth: Authenticator,
    /// `[server.rate_limit]`, per API key.
    pub limiter: rate_limit::KeyRateLimiter,
}

impl AppState {
    pub fn new(handle: EngineHandle) -> Self {
        let auth = Authenticator::from_config(handle.config());
        let limiter = rate_limit::KeyRateLimiter::for_server(
            handle.config().server.rate_limit.as_ref(),
            auth.is_development(),
        );
        AppState {
            handle,
            auth,
            limiter,
        }
    }
}

/// Longest a client may take to send a request's head (line and headers);
/// a slower one is answered 408 and dropped.
const CLIENT_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// How long a response may take to be flushed to a client closing the
/// connection before it is dropped.
const CLIENT_DISCONNECT_TIMEOUT_MS: u64 = 1_000;
/// Open connections per worker thread; past it, new ones wait in the
/// backlog. Far above what the engine can usefully serve at once, well
/// below what exhausts file descriptors.
const MAX_CONNECTIONS_PER_WORKER: usize = 4_096;
/// Connections the kernel queues while every worker is full.
const LISTEN_BACKLOG_CONNECTIONS: u32 = 1_024;

/// Registers every route on `cfg`.
pub fn routes(cfg: &mut web::ServiceConfig, with_sandbox: bool) {
    use actix_web::http::Method;
    // Each path is a resource whose other methods answer 405 with `Allow`.
    let resource = |path: &str, routes: Vec<(Method, actix_web::Route)>| {
        let allowed: Vec<String> = routes
            .iter()
            .map(|(method, _)| method.to_string())
            .collect();
        let allow = allowed.join(", ");
        routes
            .into_iter()
            .fold(web::resource(path.to_string()), |resource, (_, route)| {
                resource.route(route)
            })
            .default_service(web::to(move || {
                let allow = allow.clone();
                async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) }
            }))
    };
    cfg.service(resource(
        "/healthz",
        vec![(Method::GET, web::get().to(healthz))],
    ))
    .service(resource(
        "/readyz",
        vec![(Method::GET, web::get().to(readyz))],
    ))
    .service(resource(
        "/metrics",
        vec![(Method::GET, web::get().to(metrics))],
    ))
    .service(resource(
        "/v1/payments",
        vec![
            (Method::POST, web::post().to(payments::create)),
            (Method::GET, web::get().to(payments::list)),
        ],
    ))
    .service(resource(
        "/v1/payments/{id}",
        vec![(Method::GET, web::get().to(payments::get))],
    ))
    .service(resource(
        "/v1/payments/{id}/events",
        vec![(Method::GET, web::get().to(payments::events))],
    ))
    .service(resource(
        "/v1/payments/{id}/refunds",
        vec![
            (Method::POST, web::post().to(money::create_refund)),
            (Method::GET, web::get().to(money::list_refunds)),
        ],
    ))
    .service(resource(
        "/v1/ledger/balances",
        vec![(Method::GET, web::get().to(money::balances))],
    ))
    .service(resource(
        "/v1/ledger/transactions",
        vec![(Method::GET, web::get().to(money::transactions))],
    ))
    .service(resource(
        "/v1/wallets/{customer_id}",
        vec![(Method::GET, web::get().to(money::wallet))],
    ))
    .service(resource(
        "/v1/wallets/{customer_id}/top_ups",
        vec![(Method::POST, web::post().to(money::top_up))],
    ))
    .service(resource(
        "/v1/providers",
        vec![(Method::GET, web::get().to(providers::list))],
    ))
    .service(resource(
        "/v1/providers/{name}",
        vec![(Method::PATCH, web::patch().to(providers::update))],
    ))
    .service(resource(
        "/v1/reconciliation/runs",
        vec![
            (Method::POST, web::post().to(reconciliation::create_run)),
            (Method::GET, web::get().to(reconciliation::list_runs)),
        ],
    ))
    .service(resource(
        "/v1/reconciliation/runs/{id}",
        vec![(Method::GET, web::get().to(reconciliation::get_run))],
    ))
    .service(resource(
        "/v1/reconciliation/discrepancies",
        vec![(
            Method::GET,
            web::get().to(reconciliation::list_discrepancies),
        )],
    ))
    .service(resource(
        "/v1/reconciliation/discrepancies/{id}/resolve",
        vec![(Method::POST, web::post().to(reconciliation::resolve))],
    ))
    .service(resource(
        "/v1/webhooks/{provider}",
        vec![(Method::POST, web::post().to(webhooks::receive))],
    ))
    .service(resource(
        "/v1/anomalies",
        vec![(Method::GET, web::get().to(anomalies::list))],
    ))
    .service(resource(
        "/v1/events",
        vec![(Method::GET, web::get().to(events::list))],
    ))
    .service(resource(
        "/v1/events/{id}/redeliver",
        vec![(Method::POST, web::post().to(events::redeliver))],
    ));
    if with_sandbox {
        cfg.service(resource(
            "/v1/sandbox/{provider}/charges",
            vec![
                (Method::GET, web::get().to(sandbox::charges)),
                (Method::POST, web::post().to(sandbox::create_charge)),
            ],
        ))
        .service(resource(
            "/v1/sandbox/{provider}/charges/{id}",
            vec![
                (Method::PATCH, web::patch().to(sandbox::update_charge)),
                (Method::DELETE, web::delete().to(sandbox::delete_charge)),
            ],
        ))
        .service(resource(
            "/v1/sandbox/{provider}/faults",
            vec![
                (Method::GET, web::get().to(sandbox::get_faults)),
                (Method::PUT, web::put().to(sandbox::put_faults)),
            ],
        ));
    }
    cfg.default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::RouteNotFound)
    }));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Prometheus text (DESIGN §11); no key, like the probes.
async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::telemetry::render())
}

/// 200 when the database answers and every migration is applied; 503
/// otherwise, so a load balancer stops sending traffic here. The answer
/// says only that: this route needs no key, and a store error may name
/// hosts, schemas and tables. The cause goes to the log.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match state.handle.ready().await {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({ "status": "ready" }))),
        Err(error) => {
            tracing::warn!(error = %mask_urls(&error.to_string()), "not ready");
            Err(ApiError::NotReady)
        }
    }
}

/// Counts every request by route pattern (never the raw path: ids would
/// make a series per payment), method and status, with its duration.
async fn observe(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = request.method().to_string();
    let context = trace::TraceContext::continue_or_start(
        request
            .headers()
            .get(trace::TRACEPARENT)
            .and_then(|v| v.to_str().ok()),
    );
    let span = tracing::info_span!(
        "http.request",
        method = %method,
        route = tracing::field::Empty,
        trace_id = %context.trace_id,
        span_id = %context.span_id,
        parent_span_id = context.parent_id.as_deref().unwrap_or(""),
    );
    let mut response = next.call(request).instrument(span.clone()).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    span.record("route", route.as_str());
    let (name, value) = context.header();
    response.headers_mut().insert(name, value);
    crate::telemetry::http_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    Ok(response)
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to accept the development key sk_test_default on non-loopback address {0}: configure PAYMENTS_API_KEYS")]
    DevelopmentKeyOffLoopback(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Says at start who can call: the merchants (never a key) and whether
/// anyone can take operator actions.
fn log_keys(auth: &Authenticator) {
    tracing::info!(
        merchants = ?auth.merchants(),
        operator_keys = auth.operator_keys(),
        development_key = auth.is_development(),
        "API keys configured"
    );
    if auth.operator_keys() == 0 {
        tracing::warn!(
            "no operator key configured (PAYMENTS_ADMIN_KEYS): operator actions are refused"
        );
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The API's listening socket, bound before the engine starts: a port in
/// use, or the development key on a public address, is refused before
/// anything touches the database.
pub struct Listener {
    socket: std::net::TcpListener,
}

/// Checks what the server's own settings allow and binds its port (the
/// first address the host resolves to), with the listen backlog the
/// server needs under load. Runs on a tokio runtime.
pub async fn bind(config: &crate::config::Config) -> Result<Listener, ServeError> {
    let host = config.server.host.as_str();
    if Authenticator::from_config(config).is_development() && !is_loopback(host) {
        return Err(ServeError::DevelopmentKeyOffLoopback(host.to_string()));
    }
    let addr = format!("{host}:{}", config.server.port);
    let bind_error = |source| ServeError::Bind {
        addr: addr.clone(),
        source,
    };
    let resolved = tokio::net::lookup_host((host, config.server.port))
        .await
        .map_err(bind_error)?
        .next()
        .ok_or_else(|| bind_error(std::io::Error::other("the host resolves to no address")))?;
    let socket = if resolved.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(bind_error)?;
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(resolved).map_err(bind_error)?;
    let listening = socket
        .listen(LISTEN_BACKLOG_CONNECTIONS)
        .map_err(bind_error)?;
    let socket = listening.into_std().map_err(bind_error)?;
    Ok(Listener { socket })
}

/// Serves the API on `listener` until SIGINT/SIGTERM, then returns (the
/// caller shuts the engine down). Prints `listening on http://ADDR`, so
/// scripts and tests that pass port 0 learn the port.
pub async fn serve(handle: EngineHandle, listener: Listener) -> Result<(), ServeError> {
    let config = handle.config().clone();
    let state = web::Data::new(AppState::new(handle.clone()));
    log_keys(&state.auth);
    let with_sandbox = handle.has_sandbox();
    // In-flight requests get the whole grace period (and a second more) to
    // be answered: the engine keeps working on accepted payments meanwhile.
    let grace_secs = Duration::from_millis(config.engine.shutdown_grace_ms)
        .as_secs()
        .saturating_add(1);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::from_fn(observe))
            .configure(|cfg| routes(cfg, with_sandbox))
    })
    .disable_signals()
    .shutdown_timeout(grace_secs)
    .client_request_timeout(Duration::from_millis(CLIENT_REQUEST_TIMEOUT_MS))
    .client_disconnect_timeout(Duration::from_millis(CLIENT_DISCONNECT_TIMEOUT_MS))
    .max_connections(MAX_CONNECTIONS_PER_WORKER);
    if config.server.workers > 0 {
        server = server.workers(config.server.workers);
    }
    let addr = listener.socket.local_addr()?;
    let server = server.listen(listener.socket)?;
    println!("listening on http://{addr}");
    tracing::info!(%addr, "HTTP API listening");
    let server = server.run();
    let (http, engine) = (server.handle(), handle.clone());
    actix_web::rt::spawn(async move {
        wait_for_stop_signal().await;
        tracing::info!("stop signal: refusing new payments, finishing accepted ones");
        engine.stop_intake();
        http.stop(true).await;
    });
    server.await?;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
