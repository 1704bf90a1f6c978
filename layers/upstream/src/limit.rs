//! At most so many requests in flight to one upstream host at a time
//! (`AIOHTTP_POOL_CONNECTIONS_PER_HOST`), a request holding its place until its answer's body
//! is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::Uri;
use tokio::sync::Semaphore;

/// The most hosts tracked at once; past it, hosts with nothing in flight are forgotten.
const MAX_HOSTS: usize = 1_024;

/// One semaphore per host (`scheme://authority`).
#[derive(Debug)]
pub(crate) struct HostLimits {
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimits {
    pub(crate) fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The semaphore of `uri`'s host.
    pub(crate) fn of(&self, uri: &Uri) -> Arc<Semaphore> {
        let authority = uri.authority().map_or("", |a| a.as_str());
        let scheme = uri.scheme_str().unwrap_or("");
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        // Found without a copy of the key (the scheme is part of it only when it is https).
        let key = if scheme == "https" {
            std::borrow::Cow::Owned(format!("https://{authority}"))
        } else {
            std::borrow::Cow::Borrowed(authority)
        };
        if let Some(found) = hosts.get(key.as_ref()) {
            return found.clone();
        }
        if hosts.len() >= MAX_HOSTS {
            let per_host = self.per_host;
            hosts.retain(|_, s| s.available_permits() < per_host);
        }
        let semaphore = Arc::new(Semaphore::new(self.per_host));
        hosts.insert(key.into_owned(), semaphore.clone());
        semaphore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_semaphore_per_host_and_idle_hosts_forgotten_past_the_bound() {
        let limits = HostLimits::new(2);
        let a: Uri = "http://a.example:8000/v1/chat".parse().unwrap();
        let a2: Uri = "http://a.example:8000/v1/models".parse().unwrap();
        let b: Uri = "https://a.example:8000/v1".parse().unwrap();
        assert!(Arc::ptr_eq(&limits.of(&a), &limits.of(&a2)));
        assert!(!Arc::ptr_eq(&limits.of(&a), &limits.of(&b)));
        let held = limits.of(&a).try_acquire_owned().unwrap();
        for i in 0..MAX_HOSTS {
            limits.of(&format!("http://h{i}/").parse().unwrap());
        }
        let hosts = limits.hosts.lock().unwrap().len();
        assert!(hosts <= MAX_HOSTS, "{hosts}");
        // The host with a request in flight was kept.
        assert_eq!(limits.of(&a).available_permits(), 1);
        drop(held);
    }
}
