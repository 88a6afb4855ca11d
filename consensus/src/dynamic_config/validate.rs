//! Warden's rules on the timing values. Parsing adjusts values that break them the way
//! Patroni does (never refusing them); [`DynamicConfig::validate`] checks a config
//! built in code.

use super::{DynamicConfig, DynamicConfigError, MIN_TTL};

impl DynamicConfig {
    /// Brings the timing values into Warden's rules as Patroni does, returning one line
    /// per change (empty when nothing changed).
    pub fn adjust_timeouts(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        let mut raise = |key: &str, field: &mut u32, min: u32| {
            if *field < min {
                notes.push(format!(
                    "{key}={} is below the minimum; adjusted to {min}",
                    *field
                ));
                *field = min;
            }
        };
        raise("loop_wait", &mut self.loop_wait, 1);
        raise("retry_timeout", &mut self.retry_timeout, 1);
        raise("ttl", &mut self.ttl, MIN_TTL);
        raise(
            "synchronous_node_count",
            &mut self.synchronous_node_count,
            1,
        );
        let (ttl, loop_wait, retry) = (
            u64::from(self.ttl),
            u64::from(self.loop_wait),
            u64::from(self.retry_timeout),
        );
        if 1 + 2 * retry > ttl {
            // Even loop_wait 1 is too long: shorten the retries as well.
            self.loop_wait = 1;
            self.retry_timeout = (self.ttl - 1) / 2;
            notes.push(format!(
                "violated the rule loop_wait + 2*retry_timeout <= ttl (ttl={ttl}); adjusted \
                 loop_wait from {loop_wait} to 1 and retry_timeout from {retry} to {}",
                self.retry_timeout
            ));
        } else if loop_wait + 2 * retry > ttl {
            self.loop_wait = self.ttl - 2 * self.retry_timeout;
            notes.push(format!(
                "violated the rule loop_wait + 2*retry_timeout <= ttl (ttl={ttl}, \
                 retry_timeout={retry}); adjusted loop_wait from {loop_wait} to {}",
                self.loop_wait
            ));
        }
        notes
    }

    /// Checks the value rules on the typed fields (useful for a config built in code;
    /// [`DynamicConfig::from_json`] applies them already).
    pub fn validate(&self) -> Result<(), Vec<DynamicConfigError>> {
        let mut errors = Vec::new();
        check_timeouts(self, &mut errors);
        check_sync_count(self, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Patroni's timing rule plus Warden's floors. The rule is only checked once the floors
/// hold, so one bad value gives one error.
pub(super) fn check_timeouts(config: &DynamicConfig, errors: &mut Vec<DynamicConfigError>) {
    let (ttl, loop_wait, retry) = (config.ttl, config.loop_wait, config.retry_timeout);
    let mut floors_ok = true;
    if ttl < MIN_TTL {
        errors.push(DynamicConfigError::new(
            "ttl",
            format!("must be at least {MIN_TTL} seconds, got {ttl}"),
        ));
        floors_ok = false;
    }
    for (key, value) in [("loop_wait", loop_wait), ("retry_timeout", retry)] {
        if value == 0 {
            errors.push(DynamicConfigError::new(
                key,
                "must be at least 1 second, got 0",
            ));
            floors_ok = false;
        }
    }
    let needed = u64::from(loop_wait) + 2 * u64::from(retry);
    if floors_ok && needed > u64::from(ttl) {
        errors.push(DynamicConfigError::new(
            "ttl",
            format!(
                "loop_wait + 2*retry_timeout ({loop_wait} + 2*{retry} = {needed}) must not \
                 exceed ttl ({ttl}); lower loop_wait or retry_timeout, or raise ttl"
            ),
        ));
    }
}

pub(super) fn check_sync_count(config: &DynamicConfig, errors: &mut Vec<DynamicConfigError>) {
    if config.synchronous_node_count == 0 {
        errors.push(DynamicConfigError::new(
            "synchronous_node_count",
            "must be at least 1, got 0",
        ));
    }
}
