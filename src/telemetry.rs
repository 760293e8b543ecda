//! Traces (SPEC §15): one span per inbound request and one per delivery
//! attempt, exported over OTLP/HTTP (protobuf) to `telemetry.otlp`.
//!
//! How a trace goes through the daemon:
//! - an inbound request (a trigger or `POST /v1/events`) gets a server span,
//!   the child of the request's W3C `traceparent` when it has a valid one,
//!   else the root of a new trace;
//! - the `traceparent` naming that span is stored with each of the event's
//!   jobs (`NewJob::traceparent`), so it survives the queue, a restart and
//!   the hop to another replica;
//! - each delivery attempt gets a client span, the child of the stored
//!   context, and the request it sends carries a `traceparent` naming the
//!   attempt span, so the receiver's own spans join the same trace.
//!
//! Off (no `telemetry:`) the daemon holds no [`Telemetry`]: no span is
//! made, no header is read, stored or sent, and the only cost is a check of
//! an `Option` per request and per attempt.
//!
//! Spans are exported by the SDK's batch processor, a task on the daemon's
//! tokio runtime, posting with a reqwest client of the daemon's own
//! (`send::plain_client`). [`Telemetry::shutdown`] exports what is left
//! when the daemon stops. The direct OpenTelemetry API is used rather than
//! `tracing` spans bridged by tracing-opentelemetry: every span here has an
//! explicit parent read from a header or the queue, never the current one,
//! and an off daemon then builds no span at all.

use std::time::Duration;

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};

use crate::config::{Otlp, OtlpProtocol};

/// Longest one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The W3C header, in and out.
pub const TRACEPARENT: &str = "traceparent";

/// The trace exporter of a running daemon (present only while traces are
/// on). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Telemetry {
    /// Start exporting to `otlp`. Must run inside the tokio runtime: the
    /// batch processor is a task on it.
    pub fn start(otlp: &Otlp) -> Result<Telemetry, String> {
        let client = crate::send::plain_client(EXPORT_TIMEOUT).map_err(|e| e.to_string())?;
        let protocol = match otlp.protocol {
            OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(otlp.traces_url.as_str())
            .with_protocol(protocol)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot set up the trace exporter (telemetry.otlp): {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter, Tokio).build())
            .with_resource(
                Resource::builder()
                    .with_service_name("hookyard")
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("hookyard");
        Ok(Telemetry { provider, tracer })
    }

    /// The server span of an inbound request: `name` (e.g. `trigger shop`),
    /// `route` the route it matched (`/hooks/{trigger}`, `/v1/events`), the
    /// child of the request's `traceparent` when it has a valid one.
    pub fn inbound(
        &self,
        name: String,
        method: &str,
        route: &'static str,
        headers: &HeaderMap,
    ) -> InboundSpan {
        let parent = TraceContextPropagator::new().extract_with_context(
            &Context::new(),
            &opentelemetry_http::HeaderExtractor(headers),
        );
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("http.route", route),
            ])
            .start_with_context(&self.tracer, &parent);
        InboundSpan { span }
    }

    /// The client span of one delivery attempt, the child of `stored` (the
    /// inbound span's `traceparent`, kept with the job), or the root of a
    /// new trace for a job without one (queued while traces were off, or a
    /// replay).
    pub fn attempt(&self, stored: Option<&str>, about: Attempt<'_>) -> AttemptSpan {
        let parent = match stored {
            Some(tp) => TraceContextPropagator::new()
                .extract_with_context(&Context::new(), &OneHeader(Some(tp.to_owned()))),
            None => Context::new(),
        };
        let span = self
            .tracer
            .span_builder(format!("deliver {}", about.target))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("hookyard.target", about.target.to_owned()),
                KeyValue::new("hookyard.event_id", about.event_id.to_owned()),
                KeyValue::new("hookyard.delivery_id", about.delivery_id.to_owned()),
                KeyValue::new("hookyard.attempt", i64::from(about.attempt)),
            ])
            .start_with_context(&self.tracer, &parent);
        AttemptSpan { span }
    }

    /// Export the spans still buffered and stop exporting. Waits at most
    /// `within` (a collector that does not answer must not hold the
    /// daemon's stop); calling it again does nothing.
    pub async fn shutdown(&self, within: Duration) {
        let provider = self.provider.clone();
        // The SDK blocks its caller until the batch task (on this runtime)
        // has exported: so block a thread of the blocking pool, not a
        // runtime worker.
        let done = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(within, done).await {
            Ok(Ok(Ok(()) | Err(OTelSdkError::AlreadyShutdown))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("the last spans were not exported: {e}"),
            Ok(Err(e)) => tracing::warn!("the last spans were not exported: {e}"),
            Err(_) => tracing::warn!("the last spans were not exported within {within:?}"),
        }
    }
}

