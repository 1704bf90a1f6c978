//! DNS resolution with fixed overrides (like curl's `--resolve`) and a cache of answers for a
//! while (`AIOHTTP_POOL_DNS_TTL`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use tokio::time::Instant;
use tower_service::Service;

/// The most names cached at once (upstreams are a handful of hosts).
const MAX_NAMES: usize = 1_024;

/// Resolves names with the system resolver, except the overridden ones; with a time to
/// live, an answer is reused for that long.
#[derive(Clone, Debug)]
pub(crate) struct Resolver {
    system: GaiResolver,
    overrides: Arc<HashMap<String, IpAddr>>,
    cache: Option<Arc<DnsCache>>,
}

impl Resolver {
    pub(crate) fn new(overrides: HashMap<String, IpAddr>, ttl: Option<Duration>) -> Self {
        Self {
            system: GaiResolver::new(),
            overrides: Arc::new(overrides),
            cache: ttl
                .filter(|t| !t.is_zero())
                .map(|ttl| Arc::new(DnsCache::new(ttl))),
        }
    }
}

/// Answers kept for their time to live (failures are never kept).
#[derive(Debug)]
pub(crate) struct DnsCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Vec<SocketAddr>)>>,
}

impl DnsCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `name` still alive at `now`.
    pub(crate) fn get(&self, name: &str, now: Instant) -> Option<Vec<SocketAddr>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(name)
            .filter(|(at, _)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(_, addrs)| addrs.clone())
    }

    /// Keep `addrs` for `name` from `now`.
    pub(crate) fn put(&self, name: &str, addrs: Vec<SocketAddr>, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_NAMES && !entries.contains_key(name) {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
            if entries.len() >= MAX_NAMES {
                entries.clear();
            }
        }
        entries.insert(name.to_owned(), (now, addrs));
    }
}

type Addrs = std::vec::IntoIter<SocketAddr>;

impl Service<Name> for Resolver {
    type Response = Addrs;
    type Error = io::Error;
    // Resolution happens once per new pooled connection, not per request: boxing is fine.
    type Future = Pin<Box<dyn Future<Output = io::Result<Addrs>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.system.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        if let Some(ip) = self.overrides.get(name.as_str()) {
            // The connector sets the port from the URL.
            let addrs = vec![SocketAddr::new(*ip, 0)].into_iter();
            return Box::pin(std::future::ready(Ok(addrs)));
        }
        if let Some(cache) = &self.cache
            && let Some(addrs) = cache.get(name.as_str(), Instant::now())
        {
            return Box::pin(std::future::ready(Ok(addrs.into_iter())));
        }
        let cache = self.cache.clone();
        let key = name.as_str().to_owned();
        let lookup = self.system.call(name);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = lookup.await?.collect();
            if let Some(cache) = cache {
                cache.put(&key, addrs.clone(), Instant::now());
            }
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_live_for_their_ttl_and_the_cache_is_bounded() {
        let cache = DnsCache::new(Duration::from_secs(300));
        let t0 = Instant::now();
        let a: Vec<SocketAddr> = vec!["10.0.0.1:0".parse().unwrap()];
        assert_eq!(cache.get("api.example", t0), None);
        cache.put("api.example", a.clone(), t0);
        assert_eq!(
            cache.get("api.example", t0 + Duration::from_secs(299)),
            Some(a.clone())
        );
        assert_eq!(
            cache.get("api.example", t0 + Duration::from_secs(300)),
            None
        );
        for i in 0..(MAX_NAMES * 2) {
            cache.put(&format!("h{i}"), a.clone(), t0);
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_NAMES);
    }

    #[tokio::test]
    async fn a_second_lookup_within_the_ttl_is_answered_from_the_cache() {
        let mut resolver = Resolver::new(HashMap::new(), Some(Duration::from_secs(300)));
        let name: Name = "localhost".parse().unwrap();
        let first: Vec<SocketAddr> = resolver.call(name.clone()).await.unwrap().collect();
        // What the cache holds is what a second connection gets, without asking the system.
        let cache = resolver.cache.clone().unwrap();
        assert_eq!(cache.get("localhost", Instant::now()), Some(first.clone()));
        cache.put(
            "localhost",
            vec!["192.0.2.7:0".parse().unwrap()],
            Instant::now(),
        );
        let second: Vec<SocketAddr> = resolver.call(name).await.unwrap().collect();
        assert_eq!(second, vec!["192.0.2.7:0".parse::<SocketAddr>().unwrap()]);
        // No time to live: nothing cached.
        let uncached = Resolver::new(HashMap::new(), None);
        assert!(uncached.cache.is_none());
    }
}
