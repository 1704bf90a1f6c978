//! Per-connection state shared by every request of the process: load, latency, failures in a
//! row, cooldown, probe. Lock-free on the request path (atomics; the map of connections is
//! swapped whole when a new connection appears, which happens once per connection).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::time::Instant;
use tower_openai_settings::Connection;

use crate::GroupOptions;

/// How fast the latency estimate decays with time, in ms, as `tower::load::PeakEwma`'s does:
/// a slow answer is taken at once ("peak"), and forgotten over about this long, whether or
/// not the connection is used meanwhile (a connection avoided after one slow answer must
/// not keep its peak for as long as it is avoided).
const DECAY_MS: f64 = 1000.0;

/// Costs within this ratio of each other count as equal, so that at rest the choice follows
/// the weights rather than noise in the latency estimate (on a busy machine one connection
/// is often 50 % slower than the other for a moment).
const COST_TIE: f64 = 2.0;

/// One connection's state.
#[derive(Debug, Default)]
pub(crate) struct Health {
    in_flight: AtomicU32,
    /// Peak-EWMA of the time to the response head, in µs (0: none yet), as of `ewma_at`.
    ewma_us: AtomicU64,
    /// When `ewma_us` was last set, in ms since the map's epoch.
    ewma_at: AtomicU64,
    failures: AtomicU32,
    /// The caller (a hash of their id, never 0) of the first 500 of the current run of
    /// failures; 0 when none.
    run_caller: AtomicU64,
    /// The current run has a failure that counts from anyone, or 500s from two callers.
    run_counts: AtomicBool,
    /// Milliseconds since the state's epoch until which the connection is skipped (0: never
    /// cooled down, or cooled down and probed back).
    cooldown_until: AtomicU64,
    /// Whether the one probe after a cooldown is out.
    probing: AtomicBool,
}

/// The shared state of every connection, by URL (indices move when settings change).
#[derive(Debug)]
pub(crate) struct HealthMap {
    epoch: Instant,
    wall_epoch: SystemTime,
    by_url: ArcSwap<HashMap<Box<str>, Arc<Health>>>,
}

impl HealthMap {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            wall_epoch: SystemTime::now(),
            by_url: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn of(&self, connection: &Connection) -> Arc<Health> {
        if let Some(h) = self.by_url.load().get(connection.url()) {
            return h.clone();
        }
        let mut found = None;
        self.by_url.rcu(|map| {
            let mut map = HashMap::clone(map);
            let h = map
                .entry(connection.url().into())
                .or_insert_with(|| Arc::new(Health::default()))
                .clone();
            found = Some(h);
            map
        });
        found.unwrap_or_default()
    }

    /// When the connection's cooldown ends, as wall-clock time, if it is cooling down.
    pub(crate) fn cooldown_until(&self, connection: &Connection) -> Option<SystemTime> {
        let until = self
            .by_url
            .load()
            .get(connection.url())?
            .cooldown_until
            .load(Ordering::Relaxed);
        (until > self.now_ms()).then(|| self.wall_epoch + Duration::from_millis(until))
    }
}

/// A candidate for one attempt.
#[derive(Clone)]
pub(crate) struct Candidate {
    pub(crate) connection: Arc<Connection>,
    pub(crate) health: Arc<Health>,
    pub(crate) options: GroupOptions,
}

impl Candidate {
    pub(crate) fn new(connection: Arc<Connection>, health: Arc<Health>) -> Self {
        // A config that does not parse was refused when it was loaded
        // (`Settings::check::<GroupOptions>`); one that got past that counts as the default.
        let options = match connection.options::<GroupOptions>() {
            Ok(options) => *options,
            Err(e) => {
                tracing::error!(connection = connection.index(), error = %e, "group options ignored");
                GroupOptions::default()
            }
        };
        Self {
            connection,
            health,
            options,
        }
    }
}

/// What a pick decided.
pub(crate) struct Pick {
    pub(crate) at: usize,
    /// The connection's one probe after a cooldown: the caller must report its result.
    pub(crate) probe: bool,
}

impl Health {
    /// Whether it may be chosen now: not cooling down, and not waiting on its probe. A
    /// connection whose cooldown is over is available for one probe.
    fn available(&self, now: u64) -> Availability {
        let until = self.cooldown_until.load(Ordering::Relaxed);
        if until == 0 {
            Availability::Yes
        } else if until > now {
            Availability::Cooling(until)
        } else if self.probing.load(Ordering::Relaxed) {
            Availability::Cooling(u64::MAX)
        } else {
            Availability::Probe
        }
    }

    /// The latency estimate at `now`, decayed since it was set.
    fn latency(&self, now: u64) -> f64 {
        let ewma = self.ewma_us.load(Ordering::Relaxed) as f64;
        let age = now.saturating_sub(self.ewma_at.load(Ordering::Relaxed)) as f64;
        ewma * (-age / DECAY_MS).exp()
    }

