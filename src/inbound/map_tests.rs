//! Known-answer tests of the mapping rules (see `map.rs`).

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::net::{IpAddr, Ipv4Addr};

use axum::http::{HeaderMap, HeaderValue};
use serde_json::json;
use serde_json_path::JsonPath;

use super::*;
use crate::config::templates::new_environment;
use crate::config::{Template, Templates};
use crate::inbound::verify::{Unverified, VerifyRules};

fn field(key: &str, source: Source) -> MappingField {
    MappingField {
        key: key.into(),
        output: key.split('.').map(str::to_owned).collect(),
        source,
        value_type: None,
        required: false,
        default: None,
    }
}

fn path(p: &str) -> Source {
    Source::Path(JsonPath::parse(p).unwrap())
}

fn templates(defs: &[(&str, &str)]) -> Templates {
    let mut env = new_environment();
    for (n, s) in defs {
        env.add_template_owned(n.to_string(), s.to_string())
            .unwrap();
    }
    Templates::new(env, crate::config::templates::DEFAULT_MAX_OUTPUT)
}

fn run(
    fields: Vec<MappingField>,
    body: &str,
    content_type: &str,
    headers: &[(&'static str, &'static str)],
    query: Option<&str>,
    t: &Templates,
) -> Result<Mapped, InboundError> {
    let mut map = HeaderMap::new();
    map.insert("content-type", HeaderValue::from_str(content_type).unwrap());
    for (k, v) in headers {
        map.insert(*k, HeaderValue::from_static(v));
    }
    let verified = Unverified::new(&map, body.as_bytes(), IpAddr::V4(Ipv4Addr::LOCALHOST))
        .verify(&VerifyRules::default(), &[], Timestamp::now())
        .unwrap();
    let req = ParsedRequest::parse(verified, query)?;
    apply(Some(&Mapping { fields }), req, t)
}

#[test]
fn nested_keys_paths_headers_query_and_values() {
    let t = templates(&[]);
    let fields = vec![
        field("contact.email", path("$.customer.email")),
        field("contact.tags", path("$.tags[*]")),
        field("order.shop", Source::Header("X-Shop".into())),
        field("order.ref", Source::Query("ref".into())),
        field("kind", Source::Value(json!("order"))),
        field("missing", path("$.nope")),
    ];
    let body = r#"{"customer":{"email":"a@b.c"},"tags":["x","y"]}"#;
    let out = run(
        fields,
        body,
        "application/json",
        &[("x-shop", "s1")],
        Some("ref=r9"),
        &t,
    )
    .unwrap();
    assert_eq!(
        out.data,
        json!({"contact": {"email": "a@b.c", "tags": ["x", "y"]},
               "order": {"shop": "s1", "ref": "r9"}, "kind": "order"})
    );
    assert_eq!(out.timestamp, None);
}

