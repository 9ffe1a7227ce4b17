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
pub mod openapi;
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
use actix_web::http::Method;
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

/// One served route: its path, its method, and its handler as a route
/// that the method is then added to. [`routes`] serves exactly these, and
/// [`route_table`] lists them, so the list cannot differ from what is
/// served.
type RouteEntry = (&'static str, Method, fn() -> actix_web::Route);

fn entry(path: &'static str, method: Method, handler: fn() -> actix_web::Route) -> RouteEntry {
    (path, method, handler)
}

/// Every route, in registration order. A new route is one line here and
/// its `#[utoipa::path]` in [`openapi`]'s list.
fn route_entries(with_sandbox: bool) -> Vec<RouteEntry> {
    use web::route;
    let mut entries = vec![
        entry("/healthz", Method::GET, || route().to(healthz)),
        entry("/readyz", Method::GET, || route().to(readyz)),
        entry("/metrics", Method::GET, || route().to(metrics)),
        entry("/openapi.json", Method::GET, || route().to(openapi::serve)),
        entry("/v1/payments", Method::POST, || {
            route().to(payments::create)
        }),
        entry("/v1/payments", Method::GET, || route().to(payments::list)),
        entry("/v1/payments/{id}", Method::GET, || {
            route().to(payments::get)
        }),
        entry("/v1/payments/{id}/events", Method::GET, || {
            route().to(payments::events)
        }),
        entry("/v1/payments/{id}/refunds", Method::POST, || {
            route().to(money::create_refund)
        }),
        entry("/v1/payments/{id}/refunds", Method::GET, || {
            route().to(money::list_refunds)
        }),
        entry("/v1/ledger/balances", Method::GET, || {
            route().to(money::balances)
        }),
        entry("/v1/ledger/transactions", Method::GET, || {
            route().to(money::transactions)
        }),
        entry("/v1/wallets/{customer_id}", Method::GET, || {
            route().to(money::wallet)
        }),
        entry("/v1/wallets/{customer_id}/top_ups", Method::POST, || {
            route().to(money::top_up)
        }),
        entry("/v1/providers", Method::GET, || route().to(providers::list)),
        entry("/v1/providers/{name}", Method::PATCH, || {
            route().to(providers::update)
        }),
        entry("/v1/reconciliation/runs", Method::POST, || {
            route().to(reconciliation::create_run)
        }),
        entry("/v1/reconciliation/runs", Method::GET, || {
            route().to(reconciliation::list_runs)
        }),
        entry("/v1/reconciliation/runs/{id}", Method::GET, || {
            route().to(reconciliation::get_run)
        }),
        entry("/v1/reconciliation/discrepancies", Method::GET, || {
            route().to(reconciliation::list_discrepancies)
        }),
        entry(
            "/v1/reconciliation/discrepancies/{id}/resolve",
            Method::POST,
            || route().to(reconciliation::resolve),
        ),
        entry("/v1/webhooks/{provider}", Method::POST, || {
            route().to(webhooks::receive)
        }),
        entry("/v1/anomalies", Method::GET, || route().to(anomalies::list)),
        entry("/v1/events", Method::GET, || route().to(events::list)),
        entry("/v1/events/{id}/redeliver", Method::POST, || {
            route().to(events::redeliver)
        }),
    ];
    if with_sandbox {
        entries.extend([
            entry("/v1/sandbox/{provider}/charges", Method::GET, || {
                route().to(sandbox::charges)
            }),
            entry("/v1/sandbox/{provider}/charges", Method::POST, || {
                route().to(sandbox::create_charge)
            }),
            entry("/v1/sandbox/{provider}/charges/{id}", Method::PATCH, || {
                route().to(sandbox::update_charge)
            }),
            entry(
                "/v1/sandbox/{provider}/charges/{id}",
                Method::DELETE,
                || route().to(sandbox::delete_charge),
            ),
            entry("/v1/sandbox/{provider}/faults", Method::GET, || {
                route().to(sandbox::get_faults)
            }),
            entry("/v1/sandbox/{provider}/faults", Method::PUT, || {
                route().to(sandbox::put_faults)
            }),
        ]);
    }
    entries
}

/// Every served path and method (with the sandbox's routes when
/// `with_sandbox`), as [`routes`] registers them.
pub fn route_table(with_sandbox: bool) -> Vec<(&'static str, Method)> {
    route_entries(with_sandbox)
        .into_iter()
        .map(|(path, method, _)| (path, method))
        .collect()
}

/// Registers every route on `cfg`.
pub fn routes(cfg: &mut web::ServiceConfig, with_sandbox: bool) {
    // The routes of one path, in order: one resource per path.
    let mut by_path: Vec<(&'static str, Vec<(Method, actix_web::Route)>)> = Vec::new();
    for (path, method, handler) in route_entries(with_sandbox) {
        let route = handler().method(method.clone());
        match by_path.iter_mut().find(|(known, _)| *known == path) {
            Some((_, routes)) => routes.push((method, route)),
            None => by_path.push((path, vec![(method, route)])),
        }
    }
    for (path, routes) in by_path {
        cfg.service(resource(path, routes));
    }
    cfg.default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::RouteNotFound)
    }));
}

/// A path's resource: its routes, and 405 with `Allow` for other methods.
fn resource(path: &str, routes: Vec<(Method, actix_web::Route)>) -> actix_web::Resource {
    let allow = routes
        .iter()
        .map(|(method, _)| method.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    routes
        .into_iter()
        .fold(web::resource(path.to_string()), |resource, (_, route)| {
            resource.route(route)
        })
        .default_service(web::to(move || {
            let allow = allow.clone();
            async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) }
        }))
}

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    operation_id = "healthz",
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = openapi::schemas::ProbeStatus))
)]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Prometheus text (DESIGN §11); no key, like the probes.
#[utoipa::path(
    get,
    operation_id = "metrics",
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"))
)]
async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::telemetry::render())
}

/// 200 when the database answers and every migration is applied; 503
/// otherwise, so a load balancer stops sending traffic here. The answer
/// says only that: this route needs no key, and a store error may name
/// hosts, schemas and tables. The cause goes to the log.
#[utoipa::path(
    get,
    operation_id = "readyz",
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The database answers and every migration is applied", body = openapi::schemas::ProbeStatus),
        (status = 503, response = openapi::responses::ServiceUnavailable),
    )
)]
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
    let (span, context) = trace::request_span(
        &method,
        request
            .headers()
            .get(trace::TRACEPARENT)
            .and_then(|v| v.to_str().ok()),
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
