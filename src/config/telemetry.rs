//! `telemetry:`, traces exported over OTLP (SPEC §15): the raw section, its
//! check and its compiled form, kept together because they are small and
//! only the daemon's start reads them.
//!
//! `endpoint` is the collector's BASE URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is in every OpenTelemetry SDK: spans are posted to
//! `<endpoint>/v1/traces`. Written with a path already ending in
//! `/v1/traces` it is refused, since posting to `/v1/traces/v1/traces` would
//! fail at the first export rather than at load.

use schemars::JsonSchema;
use serde::Deserialize;
use url::Url;

use super::leaf::Ctx;
use super::load::Item;
use super::node::Sp;

/// Traces: one span per inbound request and per delivery attempt, exported
/// over OTLP. Off when absent. Changing it needs a restart.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Telemetry")]
pub struct RawTelemetry {
    /// Export traces to an OpenTelemetry collector over OTLP.
    pub otlp: Option<RawOtlp>,
}

/// The OTLP exporter.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Otlp")]
pub struct RawOtlp {
    /// The collector's base URL, e.g. `http://127.0.0.1:4318` (as
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`); spans are posted to
    /// `<endpoint>/v1/traces`.
    pub endpoint: Sp<String>,
    /// `http/protobuf` (the default, and the only one supported).
    pub protocol: Option<OtlpProtocol>,
}

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
pub enum OtlpProtocol {
    /// Protobuf over HTTP POST.
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// `telemetry:` compiled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Telemetry {
    /// The OTLP exporter; `None`: tracing is off.
    pub otlp: Option<Otlp>,
}

/// Where spans go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Otlp {
    /// The full URL spans are posted to: `<endpoint>/v1/traces`.
    pub traces_url: Url,
    pub protocol: OtlpProtocol,
}

/// The path OTLP/HTTP appends to a base endpoint for traces.
const TRACES_PATH: &str = "v1/traces";

pub(super) fn compile(item: Option<&Item<RawTelemetry>>, ctx: &mut Ctx<'_>) -> Telemetry {
    let Some(raw) = item.and_then(|i| i.value.otlp.as_ref()) else {
        return Telemetry::default();
    };
    let endpoint = &raw.endpoint;
    if ctx.skip(endpoint) {
        // `validate --no-env` with a `${VAR}` left in: checked when run.
        return Telemetry::default();
    }
    match traces_url(&endpoint.value) {
        Ok(traces_url) => Telemetry {
            otlp: Some(Otlp {
                traces_url,
                protocol: raw.protocol.unwrap_or_default(),
            }),
        },
        Err(why) => {
            ctx.error(
                &endpoint.pos,
                format!(
                    "invalid telemetry.otlp.endpoint `{}`: {why}",
                    endpoint.value
                ),
            );
            Telemetry::default()
        }
    }
}

/// `<endpoint>/v1/traces` for a base endpoint, or why it is not one.
fn traces_url(endpoint: &str) -> Result<Url, String> {
    let base = Url::parse(endpoint)
        .map_err(|e| format!("{e}; write the collector's base URL, e.g. http://127.0.0.1:4318"))?;
    if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
        return Err(
            "it must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:4318".into(),
        );
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err("a base URL has no query or fragment".into());
    }
    if base.path().trim_end_matches('/').ends_with("/v1/traces") {
        return Err(format!(
            "give the base URL without `/{TRACES_PATH}`: spans are posted to <endpoint>/{TRACES_PATH}"
        ));
    }
    let path = format!("{}/{TRACES_PATH}", base.path().trim_end_matches('/'));
    let mut url = base;
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{LoadOptions, load_str};

    fn load(text: &str) -> Result<crate::config::Config, String> {
        let opts = LoadOptions {
            no_env: false,
            env: Some(Default::default()),
        };
        load_str(text, Path::new("c.yaml"), opts).map_err(|e| e.to_string())
    }

    #[test]
    fn the_endpoint_is_a_base_url_and_spans_go_to_v1_traces() {
        for (endpoint, posted) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
            (
                "https://otel.example.com/ingest/",
                "https://otel.example.com/ingest/v1/traces",
            ),
        ] {
            let text = format!("telemetry: {{ otlp: {{ endpoint: \"{endpoint}\" }} }}\n");
            let otlp = load(&text).unwrap().telemetry.otlp.unwrap();
            assert_eq!(otlp.traces_url.as_str(), posted);
            assert_eq!(otlp.protocol, OtlpProtocol::HttpProtobuf);
        }
    }

    #[test]
    fn off_unless_configured() {
        assert_eq!(load("{}\n").unwrap().telemetry, Telemetry::default());
        assert_eq!(load("telemetry: {}\n").unwrap().telemetry.otlp, None);
    }

    #[test]
    fn bad_endpoints_and_protocols_are_errors_at_their_position() {
        for (endpoint, says) in [
            ("127.0.0.1:4318", "e.g. http://"),
            ("not a url", "base URL"),
            ("ftp://127.0.0.1:4318", "http:// or https://"),
            ("http://127.0.0.1:4318/v1/traces", "without `/v1/traces`"),
            ("http://127.0.0.1:4318/?a=1", "no query"),
        ] {
            let text = format!("telemetry:\n  otlp: {{ endpoint: \"{endpoint}\" }}\n");
            let err = load(&text).unwrap_err();
            assert!(err.contains("c.yaml:2:"), "{endpoint}: {err}");
            assert!(err.contains(says), "{endpoint}: {err}");
        }
        let err =
            load("telemetry: { otlp: { endpoint: \"http://127.0.0.1:4318\", protocol: grpc } }\n")
                .unwrap_err();
        assert!(err.contains("http/protobuf"), "{err}");
        let err = load("telemetry: { otlp: {} }\n").unwrap_err();
        assert!(err.contains("endpoint"), "{err}");
    }
}
