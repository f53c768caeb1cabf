//! OpenTelemetry traces over OTLP/HTTP, when `--otlp-endpoint` is set: one trace per event,
//! a `publish` span and one `attempt` span per HTTP attempt under it. The trace and publish
//! span ids are derived from the event id, so attempts made after a restart, or by another
//! node, still join their event's trace without any context being stored.

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// The most spans one export carries; and how often a partial batch goes out.
const BATCH: usize = 512;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Spans waiting for export beyond this are dropped (and counted in the log): tracing never
/// holds up delivery.
const QUEUE: usize = 16_384;

/// Where spans go; cheap to clone. Without an endpoint it does nothing.
#[derive(Clone, Default)]
pub(crate) struct Traces {
    spans: Option<mpsc::Sender<SpanData>>,
}

/// One finished attempt, as its span records it.
pub(crate) struct AttemptSpan<'a> {
    pub event_id: &'a str,
    pub delivery_id: &'a str,
    pub subscription_id: &'a str,
    pub attempt: u32,
    /// How long it took, up to now.
    pub latency: Duration,
    pub status_code: Option<u16>,
    pub error: Option<&'a str>,
    /// What the engine decided: SUCCEEDED, PENDING (a retry) or FAILED.
    pub decided: &'static str,
}

fn digest(kind: &str, event_id: &str) -> [u8; 32] {
    let mut d = Sha256::new();
    d.update(kind);
    d.update(b":");
    d.update(event_id);
    d.finalize().into()
}

fn trace_id(event_id: &str) -> TraceId {
    let d = digest("trace", event_id);
    TraceId::from_bytes(d[..16].try_into().unwrap_or_default())
}

fn publish_span_id(event_id: &str) -> SpanId {
    let d = digest("publish", event_id);
    SpanId::from_bytes(d[..8].try_into().unwrap_or_default())
}

fn attempt_span_id(delivery_id: &str, attempt: u32) -> SpanId {
    let d = digest(&format!("attempt-{attempt}"), delivery_id);
    SpanId::from_bytes(d[..8].try_into().unwrap_or_default())
}

impl Traces {
    /// Exports to `endpoint` (e.g. `http://collector:4318`; spans go to `/v1/traces`).
    pub(crate) fn start(endpoint: &str) -> Result<Traces, String> {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("OTLP exporter: {e}"))?;
        exporter.set_resource(&Resource::builder_empty().with_service_name("smile").build());
        let (spans, mut queue) = mpsc::channel::<SpanData>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let mut every = tokio::time::interval(FLUSH_EVERY);
            loop {
                tokio::select! {
                    span = queue.recv() => match span {
                        Some(span) => {
                            batch.push(span);
                            if batch.len() < BATCH {
                                continue;
                            }
                        }
                        None => {
                            export(&exporter, &mut batch).await;
                            return;
                        }
                    },
                    _ = every.tick() => {}
                }
                export(&exporter, &mut batch).await;
            }
        });
        Ok(Traces { spans: Some(spans) })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.spans.is_some()
    }

    fn emit(&self, span: SpanData) {
        if let Some(spans) = &self.spans
            && spans.try_send(span).is_err()
        {
            tracing::debug!("the span queue is full; a span is dropped");
        }
    }

    /// The root span of an event's trace: from the publish call to its commit.
    pub(crate) fn publish(
        &self,
        event_id: &str,
        event_type: &str,
        scope: (&str, &str),
        started: SystemTime,
        deliveries: usize,
    ) {
        if !self.enabled() {
            return;
        }
        let attributes = vec![
            KeyValue::new("smile.event.id", event_id.to_owned()),
            KeyValue::new("smile.event.type", event_type.to_owned()),
            KeyValue::new("smile.tenant", scope.0.to_owned()),
            KeyValue::new("smile.mode", scope.1.to_owned()),
            KeyValue::new("smile.deliveries", deliveries as i64),
        ];
        let context = context(trace_id(event_id), publish_span_id(event_id));
        let times = (started, SystemTime::now());
        self.emit(span(context, SpanId::INVALID, "publish", SpanKind::Producer, times, attributes, Status::Ok));
    }

    /// One HTTP attempt, under its event's publish span.
    pub(crate) fn attempt(&self, a: AttemptSpan<'_>) {
        if !self.enabled() {
            return;
        }
        let mut attributes = vec![
            KeyValue::new("smile.event.id", a.event_id.to_owned()),
            KeyValue::new("smile.delivery.id", a.delivery_id.to_owned()),
            KeyValue::new("smile.subscription.id", a.subscription_id.to_owned()),
            KeyValue::new("smile.attempt", i64::from(a.attempt)),
            KeyValue::new("smile.delivery.status", a.decided),
        ];
        if let Some(code) = a.status_code {
            attributes.push(KeyValue::new("http.response.status_code", i64::from(code)));
        }
        let status = match (a.status_code, a.error) {
            (Some(code), _) if (200..300).contains(&code) => Status::Ok,
            (_, Some(error)) => Status::error(error.to_owned()),
            _ => Status::error("no answer"),
        };
        let context = context(trace_id(a.event_id), attempt_span_id(a.delivery_id, a.attempt));
        let parent = publish_span_id(a.event_id);
        let end = SystemTime::now();
        let times = (end - a.latency, end);
        self.emit(span(context, parent, "attempt", SpanKind::Client, times, attributes, status));
    }
}

async fn export(exporter: &opentelemetry_otlp::SpanExporter, batch: &mut Vec<SpanData>) {
    if batch.is_empty() {
        return;
    }
    if let Err(error) = exporter.export(std::mem::take(batch)).await {
        tracing::warn!(%error, "could not export spans over OTLP; they are dropped");
    }
}

fn context(trace: TraceId, span: SpanId) -> SpanContext {
    SpanContext::new(trace, span, TraceFlags::SAMPLED, false, TraceState::default())
}

fn span(
    context: SpanContext,
    parent: SpanId,
    name: &'static str,
    kind: SpanKind,
    (start, end): (SystemTime, SystemTime),
    attributes: Vec<KeyValue>,
    status: Status,
) -> SpanData {
    SpanData {
        span_context: context,
        parent_span_id: parent,
        parent_span_is_remote: false,
        span_kind: kind,
        name: name.into(),
        start_time: start,
        end_time: end,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: InstrumentationScope::builder("smile-delivery").build(),
    }
}