#[test]
fn required_default_and_type_conversions() {
    let t = templates(&[]);
    let mut total = field("total", path("$.total"));
    total.value_type = Some(ValueType::Number);
    total.required = true;
    let mut qty = field("qty", path("$.qty"));
    qty.value_type = Some(ValueType::Integer);
    let mut paid = field("paid", path("$.paid"));
    paid.value_type = Some(ValueType::Boolean);
    let mut status = field("status", path("$.status"));
    status.default = Some(json!("new"));
    let mut code = field("code", path("$.code"));
    code.value_type = Some(ValueType::String);
    let body = r#"{"total":"12.50","qty":"3","paid":"TRUE","code":42}"#;
    let out = run(
        vec![total.clone(), qty.clone(), paid, status, code],
        body,
        "application/json",
        &[],
        None,
        &t,
    )
    .unwrap();
    assert_eq!(
        out.data,
        json!({"total": 12.5, "qty": 3, "paid": true, "status": "new", "code": "42"})
    );

    let err = run(
        vec![total.clone()],
        r#"{"total":"lots"}"#,
        "application/json",
        &[],
        None,
        &t,
    )
    .unwrap_err();
    assert_eq!(err.status().as_u16(), 422);
    assert!(err.to_string().contains("total"), "{err}");
    let err = run(vec![total], r#"{}"#, "application/json", &[], None, &t).unwrap_err();
    assert!(err.to_string().contains("required field `total`"), "{err}");
    let err = run(
        vec![qty],
        r#"{"qty": 1.5}"#,
        "application/json",
        &[],
        None,
        &t,
    )
    .unwrap_err();
    assert_eq!(err.code(), "mapping_failed");
}

#[test]
fn templates_see_body_headers_query_and_convert() {
    let t = templates(&[
        ("name", "{{ body.first }} {{ body.last }}"),
        ("num", "{{ query.n }}"),
        ("ua", "{{ headers['user-agent'] }}"),
        ("empty", "{{ body.absent }}"),
    ]);
    let tpl = |n: &str| {
        Source::Template(Template {
            name: n.into(),
            source: String::new(),
        })
    };
    let mut num = field("n", tpl("num"));
    num.value_type = Some(ValueType::Integer);
    let fields = vec![
        field("full", tpl("name")),
        num,
        field("ua", tpl("ua")),
        field("gone", tpl("empty")),
    ];
    let out = run(
        fields,
        r#"{"first":"Ada","last":"L"}"#,
        "application/json",
        &[("user-agent", "t/1")],
        Some("n=7"),
        &t,
    )
    .unwrap();
    assert_eq!(out.data, json!({"full": "Ada L", "n": 7, "ua": "t/1"}));
}

#[test]
fn form_bodies_and_timestamps() {
    let t = templates(&[]);
    let fields = vec![
        field("name", path("$.name")),
        field("tags", path("$.tag")),
        field("timestamp", path("$.ts")),
    ];
    let out = run(
        fields.clone(),
        "name=Ada+L&tag=a&tag=b&ts=1700000000",
        "application/x-www-form-urlencoded; charset=utf-8",
        &[],
        None,
        &t,
    )
    .unwrap();
    assert_eq!(out.data, json!({"name": "Ada L", "tags": ["a", "b"]}));
    assert_eq!(
        out.timestamp,
        Some(Timestamp::from_second(1_700_000_000).unwrap())
    );

    let out = run(
        fields.clone(),
        r#"{"ts":"2026-01-31T12:00:00+01:00"}"#,
        "application/json",
        &[],
        None,
        &t,
    )
    .unwrap();
    assert_eq!(out.timestamp.unwrap().to_string(), "2026-01-31T11:00:00Z");
    let err = run(
        fields,
        r#"{"ts":"yesterday"}"#,
        "application/json",
        &[],
        None,
        &t,
    )
    .unwrap_err();
    assert_eq!(err.status().as_u16(), 422);
}

#[test]
fn bodies_parse_or_422_and_pass_through_without_mapping() {
    assert_eq!(parse_body(b"", "application/json").unwrap(), json!({}));
    assert_eq!(parse_body(b"[1,2]", "").unwrap(), json!([1, 2]));
    let err = parse_body(b"{nope", "application/json").unwrap_err();
    assert_eq!(err.code(), "invalid_body");
    // Deep nesting is refused by serde_json's recursion limit, not a stack overflow.
    let deep = "[".repeat(100_000);
    assert!(parse_body(deep.as_bytes(), "application/json").is_err());
}

#[test]
fn nesting_under_a_scalar_is_a_clear_error() {
    let mut root = Map::new();
    insert_nested(&mut root, &["a".into()], json!(1)).unwrap();
    let err = insert_nested(&mut root, &["a".into(), "b".into()], json!(2)).unwrap_err();
    assert!(err.contains("`a`"), "{err}");
}

#[test]
fn conversions_known_answers() {
    assert_eq!(convert(json!("10"), ValueType::Integer).unwrap(), json!(10));
    assert_eq!(convert(json!(10.0), ValueType::Integer).unwrap(), json!(10));
    assert!(convert(json!("1e400"), ValueType::Number).is_err());
    assert_eq!(convert(json!("[1]"), ValueType::Array).unwrap(), json!([1]));
    assert!(convert(json!("[1]"), ValueType::Object).is_err());
    assert!(convert(json!({"a": 1}), ValueType::String).is_err());
    assert_eq!(
        convert(json!(false), ValueType::String).unwrap(),
        json!("false")
    );
}

#[test]
fn template_over_an_absent_parent_is_a_missing_field() {
    let t = templates(&[("deep", "{{ body.customer.first_name }}")]);
    let tpl = || {
        Source::Template(Template {
            name: "deep".into(),
            source: String::new(),
        })
    };
    // Optional: absent, and the rest of the mapping still applies.
    let fields = vec![field("name", tpl()), field("id", path("$.id"))];
    let out = run(fields, r#"{"id": 3}"#, "application/json", &[], None, &t).unwrap();
    assert_eq!(out.data, json!({"id": 3}));
    // Required: the usual "required field missing" 422.
    let mut required = field("name", tpl());
    required.required = true;
    let err = run(vec![required], "{}", "application/json", &[], None, &t).unwrap_err();
    assert!(err.to_string().contains("required field `name`"), "{err}");
}
