//! The extension table in core's docs (`layers/core/src/extensions.rs`) and each layer crate's
//! `# Extensions` docs say what the crates' code reads and writes.
//!
//! What the code does is read from its source (tests excluded): a read is
//! `get::<T>()`, `remove::<T>()` or `T::of(…)`; an edit (`get_mut::<T>()`,
//! `get_or_insert_default::<T>()`) is a read and a write; a write is an `insert` into
//! request or response extensions of a `T` — built in place, named (`insert::<T>`), or a
//! binding whose `let` or field names `T` (a crate's own private extension type, inserted
//! as `insert::<Private>`, is not the table's business). An `insert` whose type cannot be
//! told fails the test, so a new way of writing an extension has to be taught here rather
//! than slip past.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;

mod source;
use source::{code, root, rust_files};

/// The extension types of the table.
const TYPES: &[&str] = &[
    "User",
    "ApiRoute",
    "MeterUsage",
    "SettingsSnapshot",
    "Payload",
    "Form",
    "ListFilter",
    "SelectedConnection",
    "RequestedModel",
    "ConnectionGroup",
    "ReasoningModel",
    "UpstreamHeaders",
    "RequestTimeout",
    "UsageReport",
    "EndingReport",
    "UpstreamFailure",
    "Unidentified",
];

type Uses = BTreeMap<String, BTreeSet<&'static str>>;

#[derive(Default, Debug)]
struct Found {
    /// crate → types it reads.
    reads: Uses,
    /// crate → types it writes.
    writes: Uses,
}

/// The layer crates (`layers/*` but the test utilities), by folder name.
fn crates() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "test-util")
        .collect();
    names.sort();
    names
}

fn type_named(name: &str) -> Option<&'static str> {
    TYPES.iter().copied().find(|t| *t == name)
}

fn scan() -> Found {
    let alt = TYPES.join("|");
    let read = Regex::new(&format!(r"\b(?:get|remove)::<\s*(?:\w+::)*({alt})\s*>")).unwrap();
    let of = Regex::new(&format!(r"\b({alt})::of\(")).unwrap();
    let edit = Regex::new(&format!(
        r"\b(?:get_mut|get_or_insert_default|get_or_insert_with)::<\s*(?:\w+::)*({alt})\s*>"
    ))
    .unwrap();
    let insert =
        Regex::new(r"(?s)(?:extensions_mut\(\)|extensions|\bext)\s*\.insert\(\s*(.*?)\)\s*;")
            .unwrap();
    let built = Regex::new(&format!(r"^(?:\w+::)*({alt})\b")).unwrap();
    // `insert::<T>(…)`: the type named; a crate's own private extension is not the table's.
    let turbofish = Regex::new(r"\binsert::<\s*(?:\w+::)*(\w+)\s*>\(").unwrap();
    let mut found = Found::default();
    for name in crates() {
        let mut files = Vec::new();
        // Core defines the types and has no layer of its own.
        if name != "core" {
            rust_files(&root().join("layers").join(&name).join("src"), &mut files);
        }
        let reads = found.reads.entry(name.clone()).or_default();
        let writes = found.writes.entry(name.clone()).or_default();
        for file in files {
            let code = code(&file);
            for c in read.captures_iter(&code).chain(of.captures_iter(&code)) {
                reads.insert(type_named(&c[1]).unwrap());
            }
            for c in edit.captures_iter(&code) {
                reads.insert(type_named(&c[1]).unwrap());
                writes.insert(type_named(&c[1]).unwrap());
            }
            for c in turbofish.captures_iter(&code) {
                if let Some(t) = type_named(&c[1]) {
                    writes.insert(t);
                }
            }
            for c in insert.captures_iter(&code) {
                let arg = c[1].trim();
                if let Some(b) = built.captures(arg) {
                    writes.insert(type_named(&b[1]).unwrap());
                    continue;
                }
                let ident = arg
                    .trim_start_matches('*')
                    .trim_end_matches(".clone()")
                    .rsplit('.')
                    .next()
                    .unwrap();
                let ident = regex::escape(ident);
                let typed = TYPES.iter().copied().find(|t| {
                    Regex::new(&format!(r"\b{ident}\s*:\s*&?(?:Option<)?(?:\w+::)*{t}\b"))
                        .unwrap()
                        .is_match(&code)
                        || Regex::new(&format!(r"let\s+(?:mut\s+)?{ident}\s*=[^;]*\b{t}\b"))
                            .unwrap()
                            .is_match(&code)
                });
                match typed {
                    Some(t) => {
                        writes.insert(t);
                    }
                    None => panic!(
                        "{}: cannot tell the type of `insert({arg})`",
                        file.display()
                    ),
                }
            }
        }
    }
    found
}

