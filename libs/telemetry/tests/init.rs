//! `init` owns the process-wide subscriber, so it is tested in its own test binary.

use berth_telemetry::{
    LogFormat, TelemetryConfig, current_traceparent, init, set_parent_from_traceparent, trace_id_of,
};

#[test]
fn init_twice_is_harmless_and_spans_get_trace_ids() {
    let cfg = TelemetryConfig {
        log_format: LogFormat::Json,
        otlp_endpoint: None,
    };
    let first = init("telemetry-test", &cfg).expect("first init");
    let second = init("telemetry-test", &TelemetryConfig::default()).expect("second init");
    drop(second);

    let sender = tracing::info_span!("sender");
    let traceparent = sender.in_scope(current_traceparent);
    let trace_id = trace_id_of(&traceparent).expect("spans have a trace id after init");

    let receiver = tracing::info_span!(parent: None, "receiver");
    set_parent_from_traceparent(&receiver, &traceparent);
    assert_eq!(
        trace_id_of(&receiver.in_scope(current_traceparent)),
        Some(trace_id)
    );
    drop(first);
}

#[test]
fn an_otlp_endpoint_builds_an_exporter() {
    // Nothing listens there; building must still work and dropping the guard must not hang
    // for long (the export fails and is logged by the SDK).
    let cfg = TelemetryConfig {
        log_format: LogFormat::Text,
        otlp_endpoint: Some("http://127.0.0.1:9".into()),
    };
    let guard = init("telemetry-test-otlp", &cfg).expect("init with exporter");
    drop(guard);
}
