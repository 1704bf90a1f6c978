//! The gateway reads a multipart form the way the upstream does, or refuses it.
//!
//! LiteLLM, vLLM and every FastAPI server read forms with Starlette's parser
//! (python-multipart). Generated forms (odd parameter names and quoting, `;` inside quoted
//! values, repeated parameters, extended `name*`, files named `model`, two boundaries, header
//! names with spaces, preambles) are read by the gateway's [`Form`] and by Starlette itself,
//! run as a Python process; whenever the gateway admits a form, Starlette must see exactly
//! one `model` field with the same value (or refuse the form too).
//!
//! Needs `python3` with `starlette` and `python-multipart`; skipped without them, unless
//! `TOWER_OPENAI_REQUIRE_PYTHON` is set (as in CI), where it fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRng, TestRunner};
use serde_json::Value;
use tower_openai::core::payload::Form;

/// How many forms are generated.
const CASES: usize = 4000;

/// `python3`, if it can import Starlette's form parser.
fn starlette_python() -> Option<&'static str> {
    let ok = Command::new("python3")
        .args(["-c", "import starlette.formparsers, python_multipart"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("TOWER_OPENAI_REQUIRE_PYTHON").is_none(),
            "python3 with starlette and python-multipart is required (pip install starlette python-multipart)"
        );
        eprintln!("skipped: python3 with starlette and python-multipart is not installed");
        return None;
    }
    Some("python3")
}

/// One generated request: its `Content-Type` and body.
#[derive(Clone, Debug)]
struct Case {
    content_type: String,
    body: Vec<u8>,
}

fn key() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just("name"),
        1 => Just("NAME"),
        1 => Just("Name"),
        1 => Just(" name"),
        1 => Just("name "),
    ]
}

fn field_name() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just("model"),
        1 => Just("Model"),
        1 => Just("model "),
        2 => Just("zzz"),
        2 => Just("file"),
    ]
}

fn quoted(value: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(format!("\"{value}\"")),
        1 => Just(value.to_owned()),
        1 => Just(format!("\"{value}")),
    ]
}

/// One `Content-Disposition` parameter.
fn param() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (key(), field_name().prop_flat_map(quoted)).prop_map(|(k, v)| format!("{k}={v}")),
        1 => Just(r#"x="a;name=zzz;b""#.to_owned()),
        1 => Just(r#"x="a;name=model;b""#.to_owned()),
        1 => Just(r#"x="a;name="zzz";b""#.to_owned()),
        1 => Just(r#"filename="a.wav""#.to_owned()),
        1 => Just("filename*=UTF-8''a.wav".to_owned()),
        1 => Just("name*=UTF-8''model".to_owned()),
        1 => Just(r#"name="mo\"del""#.to_owned()),
        1 => Just(r#"name="model\\""#.to_owned()),
        1 => Just("x=1".to_owned()),
        1 => Just("name = \"model\"".to_owned()),
    ]
}

fn disposition() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            8 => Just("form-data"),
            1 => Just("Form-Data"),
            1 => Just("attachment"),
        ],
        prop::collection::vec(param(), 0..4),
        prop_oneof![Just("; "), Just(";"), Just(" ; ")],
    )
        .prop_map(|(kind, params, sep)| {
            let mut out = kind.to_owned();
            for p in params {
                out.push_str(sep);
                out.push_str(&p);
            }
            out
        })
}

fn header_name() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just("Content-Disposition"),
        2 => Just("content-disposition"),
        1 => Just("Content-Disposition "),
        1 => Just("CONTENT-DISPOSITION"),
    ]
}

/// One part: its headers and value; plain (as SDKs write them) three times in four.
fn part() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => plain_part(),
        1 => odd_part(),
    ]
}

fn plain_part() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop_oneof![Just("ok"), Just("secret")]
            .prop_map(|v| format!("Content-Disposition: form-data; name=\"model\"\r\n\r\n{v}")),
        2 => Just(
            "Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF"
                .to_owned()
        ),
        1 => Just("Content-Disposition: form-data; name=\"language\"\r\n\r\nen".to_owned()),
    ]
}

