//! Restart strategies: whether, and after how long, a failed job is
//! restarted. Pure: the caller does the waiting.

use std::time::Duration;

use crate::job::spec::{RestartSpec, RestartStrategyKind};

/// The wait before restart number `attempt` (1-based), or `None` when the
/// strategy allows no more restarts.
pub fn delay_before(spec: &RestartSpec, attempt: u32) -> Option<Duration> {
    if attempt == 0 || attempt > spec.attempts {
        return None;
    }
    match spec.strategy {
        RestartStrategyKind::None => None,
        RestartStrategyKind::FixedDelay => Some(spec.delay),
        RestartStrategyKind::ExponentialBackoff => {
            let factor = 2u32.saturating_pow(attempt - 1);
            Some(spec.delay.saturating_mul(factor).min(spec.max_delay))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(strategy: RestartStrategyKind) -> RestartSpec {
        RestartSpec { strategy, attempts: 4, delay: Duration::from_millis(100), max_delay: Duration::from_millis(350) }
    }

    #[test]
    fn strategies() {
        let fixed = spec(RestartStrategyKind::FixedDelay);
        assert_eq!(delay_before(&fixed, 1), Some(Duration::from_millis(100)));
        assert_eq!(delay_before(&fixed, 4), Some(Duration::from_millis(100)));
        assert_eq!(delay_before(&fixed, 5), None);
        let exp = spec(RestartStrategyKind::ExponentialBackoff);
        let waits: Vec<_> = (1..=5).map(|a| delay_before(&exp, a).map(|d| d.as_millis())).collect();
        assert_eq!(waits, [Some(100), Some(200), Some(350), Some(350), None]);
        assert_eq!(delay_before(&spec(RestartStrategyKind::None), 1), None);
    }
}