    /// The load-aware cost: peak-EWMA latency × (requests in flight + 1). (The weight acts
    /// through the draw alone: dividing the cost by it as well would count it twice.)
    fn cost(&self, now: u64) -> f64 {
        self.latency(now).max(1.0) * f64::from(self.in_flight.load(Ordering::Relaxed) + 1)
    }

    pub(crate) fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Attempts on this connection now.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A new latency sample at `now`: taken at once if it is above the (decayed) estimate,
    /// averaged in otherwise.
    pub(crate) fn observe_latency(&self, took: Duration, now: u64) {
        let sample = took.as_micros() as f64;
        let old = self.latency(now);
        let new = if sample > old {
            sample
        } else {
            old * 0.5 + sample * 0.5
        };
        self.ewma_us.store(new as u64, Ordering::Relaxed);
        self.ewma_at.store(now, Ordering::Relaxed);
    }

    /// An answer that counts as working: the failures in a row and any cooldown end.
    pub(crate) fn succeeded(&self, probe: bool) {
        self.end_run();
        if probe || self.cooldown_until.load(Ordering::Relaxed) != 0 {
            self.cooldown_until.store(0, Ordering::Relaxed);
        }
        if probe {
            self.probing.store(false, Ordering::Relaxed);
        }
    }

    fn end_run(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.run_caller.store(0, Ordering::Relaxed);
        self.run_counts.store(false, Ordering::Relaxed);
    }

    /// A failure; `caller` for a 500 (the caller's hash), `None` for one that counts from
    /// anyone. Cools the connection down until `now + cooldown` after `threshold` failures in
    /// a row, after a failed probe, or at once for `retry_after`; a run of 500s counts only
    /// once it came from two callers (one caller's payload that makes the upstream fail must
    /// not cool the connection down for everyone). Whether it started a cooldown.
    pub(crate) fn failed(
        &self,
        probe: bool,
        now: u64,
        threshold: u32,
        cooldown: Duration,
        retry_after: Option<Duration>,
        caller: Option<u64>,
    ) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let counts = match caller {
            None => true,
            Some(caller) => match self.run_caller.compare_exchange(
                0,
                caller.max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => false,
                Err(first) => first != caller.max(1),
            },
        };
        if counts {
            self.run_counts.store(true, Ordering::Relaxed);
        }
        let run_counts = self.run_counts.load(Ordering::Relaxed);
        let cool_for = match retry_after {
            Some(d) => Some(d),
            None if probe || (failures >= threshold && run_counts) => Some(cooldown),
            None => None,
        };
        if probe {
            self.probing.store(false, Ordering::Relaxed);
        }
        match cool_for {
            Some(d) => {
                let until = now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                self.cooldown_until.store(until.max(1), Ordering::Relaxed);
                self.end_run();
                true
            }
            None => false,
        }
    }
}

enum Availability {
    Yes,
    Probe,
    Cooling(u64),
}

/// Choose among `candidates` (those not tried yet): the best priority tier with a connection
/// available, then within it power-of-two-choices on the peak-EWMA cost, the two drawn in
/// proportion to their weights. When every
/// candidate is cooling down, the one whose cooldown ends first (a group never refuses on its
/// own). `random` gives numbers in `0.0..1.0`.
pub(crate) fn pick(
    candidates: &[Candidate],
    now: u64,
    mut random: impl FnMut() -> f64,
) -> Option<Pick> {
    let mut tiers: Vec<i64> = candidates.iter().map(|c| c.options.priority).collect();
    tiers.sort_unstable();
    tiers.dedup();
    for tier in tiers {
        let members: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].options.priority == tier)
            .collect();
        // A connection back from its cooldown is probed before traffic returns to it.
        for &i in &members {
            if matches!(candidates[i].health.available(now), Availability::Probe)
                && candidates[i]
                    .health
                    .probing
                    .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(Pick { at: i, probe: true });
            }
        }
        let ready: Vec<usize> = members
            .into_iter()
            .filter(|&i| matches!(candidates[i].health.available(now), Availability::Yes))
            .collect();
        if ready.is_empty() {
            continue;
        }
        let weight = |i: usize| candidates[i].options.weight;
        let first = weighted(&ready, &weight, random());
        let second = weighted(&ready, &weight, random());
        let (a, b) = (
            candidates[first].health.cost(now),
            candidates[second].health.cost(now),
        );
        let at = if b * COST_TIE < a { second } else { first };
        return Some(Pick { at, probe: false });
    }
    // Everything is cooling down: the one that ends soonest.
    (0..candidates.len())
        .min_by_key(|&i| match candidates[i].health.available(now) {
            Availability::Cooling(until) => until,
            _ => 0,
        })
        .map(|at| Pick { at, probe: false })
}

