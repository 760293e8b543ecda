//! Known-answer tests of the merge-tag checks.
use super::*;
use serde_json::json;

fn tree(paths: &[&str]) -> Tree {
    let mut t = Tree::default();
    for p in paths {
        t.add_path(p);
    }
    t
}

fn roots() -> BTreeSet<String> {
    ["event", "steps", "secrets"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn paths_and_leaves() {
    let t = tree(&["contact.email", "contact.full_name", "order.total"]);
    assert_eq!(
        t.leaves(),
        vec!["contact.email", "contact.full_name", "order.total"]
    );
    assert!(t.allows("contact.email"));
    assert!(t.allows("contact"));
    assert!(t.allows("order.total.cents")); // a leaf may hold an object
    assert!(!t.allows("email"));
    assert!(!t.allows("contact.emial"));
}

#[test]
fn schema_properties_nested() {
    let s = json!({"type": "object", "properties": {
            "contact": {"type": "object", "properties": {"email": {"type": "string"}}},
            "items": {"type": "array"}}});
    let t = schema_tree(&s).unwrap();
    assert_eq!(t.leaves(), vec!["contact.email", "items"]);
    assert!(t.allows("items.0.sku"));
    assert!(!t.allows("contact.name"));
    assert_eq!(schema_tree(&json!({"type": "object"})), None);
    assert_eq!(schema_tree(&json!({"anyOf": [], "properties": {}})), None);
    // a member declared opaquely is open, not unknown-to-warn
    let t = schema_tree(&json!({"properties": {"x": {"oneOf": []}}})).unwrap();
    assert!(t.allows("x.y"));
}

#[test]
fn variables_from_minijinja() {
    let env = new_environment();
    let v = template_vars(
        &env,
        "{{ contact.email }} {% for i in items %}{{ i.sku }}{% endfor %}",
    );
    assert_eq!(
        v,
        ["contact.email", "items"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let v = template_vars(&env, &expression_wrapper("order.total > 100"));
    assert_eq!(v, ["order.total".to_string()].into_iter().collect());
    assert!(template_vars(&env, "{{ broken").is_empty());
}

#[test]
fn message_with_suggestion() {
    let t = tree(&["contact.email", "contact.full_name", "order.total"]);
    assert_eq!(
        check_path("email", &t, &roots(), "order.created events", "merge tag").unwrap(),
        "merge tag {{ email }} names no field of order.created events \
             (fields: contact.email, contact.full_name, order.total); did you mean contact.email?"
    );
    let m = check_path(
        "contact.emial",
        &t,
        &roots(),
        "order.created events",
        "merge tag",
    )
    .unwrap();
    assert!(m.ends_with("did you mean contact.email?"), "{m}");
    assert_eq!(check_path("event.id", &t, &roots(), "x", "merge tag"), None);
    assert_eq!(
        check_path("secrets.k", &t, &roots(), "x", "merge tag"),
        None
    );
    assert_eq!(
        check_path("contact.email", &t, &roots(), "x", "merge tag"),
        None
    );
    let m = check_path("zzz", &t, &roots(), "x", "merge tag").unwrap();
    assert!(!m.contains("did you mean"), "{m}");
}

#[test]
fn edit_distance() {
    assert_eq!(strsim_distance("emial", "email"), 2);
    assert_eq!(strsim_distance("", "ab"), 2);
    assert_eq!(strsim_distance("same", "same"), 0);
}

/// Warnings of loading `yaml` as a whole config.
fn warnings(name: &str, yaml: &str) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("hookyard-tags-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hookyard.yaml");
    std::fs::write(&file, yaml).unwrap();
    let opts = crate::config::LoadOptions {
        no_env: true,
        env: None,
    };
    let cfg = crate::config::load(&file, opts).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    cfg.warnings.iter().map(|w| w.message.clone()).collect()
}

const TRIGGERS: &str = "
event_types:
  - name: typed
    schema: { type: object, properties: { a: { type: object, properties: { b: { type: string } } } } }
triggers:
  - id: mapped
    verify: none
    event: order.created
    mapping: { contact.email: \"$.email\" }
  - id: raw
    verify: none
    event: order.created
";

#[test]
fn known_sources_only() {
    // A trigger with a mapping: known.
    let w = warnings(
        "mapped",
        &format!(
            "{TRIGGERS}workflows:\n  - id: w\n    when: {{ trigger: mapped, if: \"email\" }}\n    steps: [{{ request: {{ url: \"http://127.0.0.1:1/{{{{ contact.mail }}}}\" }} }}]\n"
        ),
    );
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("`email`") && w[0].ends_with("did you mean contact.email?"),
        "{w:?}"
    );
    assert!(w[1].contains("{{ contact.mail }}"), "{w:?}");
    // Pass-through trigger, or a type the event API may publish without a schema: unknown.
    for when in [
        "{ trigger: raw }",
        "{ event: order.created }",
        "{ trigger: [mapped, raw] }",
    ] {
        let w = warnings(
            "unknown",
            &format!(
                "{TRIGGERS}workflows:\n  - id: w\n    when: {when}\n    steps: [{{ request: {{ url: \"http://127.0.0.1:1/{{{{ nope }}}}\" }} }}]\n"
            ),
        );
        assert!(w.is_empty(), "{when}: {w:?}");
    }
    // A schema, but a trigger also passes bodies of that type through.
    let with_raw = TRIGGERS.replace(
        "  - id: raw\n    verify: none\n    event: order.created",
        "  - id: raw\n    verify: none\n    event: typed",
    );
    let w = warnings(
        "rawtyped",
        &format!(
            "{with_raw}workflows:\n  - id: w\n    when: {{ event: typed, if: \"nope\" }}\n    steps: [{{ request: {{ url: \"http://127.0.0.1:1/\" }} }}]\n"
        ),
    );
    assert!(w.is_empty(), "{w:?}");
    let w = warnings(
        "typed",
        &format!(
            "{TRIGGERS}workflows:\n  - id: w\n    when: {{ event: typed, if: \"nope\" }}\n    steps: [{{ request: {{ url: \"http://127.0.0.1:1/\" }} }}]\n"
        ),
    );
    assert_eq!(w.len(), 1, "{w:?}");
}

#[test]
fn subscription_if_uses_the_schema() {
    let sub = |events: &str, cond: &str| {
        format!(
            "{TRIGGERS}subscriptions:\n  - id: s\n    url: http://127.0.0.1:1/\n    events: {events}\n    if: \"{cond}\"\n"
        )
    };
    let w = warnings(
        "sub1",
        &sub("[typed]", "a.c == 1 and event.type == 'typed'"),
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("expression variable `a.c` names no field of typed events (fields: a.b)"),
        "{w:?}"
    );
    assert!(warnings("sub2", &sub("[typed]", "a.b == 1")).is_empty());
    assert!(warnings("sub3", &sub("[\"typ*\"]", "zzz")).is_empty());
}
