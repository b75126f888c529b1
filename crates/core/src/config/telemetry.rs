//! The `telemetry` section (log level and format, trace export) and the OTLP export settings
//! shared by `telemetry.otlp` and `decision_log.otlp`, each problem naming its own section. Checks
//! the endpoint's shape only; it must not connect anywhere (the server's exporters do).

use std::time::Duration;

use serde_saphyr::Spanned;

use super::defaults::*;
use super::fields::positive;
use super::model::*;
use super::problems::Collected;
use super::raw::*;

pub(super) fn telemetry(raw: &RawTelemetry, problems: &mut Collected) -> TelemetryConfig {
    let level = match &raw.log.level {
        None => DEFAULT_LOG_LEVEL.to_string(),
        Some(l) => {
            if l.value.trim().is_empty()
                || tracing_subscriber::EnvFilter::try_new(&l.value).is_err()
            {
                problems.at(
                    l,
                    format!(
                        "telemetry.log.level `{}` is not a log filter (e.g. `info` or `warn,cedargate=debug`)",
                        l.value
                    ),
                );
            }
            l.value.clone()
        }
    };
    let format = match raw.log.format.as_ref() {
        None => LogFormat::Text,
        Some(f) => match f.value.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                problems.at(
                    f,
                    format!("telemetry.log.format must be `text` or `json`, not `{other}`"),
                );
                LogFormat::Text
            }
        },
    };
    TelemetryConfig {
        log: LogConfig { level, format },
        otlp: raw
            .otlp
            .as_ref()
            .map(|o| otlp(o, OtlpSection::Telemetry, problems)),
    }
}

/// Which `otlp` section is being read: traces, or decision records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OtlpSection {
    /// `telemetry.otlp`: Check spans.
    Telemetry,
    /// `decision_log.otlp`: decision records as OTLP logs.
    DecisionLog,
}

pub(super) fn otlp(
    spanned: &Spanned<RawOtlp>,
    section: OtlpSection,
    problems: &mut Collected,
) -> OtlpConfig {
    let (prefix, default_queue, default_delay) = match section {
        OtlpSection::Telemetry => (
            "telemetry.otlp",
            DEFAULT_OTLP_QUEUE,
            DEFAULT_OTLP_BATCH_DELAY_MS,
        ),
        OtlpSection::DecisionLog => (
            "decision_log.otlp",
            DEFAULT_DECISION_LOG_OTLP_QUEUE,
            DEFAULT_DECISION_LOG_OTLP_BATCH_DELAY_MS,
        ),
    };
    let raw = &spanned.value;
    let endpoint = raw.endpoint.value.trim_end_matches('/').to_string();
    if let Err(why) = check_otlp_endpoint(&endpoint) {
        problems.at(
            &raw.endpoint,
            format!("{prefix}.endpoint `{}` {why}", raw.endpoint.value),
        );
    }
    let sampling_ratio = match &raw.sampling_ratio {
        None => DEFAULT_OTLP_SAMPLING_RATIO,
        Some(r) if section == OtlpSection::DecisionLog => {
            problems.at(
                r,
                "decision_log.otlp.sampling_ratio: every decision is exported; sampling is for traces (telemetry.otlp)",
            );
            DEFAULT_OTLP_SAMPLING_RATIO
        }
        Some(r) if !(0.0..=1.0).contains(&r.value) => {
            problems.at(
                r,
                format!(
                    "{prefix}.sampling_ratio {} must be between 0 and 1",
                    r.value
                ),
            );
            DEFAULT_OTLP_SAMPLING_RATIO
        }
        Some(r) => r.value,
    };
    let service_name = match &raw.service_name {
        None => DEFAULT_OTLP_SERVICE_NAME.to_string(),
        Some(n) if n.value.trim().is_empty() => {
            problems.at(n, format!("{prefix}.service_name must not be empty"));
            DEFAULT_OTLP_SERVICE_NAME.to_string()
        }
        Some(n) => n.value.clone(),
    };
    if raw.resource_attributes.keys().any(|k| k.trim().is_empty()) {
        problems.at(
            spanned,
            format!("{prefix}.resource_attributes has an empty name"),
        );
    }
    OtlpConfig {
        endpoint,
        sampling_ratio,
        service_name,
        resource_attributes: raw.resource_attributes.clone(),
        timeout: Duration::from_millis(positive(
            raw.timeout_ms.as_ref(),
            DEFAULT_OTLP_TIMEOUT_MS,
            &format!("{prefix}.timeout_ms"),
            problems,
        )),
        queue: positive(
            raw.queue.as_ref(),
            default_queue,
            &format!("{prefix}.queue"),
            problems,
        ),
        batch_delay: Duration::from_millis(positive(
            raw.batch_delay_ms.as_ref(),
            default_delay,
            &format!("{prefix}.batch_delay_ms"),
            problems,
        )),
    }
}

