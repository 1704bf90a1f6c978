//! DNS resolution with fixed overrides (like curl's `--resolve`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use tower_service::Service;

/// Resolves names with the system resolver, except the overridden ones.
#[derive(Clone, Debug)]
pub(crate) struct Resolver {
    system: GaiResolver,
    overrides: Arc<HashMap<String, IpAddr>>,
}

impl Resolver {
    pub(crate) fn new(overrides: HashMap<String, IpAddr>) -> Self {
        Self {
            system: GaiResolver::new(),
            overrides: Arc::new(overrides),
        }
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
        let lookup = self.system.call(name);
        Box::pin(async move { Ok(lookup.await?.collect::<Vec<_>>().into_iter()) })
    }
}