/// One of `members`, with probability proportional to its weight (`r` in `0.0..1.0`).
fn weighted(members: &[usize], weight: &impl Fn(usize) -> f64, r: f64) -> usize {
    let total: f64 = members.iter().map(|&i| weight(i)).sum();
    let mut at = r * total;
    for &i in members {
        at -= weight(i);
        if at < 0.0 {
            return i;
        }
    }
    members[members.len() - 1]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;
    use tower_openai_settings::SettingsSource;

    use super::{Candidate, Health, HealthMap, pick};

    fn candidates(configs: serde_json::Value, n: usize) -> (HealthMap, Vec<Candidate>) {
        let urls: Vec<String> = (0..n).map(|i| format!("http://c{i}/v1")).collect();
        let settings = SettingsSource {
            base_urls: Some(urls),
            configs: Some(configs.as_object().unwrap().clone()),
            ..SettingsSource::default()
        }
        .build()
        .unwrap();
        let map = HealthMap::new();
        let list = settings
            .connections()
            .iter()
            .map(|c| Candidate::new(c.clone(), map.of(c)))
            .collect();
        (map, list)
    }

    #[test]
    fn at_rest_the_choice_follows_the_weights() {
        let (_, list) = candidates(json!({"0": {"weight": 3}, "1": {"weight": 1}}), 2);
        let mut seed = 7u64;
        let mut random = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let n = 40_000;
        let first = (0..n)
            .filter(|_| pick(&list, 0, &mut random).unwrap().at == 0)
            .count();
        let share = first as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }

    #[test]
    fn a_busier_or_slower_connection_gets_less() {
        let (_, list) = candidates(json!({}), 2);
        list[0].health.observe_latency(Duration::from_millis(50), 0);
        list[1].health.observe_latency(Duration::from_millis(5), 0);
        let mut r = [0.1, 0.9].into_iter().cycle();
        let picks: Vec<usize> = (0..10)
            .map(|_| pick(&list, 0, || r.next().unwrap()).unwrap().at)
            .collect();
        assert!(picks.iter().all(|&i| i == 1), "{picks:?}");
        // The avoided connection's slow answer is forgotten with time, while the used one
        // keeps getting fresh samples: three seconds later it is tried again.
        list[1]
            .health
            .observe_latency(Duration::from_millis(5), 3000);
        let mut r = [0.1, 0.9].into_iter().cycle();
        let later: Vec<usize> = (0..10)
            .map(|_| pick(&list, 3000, || r.next().unwrap()).unwrap().at)
            .collect();
        assert!(later.contains(&0), "{later:?}");
    }

    #[test]
    fn a_lower_tier_is_used_only_while_the_better_one_cools_down_then_probed_once() {
        let (map, list) = candidates(json!({"1": {"priority": 1}}), 2);
        assert_eq!(pick(&list, 0, || 0.5).unwrap().at, 0);
        let now = map.now_ms();
        assert!(
            list[0]
                .health
                .failed(false, now, 1, Duration::from_secs(30), None, None)
        );
        assert_eq!(pick(&list, now, || 0.5).unwrap().at, 1);
        // After the cooldown, one probe goes to connection 0; others wait for its answer.
        let later = now + 30_001;
        let probe = pick(&list, later, || 0.5).unwrap();
        assert!(probe.probe && probe.at == 0);
        assert_eq!(pick(&list, later, || 0.5).unwrap().at, 1);
        list[0].health.succeeded(true);
        assert_eq!(pick(&list, later, || 0.5).unwrap().at, 0);
    }

    #[test]
    fn when_all_cool_down_the_first_to_come_back_is_used() {
        let (_, list) = candidates(json!({}), 2);
        list[0]
            .health
            .failed(false, 0, 1, Duration::from_secs(60), None, None);
        list[1]
            .health
            .failed(false, 0, 1, Duration::from_secs(10), None, None);
        assert_eq!(pick(&list, 1, || 0.5).unwrap().at, 1);
        let _ = Arc::new(());
    }

    #[test]
    fn a_run_of_500s_cools_down_only_once_two_callers_had_them() {
        let h = Health::default();
        let cool = |caller| h.failed(false, 0, 3, Duration::from_secs(30), None, caller);
        // One caller, many 500s: never.
        for _ in 0..10 {
            assert!(!cool(Some(7)));
        }
        // A second caller's 500: the run counts (it is well past 3).
        assert!(cool(Some(8)));
        // A success ends a run; a 502 counts from anyone.
        h.succeeded(true);
        assert!(!cool(Some(7)));
        assert!(!cool(None));
        assert!(cool(Some(7)));
    }
}
