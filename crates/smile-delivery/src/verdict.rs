//! The state machine: what one attempt means for its delivery and its subscription. Every
//! transition the engine makes is decided here, once, for both stores; the stores only
//! write it, and only over a delivery that may still change
//! ([`DeliveryStatus::may_change`]).

use crate::config::DeliveryConfig;
use crate::sender::AttemptResult;
use smile_core::timefmt;
use smile_store::{DeliveryStatus, SubscriptionEffect};

/// The decision about one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// SUCCEEDED, PENDING (retry at `next_attempt_ms`) or FAILED.
    pub status: DeliveryStatus,
    pub next_attempt_ms: Option<i64>,
    pub effect: SubscriptionEffect,
}

/// Decides what attempt number `attempt_no` of a delivery means, given the start of its
/// subscription's current run of failures.
pub(crate) fn decide(
    config: &DeliveryConfig,
    result: &AttemptResult,
    attempt_no: u32,
    failing_since: Option<i64>,
    now: i64,
) -> Verdict {
    if result.succeeded() {
        let effect = if failing_since.is_some() { SubscriptionEffect::Recovered } else { SubscriptionEffect::None };
        return Verdict { status: DeliveryStatus::Succeeded, next_attempt_ms: None, effect };
    }
    if result.status == Some(410) {
        let effect = SubscriptionEffect::Disable { reason: "the endpoint answered 410 Gone".into() };
        return Verdict { status: DeliveryStatus::Failed, next_attempt_ms: None, effect };
    }
    let since = failing_since.unwrap_or(now);
    if since <= now - config.disable_after.as_millis() as i64 {
        let reason = format!("failing without a success since {}", timefmt::format_ms(since));
        return Verdict {
            status: DeliveryStatus::Failed,
            next_attempt_ms: None,
            effect: SubscriptionEffect::Disable { reason },
        };
    }
    let effect = match failing_since {
        None => SubscriptionEffect::FailingSince(now),
        Some(_) => SubscriptionEffect::None,
    };
    match retry_at(config, result, attempt_no, now) {
        Some(next) => Verdict { status: DeliveryStatus::Pending, next_attempt_ms: Some(next), effect },
        None => Verdict { status: DeliveryStatus::Failed, next_attempt_ms: None, effect },
    }
}

/// When the next attempt is due: the schedule's wait with jitter, at least `Retry-After`.
fn retry_at(config: &DeliveryConfig, result: &AttemptResult, attempt_no: u32, now: i64) -> Option<i64> {
    let wait = config.retry_schedule.get(attempt_no.saturating_sub(1) as usize)?;
    let spread = 1.0 + config.jitter * (2.0 * rand::random::<f64>() - 1.0);
    let mut wait_ms = (wait.as_secs_f64() * spread * 1000.0) as i64;
    if let Some(after) = result.retry_after {
        wait_ms = wait_ms.max(after.min(config.max_retry_after).as_millis() as i64);
    }
    Some(now + wait_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result(status: Option<u16>) -> AttemptResult {
        AttemptResult { status, latency: Duration::ZERO, response_body: None, error: None, retry_after: None }
    }

    fn config() -> DeliveryConfig {
        DeliveryConfig {
            retry_schedule: vec![Duration::from_secs(1), Duration::from_secs(2)],
            jitter: 0.0,
            disable_after: Duration::from_secs(100),
            ..DeliveryConfig::default()
        }
    }

    #[test]
    fn success_ends_a_run_of_failures() {
        let v = decide(&config(), &result(Some(204)), 3, Some(5), 10);
        assert_eq!(v.status, DeliveryStatus::Succeeded);
        assert_eq!(v.effect, SubscriptionEffect::Recovered);
        assert_eq!(decide(&config(), &result(Some(200)), 1, None, 10).effect, SubscriptionEffect::None);
    }

    #[test]
    fn failures_retry_on_schedule_then_fail() {
        let v = decide(&config(), &result(Some(500)), 1, None, 10_000);
        assert_eq!((v.status, v.next_attempt_ms), (DeliveryStatus::Pending, Some(11_000)));
        assert_eq!(v.effect, SubscriptionEffect::FailingSince(10_000));
        let v = decide(&config(), &result(None), 2, Some(10_000), 12_000);
        assert_eq!(
            (v.status, v.next_attempt_ms, v.effect),
            (DeliveryStatus::Pending, Some(14_000), SubscriptionEffect::None)
        );
        let v = decide(&config(), &result(Some(500)), 3, Some(10_000), 15_000);
        assert_eq!((v.status, v.next_attempt_ms), (DeliveryStatus::Failed, None));
    }

    #[test]
    fn gone_and_failing_too_long_disable() {
        let v = decide(&config(), &result(Some(410)), 1, None, 0);
        assert!(matches!(v.effect, SubscriptionEffect::Disable { .. }));
        assert_eq!(v.status, DeliveryStatus::Failed);
        let v = decide(&config(), &result(Some(503)), 1, Some(0), 100_000);
        assert!(matches!(v.effect, SubscriptionEffect::Disable { .. }));
        let v = decide(&config(), &result(Some(503)), 1, Some(1), 100_000);
        assert_eq!(v.status, DeliveryStatus::Pending);
    }

    #[test]
    fn retry_after_stretches_the_wait() {
        let mut r = result(Some(429));
        r.retry_after = Some(Duration::from_secs(30));
        assert_eq!(decide(&config(), &r, 1, None, 0).next_attempt_ms, Some(30_000));
    }
}