/// What an attempt span says about its delivery.
pub struct Attempt<'a> {
    /// `Target::label()`.
    pub target: &'a str,
    pub event_id: &'a str,
    pub delivery_id: &'a str,
    /// The attempt's number, from 1.
    pub attempt: u32,
}

/// An inbound request's span, open until [`InboundSpan::end`] (or drop).
pub struct InboundSpan {
    span: Span,
}

impl InboundSpan {
    /// The `traceparent` naming this span, stored with the event's jobs.
    pub fn traceparent(&self) -> Option<String> {
        traceparent(self.span.span_context())
    }

    /// Name the trigger the request was for.
    pub fn trigger(&mut self, id: &str) {
        self.span
            .set_attribute(KeyValue::new("hookyard.trigger", id.to_owned()));
    }

    /// Name the event (or, for a batch, the events) the request stored.
    pub fn events<'a>(&mut self, ids: impl IntoIterator<Item = (&'a str, bool)>) {
        let (ids, duplicates): (Vec<_>, Vec<_>) = ids
            .into_iter()
            .map(|(id, duplicate)| (opentelemetry::StringValue::from(id.to_owned()), duplicate))
            .unzip();
        match (ids.as_slice(), duplicates.as_slice()) {
            ([], _) => {}
            ([id], [duplicate]) => {
                self.span
                    .set_attribute(KeyValue::new("hookyard.event_id", id.clone()));
                self.span
                    .set_attribute(KeyValue::new("hookyard.duplicate", *duplicate));
            }
            _ => self.span.set_attribute(KeyValue::new(
                "hookyard.event_ids",
                opentelemetry::Value::Array(ids.into()),
            )),
        }
    }

    /// End with the answer's status (a 5xx marks the span as failed; a 4xx
    /// is the client's error, not the server's).
    pub fn end(mut self, status: u16, error_code: Option<&str>) {
        self.span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if let Some(code) = error_code {
            self.span
                .set_attribute(KeyValue::new("error.type", code.to_owned()));
        }
        if status >= 500 {
            self.span.set_status(Status::error(
                error_code.map(str::to_owned).unwrap_or_default(),
            ));
        }
        self.span.end();
    }
}

/// A delivery attempt's span, open until [`AttemptSpan::end`] (or drop).
pub struct AttemptSpan {
    span: Span,
}

impl AttemptSpan {
    /// The `traceparent` the attempt's request carries, naming this span.
    pub fn traceparent(&self) -> Option<String> {
        traceparent(self.span.span_context())
    }

    /// The request's method, once rendered.
    pub fn method(&mut self, method: &str) {
        self.span
            .set_attribute(KeyValue::new("http.request.method", method.to_owned()));
    }

    /// End with the attempt's outcome (`success`, `retry`, `dead_letter`,
    /// `test`), the response status if one came, and the error if any.
    pub fn end(mut self, outcome: &'static str, status: Option<u16>, error: Option<&str>) {
        self.span
            .set_attribute(KeyValue::new("hookyard.outcome", outcome));
        if let Some(status) = status {
            self.span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if let Some(error) = error {
            self.span.set_status(Status::error(error.to_owned()));
        }
        self.span.end();
    }
}

/// `00-<trace id>-<span id>-<flags>` for `span` (W3C Trace Context), as
/// the propagator writes it; `None` for an invalid context.
fn traceparent(span: &SpanContext) -> Option<String> {
    let cx = Context::new().with_remote_span_context(span.clone());
    let mut out = OneHeader(None);
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    out.0
}

/// The `traceparent` header alone, as the propagator reads and writes it
/// (a stored context has no `tracestate`).
struct OneHeader(Option<String>);

impl Extractor for OneHeader {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0.as_deref()).flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

impl Injector for OneHeader {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_is_written_and_read_the_w3c_way() {
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        assert_eq!(traceparent(&sc).as_deref(), Some(TP));
        assert_eq!(TP.len(), 55);
        let cx = TraceContextPropagator::new()
            .extract_with_context(&Context::new(), &OneHeader(Some(TP.to_owned())));
        assert_eq!(cx.span().span_context(), &sc);
        // Invalid ones are ignored: the span becomes a new trace's root.
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "not a traceparent",
        ] {
            let cx = TraceContextPropagator::new()
                .extract_with_context(&Context::new(), &OneHeader(Some(bad.to_owned())));
            assert!(!cx.span().span_context().is_valid(), "{bad}");
        }
        assert_eq!(traceparent(&SpanContext::empty_context()), None);
    }
}