fn odd_part() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((header_name(), disposition()), 1..3),
        prop::bool::weighted(0.2),
        prop_oneof![Just("ok"), Just("secret"), Just("zzz")],
    )
        .prop_map(|(dispositions, typed, value)| {
            let mut head = String::new();
            for (name, d) in dispositions {
                head.push_str(&format!("{name}: {d}\r\n"));
            }
            if typed {
                head.push_str("Content-Type: text/plain\r\n");
            }
            format!("{head}\r\n{value}")
        })
}

fn body(boundary: &'static str) -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.1),
        prop::collection::vec(part(), 1..4),
        prop_oneof![Just(""), Just("  ")],
    )
        .prop_map(move |(preamble, parts, padding)| {
            let mut out = String::new();
            if preamble {
                out.push_str("preamble\r\n");
            }
            for p in parts {
                out.push_str(&format!("--{boundary}{padding}\r\n{p}\r\n"));
            }
            out.push_str(&format!("--{boundary}--\r\n"));
            out
        })
}

fn case() -> impl Strategy<Value = Case> {
    let content_type = prop_oneof![
        8 => Just("multipart/form-data; boundary=AAAA"),
        2 => Just("multipart/form-data; boundary=\"AAAA\""),
        1 => Just("multipart/form-data; boundary=AAAA; charset=utf-8"),
        1 => Just("multipart/form-data; boundary=AAAA; boundary=BBBB"),
        1 => Just("multipart/form-data; boundary=BBBB; BOUNDARY=AAAA"),
        1 => Just("multipart/form-data;boundary=AAAA"),
        1 => Just("Multipart/Form-Data; boundary=AAAA"),
    ];
    // Usually one form; sometimes a form for each boundary, one after the other (read with
    // the first boundary, the second form is the epilogue; with the last, the first is the
    // preamble).
    let bodies = prop_oneof![
        6 => body("AAAA"),
        2 => (body("AAAA"), body("BBBB")).prop_map(|(a, b)| a + &b),
        1 => (body("BBBB"), body("AAAA")).prop_map(|(a, b)| a + &b),
    ];
    (content_type, bodies).prop_map(|(content_type, body)| Case {
        content_type: content_type.to_owned(),
        body: body.into_bytes(),
    })
}

/// The `model` values Starlette reads in each case, or `None` where it refuses the form.
fn starlette_models(python: &str, cases: &[Case]) -> Vec<Option<Vec<Option<String>>>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/starlette_forms.py"
    );
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for c in cases {
        let hex: String = c.body.iter().map(|b| format!("{b:02x}")).collect();
        input.push_str(
            &serde_json::json!({"content_type": c.content_type, "body": hex}).to_string(),
        );
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "the Starlette reader failed");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), cases.len());
    lines
        .into_iter()
        .map(|line| {
            let fields = line.get("fields")?.as_array()?.clone();
            Some(
                fields
                    .iter()
                    .filter(|f| f[0] == "model")
                    .map(|f| f[1].as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn whenever_the_gateway_admits_a_form_starlette_reads_the_same_model() {
    let Some(python) = starlette_python() else {
        return;
    };
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let strategy = case();
    let cases: Vec<Case> = (0..CASES)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let theirs = starlette_models(python, &cases);
    let mut admitted = 0;
    for (case, theirs) in cases.iter().zip(&theirs) {
        let Ok(form) = Form::parse(Bytes::from(case.body.clone()), &case.content_type) else {
            continue;
        };
        admitted += 1;
        let shown = || {
            format!(
                "Content-Type: {}\n{}",
                case.content_type,
                String::from_utf8_lossy(&case.body)
            )
        };
        match theirs {
            // Starlette refuses it: so does the upstream.
            None => {}
            Some(models) => assert_eq!(
                models,
                &vec![Some(form.model().to_owned())],
                "the gateway read model {:?}, Starlette {models:?}, in\n{}",
                form.model(),
                shown()
            ),
        }
    }
    // The generator makes plain forms often enough for the property to say something.
    assert!(admitted >= CASES / 20, "only {admitted} forms admitted");
    eprintln!("{admitted} of {CASES} generated forms admitted, each read alike by Starlette");
}
