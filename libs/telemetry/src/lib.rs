//! Logging and tracing for every berth process.
//!
//! [`init`] installs one `tracing` subscriber: human or JSON log lines on stderr (filtered by
//! `RUST_LOG`) and an OpenTelemetry layer backed by an SDK tracer provider, so every span has a
//! real W3C trace id whether or not spans are exported. Trace context crosses process
//! boundaries as a W3C `traceparent` string ([`current_traceparent`] on the sending side,
//! [`set_parent_from_traceparent`] on the receiving one); the broker carries it in a message
//! header, the API in an HTTP header.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::{Once, OnceLock};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// W3C header name of the propagated trace context.
pub const TRACEPARENT: &str = "traceparent";

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event, for log shippers.
    Json,
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" | "pretty" | "plain" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(TelemetryError::LogFormat(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// Base OTLP/HTTP endpoint (e.g. `http://127.0.0.1:4318`); `/v1/traces` is appended
    /// unless already there. `None`: spans are created (for trace ids) but not exported.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    /// `BERTH_LOG_FORMAT` (`text`|`json`) and `OTEL_EXPORTER_OTLP_ENDPOINT`, both optional.
    pub fn from_env() -> Result<Self, TelemetryError> {
        let log_format = match std::env::var("BERTH_LOG_FORMAT") {
            Ok(v) if !v.trim().is_empty() => v.trim().parse()?,
            _ => LogFormat::Text,
        };
        let otlp_endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|v| !v.trim().is_empty());
        Ok(Self {
            log_format,
            otlp_endpoint,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::FromEnvError),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("unknown log format `{0}`; expected `text` or `json`")]
    LogFormat(String),
}

/// Keeps the tracer provider alive; dropping it flushes pending spans and shuts it down.
#[must_use = "dropping the guard shuts tracing down"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// A guard that owns nothing: what a second [`init`] in the same process returns.
    pub fn noop() -> Self {
        Self { provider: None }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            // The subscriber may already be gone, so stderr is the only place left.
            eprintln!("telemetry: shutting the tracer provider down failed: {err}");
        }
    }
}

/// Installs the global subscriber and tracer provider for `service_name`.
///
/// A second call in the same process (tests) keeps the first installation and returns a
/// no-op guard instead of failing.
pub fn init(service_name: &str, cfg: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let env_filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()?;
    let endpoint = cfg
        .otlp_endpoint
        .as_deref()
        .filter(|e| !e.trim().is_empty());
    let provider = tracer_provider(service_name, endpoint)?;

    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt_layer = match cfg.log_format {
        LogFormat::Text => fmt.with_filter(env_filter).boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(env_filter)
            .boxed(),
    };
    let layers = vec![fmt_layer, otel_layer(&provider, service_name)];

    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_err()
    {
        // Someone (an earlier init, a test harness) owns the global subscriber already.
        let _ = provider.shutdown();
        return Ok(TelemetryGuard::noop());
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

/// For tests: log lines go to the test harness's captured output (`RUST_LOG`, default
/// `info`) and spans get real trace ids, so trace propagation can be asserted. Safe to call
/// from every test; only the first call in a process installs anything, and nothing is
/// installed if another global subscriber got there first.
pub fn init_for_tests() {
    static INIT: Once = Once::new();
    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
    INIT.call_once(|| {
        let provider = PROVIDER.get_or_init(|| SdkTracerProvider::builder().build());
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let fmt = tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_filter(filter)
            .boxed();
        let _ = tracing_subscriber::registry()
            .with(vec![fmt, otel_layer(provider, "test")])
            .try_init();
    });
}

/// An SDK provider, exporting over OTLP/HTTP (protobuf) in batches when an endpoint is given.
fn tracer_provider(
    service_name: &str,
    otlp_endpoint: Option<&str>,
) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_endpoint(endpoint))
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// The OpenTelemetry layer. It has its own INFO filter, independent of `RUST_LOG`, so that
/// quieting the logs does not disable the spans that carry trace context between services.
fn otel_layer(
    provider: &SdkTracerProvider,
    service_name: &str,
) -> Box<dyn Layer<Registry> + Send + Sync> {
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service_name.to_owned()))
        .with_filter(LevelFilter::INFO)
        .boxed()
}