/// The crates and types core's table names: type → (writers, readers).
fn table() -> BTreeMap<&'static str, (BTreeSet<String>, BTreeSet<String>)> {
    let crates = crates();
    let text = std::fs::read_to_string(root().join("layers/core/src/extensions.rs")).unwrap();
    let tick = Regex::new(r"`([\w-]+)`").unwrap();
    let mut rows: BTreeMap<&'static str, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for line in text.lines() {
        // A row opens with its type: linked (`[`T`](…)`) or, for a type of a layer crate's
        // own, in backticks.
        let Some(row) = line
            .strip_prefix("//! | ")
            .filter(|row| row.starts_with('[') || row.starts_with('`'))
        else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        assert_eq!(cells.len(), 3, "a table row has three cells: {line}");
        let named = |cell: &str| -> BTreeSet<String> {
            tick.captures_iter(cell)
                .map(|c| c[1].to_owned())
                .filter(|n| crates.contains(n))
                .collect()
        };
        let types: Vec<&'static str> = tick
            .captures_iter(cells[0])
            .filter_map(|c| type_named(&c[1]))
            .collect();
        assert!(!types.is_empty(), "a row names its types: {line}");
        for t in types {
            let entry = rows.entry(t).or_default();
            entry.0.extend(named(cells[1]));
            entry.1.extend(named(cells[2].trim_end_matches(" |")));
        }
    }
    rows
}

fn by_type(uses: &Uses) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut out: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for (krate, types) in uses {
        for t in types {
            out.entry(t).or_default().insert(krate.clone());
        }
    }
    out
}

#[test]
fn core_s_extension_table_is_what_the_code_reads_and_writes() {
    let found = scan();
    let table = table();
    let writers = by_type(&found.writes);
    let readers = by_type(&found.reads);
    let mut wrong = Vec::new();
    for t in TYPES {
        let (table_writers, table_readers) = table.get(t).cloned().unwrap_or_default();
        let code_writers = writers.get(t).cloned().unwrap_or_default();
        let code_readers = readers.get(t).cloned().unwrap_or_default();
        if table_writers != code_writers {
            wrong.push(format!(
                "{t} written by: the table says {table_writers:?}, the code {code_writers:?}"
            ));
        }
        if table_readers != code_readers {
            wrong.push(format!(
                "{t} read by: the table says {table_readers:?}, the code {code_readers:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn each_layer_s_extensions_docs_name_what_it_reads_and_writes() {
    let found = scan();
    let tick = Regex::new(r"`(\w+)`").unwrap();
    let mut wrong = Vec::new();
    for name in crates() {
        if name == "core" {
            continue;
        }
        let lib =
            std::fs::read_to_string(root().join("layers").join(&name).join("src/lib.rs")).unwrap();
        let mut section = String::new();
        let mut inside = false;
        for line in lib.lines() {
            if line.starts_with("//! # ") {
                inside = line == "//! # Extensions";
                continue;
            }
            if inside {
                section.push_str(line);
                section.push('\n');
            }
        }
        let documented: BTreeSet<&'static str> = tick
            .captures_iter(&section)
            .filter_map(|c| type_named(&c[1]))
            .collect();
        let used: BTreeSet<&'static str> = found.reads[&name]
            .union(&found.writes[&name])
            .copied()
            .collect();
        if documented != used {
            wrong.push(format!(
                "{name}: its # Extensions docs name {documented:?}; it uses {used:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn the_scan_finds_known_reads_and_writes() {
    // The scan's own check: a known write is found, so an empty scan cannot pass.
    let found = scan();
    assert!(found.writes["policy"].contains("ApiRoute"));
    assert!(found.writes["upstream"].contains("EndingReport"));
    assert!(found.reads["upstream"].contains("SelectedConnection"));
}
