//! `tower-openai-core` holds the vocabulary the layers share, and nothing else: every item it
//! declares is named by at least two other crates of the workspace (the layer crates, the
//! facade, the gateway). An item one crate uses belongs to that crate; a helper that shapes a
//! layer (a future, a body wrapper, a macro) belongs to `tower-openai-util`.
//!
//! Read from the source (tests and comments excluded). A few items are named only in core's
//! own signatures (an error a core method returns, a bound of one); they are listed in
//! [`SIGNATURE_ONLY`] with where they appear, and the list is checked too, so it cannot
//! outlive the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;

mod source;
use source::{code, root, rust_files};

/// Items no other crate needs to name, and the core signature that names each.
const SIGNATURE_ONLY: &[(&str, &str)] = &[
    ("FormError", "pub fn parse("),
    ("IntoHeaderName", "name: impl IntoHeaderName"),
    ("MAX_MEMBERS", "more than {MAX_MEMBERS} top-level members"),
];

/// The code of the Rust files under `dir`: tests and comments removed.
fn code_under(dir: &Path) -> String {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    files.iter().map(|path| code(path)).collect()
}

/// Every crate that may use core, by name, with its code.
fn users() -> BTreeMap<String, String> {
    let mut users = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("layers")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name != "core" && name != "test-util" {
            let code = code_under(&root().join("layers").join(&name).join("src"));
            users.insert(name, code);
        }
    }
    users.insert("gateway".into(), code_under(&root().join("gateway/src")));
    users.insert("facade".into(), code_under(&root().join("src")));
    users
}

/// The items core declares at module level: name → kind.
fn core_items(core: &str) -> BTreeMap<String, String> {
    let item = Regex::new(r"(?m)^pub (struct|enum|trait|type|const|static|fn) (\w+)").unwrap();
    item.captures_iter(core)
        .map(|c| (c[2].to_owned(), c[1].to_owned()))
        .collect()
}

#[test]
fn every_core_item_is_named_by_two_other_crates_or_by_a_core_signature() {
    let core = code_under(&root().join("layers/core/src"));
    let items = core_items(&core);
    assert!(
        items.contains_key("ErrorResponse") && items.contains_key("User"),
        "the scan found core's items: {items:?}"
    );
    let users = users();
    let mut lonely = Vec::new();
    for name in items.keys() {
        let word = Regex::new(&format!(r"\b{name}\b")).unwrap();
        let named_by: Vec<&str> = users
            .iter()
            .filter(|(_, code)| word.is_match(code))
            .map(|(crate_name, _)| crate_name.as_str())
            .collect();
        let excused = SIGNATURE_ONLY.iter().find(|(n, _)| n == name);
        match excused {
            Some((_, signature)) => {
                assert!(
                    core.contains(signature),
                    "{name} is listed as named by core's `{signature}`, which is gone"
                );
                assert!(
                    named_by.len() < 2,
                    "{name} is named by {named_by:?}: take it off SIGNATURE_ONLY"
                );
            }
            None if named_by.len() < 2 => lonely.push(format!("{name} (named by {named_by:?})")),
            None => {}
        }
    }
    assert!(
        lonely.is_empty(),
        "core items used by fewer than two crates (move each to its crate, or to \
         tower-openai-util if it shapes a layer): {lonely:?}"
    );
    for (name, _) in SIGNATURE_ONLY {
        assert!(
            items.contains_key(*name),
            "{name} is no longer in core: take it off SIGNATURE_ONLY"
        );
    }
}

#[test]
fn core_writes_no_macro_and_declares_no_layer() {
    let core = code_under(&root().join("layers/core/src"));
    assert!(
        !core.contains("macro_rules!"),
        "a macro shapes a layer: tower-openai-util"
    );
    let layer = Regex::new(r"impl<[^>]*> Layer<").unwrap();
    assert!(
        !layer.is_match(&core),
        "core implements a Layer; a layer is a crate of its own"
    );
}

#[test]
fn the_scan_finds_a_lonely_item() {
    // An item only one crate names is what the first test refuses.
    let items =
        core_items("pub struct OnlyHere;\npub(crate) struct Hidden;\n    pub fn method() {}\n");
    assert_eq!(items.keys().collect::<Vec<_>>(), ["OnlyHere"]);
    let users = users();
    let word = Regex::new(r"\bErrorResponse\b").unwrap();
    assert!(users.values().filter(|code| word.is_match(code)).count() >= 2);
    let nobody = Regex::new(r"\bOnlyHere\b").unwrap();
    assert_eq!(
        users.values().filter(|code| nobody.is_match(code)).count(),
        0
    );
}