/// A programmatic OTLP endpoint is used verbatim by the exporter, so add the signal path the
/// way `OTEL_EXPORTER_OTLP_ENDPOINT` would get it.
fn traces_endpoint(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// The W3C `traceparent` of the current span, or an empty string when there is no valid
/// trace context (no span, or no OpenTelemetry layer installed).
pub fn current_traceparent() -> String {
    traceparent_of(&tracing::Span::current())
}

/// The W3C `traceparent` of `span`, or an empty string (see [`current_traceparent`]).
pub fn traceparent_of(span: &tracing::Span) -> String {
    let mut carrier: HashMap<String, String> = HashMap::new();
    // The wire format is W3C whatever global propagator is set, so use it directly: this
    // also works in processes (tests) that never called `init`.
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT).unwrap_or_default()
}

/// The W3C `traceparent` of `span`; a fresh random one when no tracer is installed, so that
/// every task has a trace id all the same.
pub fn traceparent_or_fresh(span: &tracing::Span) -> String {
    let tp = traceparent_of(span);
    if trace_id_of(&tp).is_some() {
        return tp;
    }
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span_id = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span_id}-01")
}

/// The 32-hex-digit trace id of a `traceparent`, if it is well formed and not all zeros.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let well_formed = hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && hex(span_id, 16)
        && hex(flags, 2)
        // Version 00 has exactly four fields; later versions may append more.
        && (version != "00" || parts.next().is_none());
    if !well_formed || trace_id.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(trace_id.to_ascii_lowercase())
}

/// Makes `span` a child of the remote span described by `traceparent`.
///
/// Must be called before the span is first entered. A missing or malformed `traceparent`
/// leaves the span as the root of a new trace.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    if trace_id_of(traceparent).is_none() {
        return;
    }
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.trim().to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if let Err(err) = span.set_parent(parent) {
        tracing::debug!(%err, "cannot attach the remote trace context to the span");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` with a thread-local subscriber that has the OpenTelemetry layer, so tests do
    /// not depend on (or fight over) the global subscriber.
    fn with_otel<T>(f: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry().with(otel_layer(&provider, "test"));
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn traceparent_round_trips_through_a_child_span() {
        with_otel(|| {
            let parent = tracing::info_span!("sender");
            let traceparent = parent.in_scope(current_traceparent);
            let parent_trace = trace_id_of(&traceparent).expect("a valid traceparent");
            assert_ne!(parent_trace, "0".repeat(32));

            // A fresh root span (not nested in `parent`) that takes its parent from the header.
            let child = tracing::info_span!(parent: None, "receiver");
            set_parent_from_traceparent(&child, &traceparent);
            let child_traceparent = traceparent_of(&child);
            assert_eq!(trace_id_of(&child_traceparent), Some(parent_trace));
            assert_ne!(
                child_traceparent, traceparent,
                "the child has its own span id"
            );
        });
    }

    #[test]
    fn unrelated_root_spans_get_different_traces() {
        with_otel(|| {
            let a = traceparent_of(&tracing::info_span!(parent: None, "a"));
            let b = traceparent_of(&tracing::info_span!(parent: None, "b"));
            assert_ne!(trace_id_of(&a), trace_id_of(&b));
        });
    }

    #[test]
    fn a_bad_traceparent_leaves_the_span_a_root() {
        with_otel(|| {
            let sender = tracing::info_span!("sender");
            let sender_trace = trace_id_of(&sender.in_scope(current_traceparent)).unwrap();
            // Made while another span is current, as a consumer's span is: the garbage must
            // neither join that trace nor leave the span without a valid one.
            let span = sender.in_scope(|| {
                let span = tracing::info_span!(parent: None, "receiver");
                set_parent_from_traceparent(&span, "garbage");
                span
            });
            let tp = traceparent_of(&span);
            let trace = trace_id_of(&tp).unwrap_or_else(|| panic!("not a traceparent: {tp}"));
            assert_eq!(trace.len(), 32, "{tp}");
            assert!(trace.bytes().all(|b| b.is_ascii_hexdigit()), "{tp}");
            assert_ne!(trace, "0".repeat(32), "{tp}");
            assert_ne!(trace, sender_trace, "a root has a trace of its own: {tp}");
            assert!(tp.starts_with("00-") && tp.ends_with("-01"), "{tp}");
        });
    }

    #[test]
    fn no_subscriber_means_no_traceparent() {
        let span = tracing::info_span!("lonely");
        assert_eq!(span.in_scope(current_traceparent), "");
    }

    #[test]
    fn trace_id_of_checks_the_format() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id_of(tp).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id_of("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn endpoint_gets_the_traces_path_once() {
        assert_eq!(traces_endpoint("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_endpoint("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_endpoint("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn log_format_parses() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("Text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