/// An OTLP/gRPC endpoint is `http(s)://host[:port]`, nothing after the authority: a path such
/// as `/v1/traces` belongs to OTLP/HTTP, which cedargate does not speak.
fn check_otlp_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err("needs a host (and port), e.g. http://127.0.0.1:4317");
    }
    if rest.contains(['/', '?', '#']) {
        return Err(
            "must not have a path: OTLP/gRPC (port 4317) is spoken, not OTLP/HTTP (/v1/traces)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fields::problems;
    use std::path::Path;

    #[test]
    fn telemetry_defaults_to_text_logs_at_info_and_no_export() {
        let config = match Config::parse("{}", Path::new("c.yaml")) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(config.telemetry.log.level, DEFAULT_LOG_LEVEL);
        assert_eq!(config.telemetry.log.format, LogFormat::Text);
        assert_eq!(config.telemetry.otlp, None);
    }

    #[test]
    fn an_otlp_section_gets_its_defaults() {
        let yaml = "\
telemetry:
  log: { level: 'warn,cedargate=debug', format: json }
  otlp:
    endpoint: https://otel.example.com:4317/
    resource_attributes: { deployment.environment: prod }
";
        let config = match Config::parse(yaml, Path::new("c.yaml")) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(config.telemetry.log.format, LogFormat::Json);
        let otlp = config.telemetry.otlp.unwrap_or_else(|| unreachable!());
        assert_eq!(otlp.endpoint, "https://otel.example.com:4317");
        assert_eq!(otlp.sampling_ratio, DEFAULT_OTLP_SAMPLING_RATIO);
        assert_eq!(otlp.service_name, DEFAULT_OTLP_SERVICE_NAME);
        assert_eq!(otlp.queue, DEFAULT_OTLP_QUEUE);
        assert_eq!(otlp.timeout, Duration::from_millis(DEFAULT_OTLP_TIMEOUT_MS));
        assert_eq!(
            otlp.resource_attributes.get("deployment.environment"),
            Some(&"prod".to_string())
        );
    }

    #[test]
    fn decision_log_otlp_is_off_by_default_and_has_its_own_defaults() {
        let off = match Config::parse("{}", Path::new("c.yaml")) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(off.decision_log.otlp, None);
        let yaml = "decision_log:\n  output: off\n  otlp: { endpoint: http://collector:4317 }\n";
        let config = match Config::parse(yaml, Path::new("c.yaml")) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(config.decision_log.output, LogOutput::Off);
        let otlp = config.decision_log.otlp.unwrap_or_else(|| unreachable!());
        assert_eq!(otlp.endpoint, "http://collector:4317");
        assert_eq!(otlp.queue, DEFAULT_DECISION_LOG_OTLP_QUEUE);
        assert_eq!(
            otlp.batch_delay,
            Duration::from_millis(DEFAULT_DECISION_LOG_OTLP_BATCH_DELAY_MS)
        );
        assert_eq!(otlp.sampling_ratio, 1.0, "every decision is exported");
        // Trace export stays off: the two sections are independent.
        assert_eq!(config.telemetry.otlp, None);
    }

    #[test]
    fn decision_log_otlp_problems_name_their_section() {
        let yaml = "\
decision_log:
  otlp:
    endpoint: http://collector:4318/v1/logs
    sampling_ratio: 0.5
    queue: 0
";
        let got = problems(yaml);
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].starts_with("3:15 decision_log.otlp.endpoint `http://collector:4318/v1/logs` must not have a path"),
            "{got:#?}"
        );
        assert!(
            got[1].starts_with("4:21 decision_log.otlp.sampling_ratio: every decision is exported"),
            "{got:#?}"
        );
        assert!(
            got[2].starts_with("5:12 decision_log.otlp.queue must be at least 1"),
            "{got:#?}"
        );
    }

    #[test]
    fn telemetry_problems_are_reported_with_their_positions() {
        let yaml = "\
telemetry:
  log:
    level: 'info,[bad'
    format: xml
  otlp:
    endpoint: http://collector:4318/v1/traces
    sampling_ratio: 1.5
    service_name: ' '
    queue: 0
    timeout_ms: 0
";
        let got = problems(yaml);
        for needle in [
            "3:12 telemetry.log.level `info,[bad` is not a log filter",
            "4:13 telemetry.log.format must be `text` or `json`, not `xml`",
            "6:15 telemetry.otlp.endpoint `http://collector:4318/v1/traces` must not have a path",
            "7:21 telemetry.otlp.sampling_ratio 1.5 must be between 0 and 1",
            "8:19 telemetry.otlp.service_name must not be empty",
            "9:12 telemetry.otlp.queue must be at least 1",
            "10:17 telemetry.otlp.timeout_ms must be at least 1",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(needle)),
                "{needle} missing in {got:#?}"
            );
        }
        assert_eq!(got.len(), 7, "{got:#?}");
        for bad in ["collector:4317", "grpc://c:4317", "http://", "http://a b"] {
            assert!(check_otlp_endpoint(bad).is_err(), "{bad}");
        }
        assert!(check_otlp_endpoint("http://[::1]:4317").is_ok());
    }
}
