//! Which connections the server takes: at most so many in all and per client address, and,
//! at the limit, an idle connection makes room for a new one.
//!
//! Without the last rule, connections that send nothing (or one request and then nothing)
//! hold every slot until their header-read timeout, renewed at will: a few thousand idle
//! connections lock every other caller out. A connection with a request in flight is never
//! closed to make room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Descriptors kept free of connections: listeners, the metrics listener, files, Redis,
/// the log.
const RESERVED_FILES: u64 = 64;

/// Raise the open-files limit to its hard limit and fit `wanted` connections to it: each
/// caller's connection may hold one upstream connection too, so at most half of what is
/// left after [`RESERVED_FILES`]. Returns the connection limit to use (logged when lower).
pub(crate) fn fit_to_open_files(wanted: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "could not read or raise the open-files limit");
            return wanted;
        }
    };
    let fits = usize::try_from(limit.saturating_sub(RESERVED_FILES) / 2)
        .unwrap_or(usize::MAX)
        .max(1);
    if fits < wanted {
        // Information, not a warning: on a machine whose limit is 20,000 the default of
        // 10,000 is lowered a little on every start.
        tracing::info!(
            open_files = limit,
            wanted,
            max_connections = fits,
            "the open-files limit cannot hold GATEWAY_MAX_CONNECTIONS connections (each may \
             need an upstream connection too); serving at most {fits}"
        );
        return fits;
    }
    wanted
}

/// What one connection has in flight, and since when it has had nothing.
#[derive(Debug)]
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    /// When the connection last had nothing in flight, in milliseconds since `start`.
    idle_since: AtomicU64,
    start: Instant,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            let millis = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.idle_since.store(millis, Ordering::Relaxed);
        }
    }

    /// Since when it has had nothing in flight; `None` while something is.
    fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Relaxed) == 0)
            .then(|| self.start + Duration::from_millis(self.idle_since.load(Ordering::Relaxed)))
    }

    /// Resolves once the connection has had nothing in flight for `limit`. Checks once per
    /// `limit` at most: one timer per connection, never one per request.
    pub(crate) async fn idle_for(&self, limit: Duration) {
        let mut deadline = self.start + limit;
        loop {
            tokio::time::sleep_until(deadline).await;
            match self.idle_since() {
                Some(since) if since + limit <= Instant::now() => return,
                Some(since) => deadline = since + limit,
                None => deadline = Instant::now() + limit,
            }
        }
    }
}

/// The connections being served.
#[derive(Debug)]
pub(crate) struct Admission {
    max: usize,
    max_per_ip: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    live: HashMap<u64, Live>,
    per_ip: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Live {
    ip: IpAddr,
    activity: Arc<Activity>,
    /// Set once its task is spawned.
    abort: Option<AbortHandle>,
}

/// Why a connection was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its address has as many connections as it may.
    PerIp,
    /// The server is full and every connection has a request in flight.
    Full,
}

impl Admission {
    pub(crate) fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_ip,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a new connection could be taken now (room, or an idle one to close).
    pub(crate) fn has_room(&self) -> bool {
        let state = self.state();
        state.live.len() < self.max
            || state
                .live
                .values()
                .any(|l| l.activity.idle_since().is_some())
    }

    /// How to close connection `id` when it must make room.
    pub(crate) fn set_abort(&self, id: u64, abort: AbortHandle) {
        if let Some(live) = self.state().live.get_mut(&id) {
            live.abort = Some(abort);
        }
    }

    /// Take a connection from `ip`: the guard that holds its place until dropped. At the
    /// limit, the connection idle the longest is closed to make room.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let mut state = self.state();
        if state.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            return Err(Refused::PerIp);
        }
        if state.live.len() >= self.max {
            let victim = state
                .live
                .iter()
                .filter_map(|(id, l)| Some((l.activity.idle_since()?, *id)))
                .min()
                .map(|(_, id)| id)
                .ok_or(Refused::Full)?;
            if let Some(live) = state.remove(victim)
                && let Some(abort) = live.abort
            {
                abort.abort();
                tracing::debug!(ip = %live.ip, "idle connection closed to make room");
            }
        }
        let id = state.next;
        state.next += 1;
        let activity = Arc::new(Activity::new());
        state.live.insert(
            id,
            Live {
                ip,
                activity: activity.clone(),
                abort: None,
            },
        );
        *state.per_ip.entry(ip).or_default() += 1;
        Ok(Admitted {
            admission: self.clone(),
            id,
            activity,
        })
    }
}

impl State {
    fn remove(&mut self, id: u64) -> Option<Live> {
        let live = self.live.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&live.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&live.ip);
            }
        }
        Some(live)
    }
}

/// A connection's place; released when dropped (the connection ended, or was closed).
#[derive(Debug)]
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    id: u64,
    activity: Arc<Activity>,
}

impl Admitted {
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// Its id, for [`Admission::set_abort`].
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.state().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[tokio::test(start_paused = true)]
    async fn per_address_limit_and_idle_connections_make_room_oldest_first() {
        let admission = Admission::new(3, 2);
        let a = admission.admit(ip(1)).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = admission.admit(ip(1)).unwrap();
        assert_eq!(admission.admit(ip(1)).unwrap_err(), Refused::PerIp);
        let c = admission.admit(ip(2)).unwrap();
        // Full; everything busy: refused.
        for admitted in [&a, &b, &c] {
            admitted.activity().begin();
        }
        assert!(!admission.has_room());
        assert_eq!(admission.admit(ip(3)).unwrap_err(), Refused::Full);
        // b goes idle, then a: b has been idle longer, so b makes room.
        b.activity().end();
        tokio::time::sleep(Duration::from_secs(1)).await;
        a.activity().end();
        assert!(admission.has_room());
        let d = admission.admit(ip(3)).unwrap();
        {
            let state = admission.state();
            assert!(!state.live.contains_key(&b.id) && state.live.contains_key(&a.id));
            assert_eq!(state.per_ip[&ip(1)], 1);
        }
        // Its guard dropping later changes nothing more.
        drop(b);
        assert_eq!(admission.state().live.len(), 3);
        drop((a, c, d));
        let state = admission.state();
        assert!(state.live.is_empty() && state.per_ip.is_empty());
    }
}
