//! One merged model list: its entries, and the JSON it is rendered to once, per settings
//! snapshot.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;
use tokio::time::Instant;
use tower_openai_core::ListFilter;
use tower_openai_core::routing::Route;
use tower_openai_settings::Settings;

/// One merged model list, as built for one settings snapshot.
pub struct Snapshot {
    pub(crate) settings: Arc<Settings>,
    pub(crate) built_at: Instant,
    entries: Vec<Entry>,
    by_key: HashMap<String, usize>,
    body: Bytes,
}

struct Entry {
    key: String,
    connection: usize,
    /// Every connection serving the model, when model groups are on and there are several
    /// (the first is `connection`).
    group: Option<Arc<[usize]>>,
    json: Bytes,
}

impl Snapshot {
    /// How many models connection `index` contributes.
    pub fn count_of(&self, index: usize) -> usize {
        self.entries
            .iter()
            .filter(|e| e.connection == index)
            .count()
    }

    pub(crate) fn empty(settings: Arc<Settings>) -> Self {
        SnapshotBuilder::default().finish(settings)
    }

    /// How many models it lists.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it lists none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The connection serving model `id` (the first, for a group).
    pub fn connection_of(&self, id: &str) -> Option<usize> {
        self.by_key.get(id).map(|&i| self.entries[i].connection)
    }

    /// The route to model `id`: its connection, or its group's.
    pub fn route_of(&self, id: &str) -> Route {
        match self.by_key.get(id).map(|&i| &self.entries[i]) {
            None => Route::Unknown,
            Some(Entry {
                group: Some(group), ..
            }) => Route::Group(group.clone()),
            Some(e) => Route::Connection(e.connection),
        }
    }

    /// The model ids, in list order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }

    /// One model as JSON.
    pub fn model_json(&self, id: &str) -> Option<&Bytes> {
        self.by_key.get(id).map(|&i| &self.entries[i].json)
    }

    /// The list as `{"object":"list","data":[…]}`, keeping only the models `filter` allows.
    pub fn to_json(&self, filter: Option<&ListFilter>) -> Bytes {
        match filter {
            None => self.body.clone(),
            // The common case, a caller who may see every model, gets the list rendered
            // once per snapshot instead of a copy per request.
            Some(filter) if self.entries.iter().all(|e| filter.allows(&e.key)) => self.body.clone(),
            Some(filter) => render(self.entries.iter().filter(|e| filter.allows(&e.key))),
        }
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("models", &self.entries.len())
            .field("built_at", &self.built_at)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
pub(crate) struct SnapshotBuilder {
    entries: Vec<Entry>,
    by_key: HashMap<String, usize>,
    /// Model groups: a model id several connections list is one model served by all.
    groups: bool,
    /// The connections of each grouped entry, while building.
    members: HashMap<usize, Vec<usize>>,
}

impl SnapshotBuilder {
    pub(crate) fn with_groups(groups: bool) -> Self {
        Self {
            groups,
            ..Self::default()
        }
    }

    /// M-7: the first model with a key wins; later duplicates are dropped, or, with model
    /// groups, add their connection to the first's group.
    pub(crate) fn push(
        &mut self,
        key: String,
        connection: usize,
        model: &serde_json::Map<String, Value>,
    ) {
        if let Some(&at) = self.by_key.get(&key) {
            if self.groups {
                let first = self.entries[at].connection;
                let members = self.members.entry(at).or_insert_with(|| vec![first]);
                if !members.contains(&connection) {
                    members.push(connection);
                }
            }
            return;
        }
        let Ok(json) = serde_json::to_vec(model) else {
            return;
        };
        self.by_key.insert(key.clone(), self.entries.len());
        self.entries.push(Entry {
            key,
            connection,
            group: None,
            json: Bytes::from(json),
        });
    }

    pub(crate) fn finish(mut self, settings: Arc<Settings>) -> Snapshot {
        for (at, members) in std::mem::take(&mut self.members) {
            let entry = &mut self.entries[at];
            // A grouped model is listed once, with every connection that serves it.
            if let Ok(mut model) =
                serde_json::from_slice::<serde_json::Map<String, Value>>(&entry.json)
            {
                model.insert("urlIdxs".to_owned(), Value::from(members.clone()));
                if let Ok(json) = serde_json::to_vec(&model) {
                    entry.json = Bytes::from(json);
                }
            }
            entry.group = Some(members.into());
        }
        Snapshot {
            body: render(self.entries.iter()),
            settings,
            built_at: Instant::now(),
            entries: self.entries,
            by_key: self.by_key,
        }
    }
}

fn render<'a>(entries: impl Iterator<Item = &'a Entry>) -> Bytes {
    let mut out = BytesMut::with_capacity(1024);
    out.put_slice(br#"{"object":"list","data":["#);
    for (i, e) in entries.enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&e.json);
    }
    out.put_slice(b"]}");
    out.freeze()
}
