//! OpenTelemetry export (cargo feature `otlp`, issue 13): with
//! `log.otlp_endpoint` set, the spans of a request reach an OTLP/HTTP
//! collector as JSON, in the caller's trace: the `http.request` span is a
//! child of the caller's span and is the one the answer's `traceparent`
//! names, with the `payment` span beneath it and the provider call's
//! `attempt` beneath that. The collector here is a fake on loopback that
//! records what is posted to `/v1/traces`; the server is the real binary,
//! stopped with SIGTERM so the last spans leave on shutdown.

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::traces::{pay_in_callers_trace, PARENT, TRACE_ID};
const SERVICE_NAME: &str = "payments-otlp-test";
/// Longest the server may take to stop after SIGTERM, flush included
/// (the export's own shutdown bound is 5 s).
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// A server exporting to `collector`, logging JSON at `info` to a file;
/// (child, base URL, log path).
fn start(
    dir: &std::path::Path,
    collector: &str,
) -> (std::process::Child, String, std::path::PathBuf) {
    crate::traces::start_configured(
        dir,
        &format!(
            "[log]\nformat = \"json\"\nlevel = \"info\"\notlp_endpoint = \"{collector}\"\notlp_service_name = \"{SERVICE_NAME}\"\n"
        ),
    )
}

/// SIGTERM, then the exit status within [`EXIT_TIMEOUT`].
async fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -TERM failed");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not exit within {EXIT_TIMEOUT:?} of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every span the collector received, each with its resource's
/// `service.name` added as `serviceName`.
async fn received_spans(collector: &MockServer) -> Vec<Value> {
    let requests = collector
        .received_requests()
        .await
        .expect("recording is on");
    let mut spans = Vec::new();
    for request in requests {
        assert_eq!(request.url.path(), "/v1/traces");
        let body: Value = serde_json::from_slice(&request.body)
            .unwrap_or_else(|e| panic!("not OTLP JSON ({e}): {:?}", request.body));
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = attributes(&resource["resource"]).remove("service.name");
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let mut span = span.clone();
                    span["serviceName"] = service.clone().map(Value::String).unwrap_or_default();
                    spans.push(span);
                }
            }
        }
    }
    spans
}

/// An OTLP object's attributes, their values as text.
fn attributes(of: &Value) -> std::collections::HashMap<String, String> {
    of["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let key = kv["key"].as_str()?.to_string();
            let value = &kv["value"];
            let text = value["stringValue"]
                .as_str()
                .map(str::to_string)
                .or_else(|| value["intValue"].as_str().map(str::to_string))
                .or_else(|| value["intValue"].as_i64().map(|n| n.to_string()))
                .or_else(|| value["boolValue"].as_bool().map(|b| b.to_string()))?;
            Some((key, text))
        })
        .collect()
}

/// The one span of `spans` named `name` in our trace whose attributes
/// satisfy `wanted`.
fn span<'a>(spans: &'a [Value], name: &str, wanted: impl Fn(&Value) -> bool) -> &'a Value {
    let found: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == name && s["traceId"] == TRACE_ID && wanted(s))
        .collect();
    assert_eq!(found.len(), 1, "{name} spans in the trace: {spans:#?}");
    found[0]
}

#[tokio::test]
async fn a_callers_trace_reaches_the_collector_with_the_answered_span() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(&collector)
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, base, log) = start(dir.path(), &collector.uri());

    let order = crate::common::unique("ord_otlp");
    let answer = pay_in_callers_trace(&base, &order, "pm_card_visa").await;
    assert!(answer.status().is_success(), "{}", answer.status());
    let traceparent = answer
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .expect("the answer carries traceparent");
    let payment: Value = answer.json().await.expect("json");
    let payment_id = payment["id"].as_str().expect("id").to_string();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE_ID, "01"));
    let answered_span = parts[2].to_string();

    // The spans leave within the batch delay or, at the latest, when the
    // server flushes on its way out.
    let status = terminate(&mut child).await;
    assert!(status.success(), "the server exited with {status}");
    let spans = received_spans(&collector).await;

    let request = span(&spans, "http.request", |s| {
        attributes(s).get("route").map(String::as_str) == Some("/v1/payments")
    });
    assert_eq!(request["parentSpanId"], PARENT, "{request:#}");
    assert_eq!(request["spanId"], answered_span.as_str(), "{request:#}");
    assert_eq!(request["serviceName"], SERVICE_NAME);

    let payment_span = span(&spans, "payment", |_| true);
    assert_eq!(payment_span["parentSpanId"], request["spanId"]);
    let fields = attributes(payment_span);
    assert_eq!(fields.get("payment_id"), Some(&payment_id), "{fields:?}");
    assert!(
        fields.get("order_id").is_some_and(|o| o.contains(&order)),
        "{fields:?}"
    );
    assert!(
        fields.get("merchant").is_some_and(|m| !m.is_empty()),
        "{fields:?}"
    );

    let attempt = span(&spans, "attempt", |_| true);
    assert_eq!(attempt["parentSpanId"], payment_span["spanId"]);
    let fields = attributes(attempt);
    assert_eq!(fields.get("payment_id"), Some(&payment_id), "{fields:?}");
    assert!(
        fields.get("provider").is_some_and(|p| !p.is_empty()),
        "{fields:?}"
    );

    // The log names the same span the client and the collector got.
    let text = std::fs::read_to_string(&log).expect("log");
    let created = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| {
            line["fields"]["message"] == "payment created"
                && line["fields"]["payment_id"] == payment_id.as_str()
        })
        .unwrap_or_else(|| panic!("no `payment created` line: {text}"));
    let logged = created["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == "http.request"))
        .expect("the request's span in the log");
    assert_eq!(logged["trace_id"], TRACE_ID);
    assert_eq!(logged["span_id"], answered_span.as_str());
    assert_eq!(logged["parent_span_id"], PARENT);
}
