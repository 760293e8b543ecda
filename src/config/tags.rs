//! `hookyard validate` warnings for merge tags that name no field of the
//! events reaching a template (SPEC §5: the seed's "use {{contact.email}}
//! not {{email}}").
//!
//! For each workflow and each YAML subscription with an `if`, the data
//! fields its events can have are worked out as a [`Tree`]: from the event
//! type's JSON Schema `properties` and from the mappings of the triggers
//! that emit it. Only when every source is known (a mapping, or a declared
//! schema with `properties`) is anything checked: a trigger passing the
//! body through (no mapping), or the event API publishing a type without a
//! schema, makes the fields unknown and nothing is said. Variable names come
//! from minijinja's own parser (`undeclared_variables`), so loop and `set`
//! variables are never reported. Warnings only: a template can be right
//! about data we cannot see.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::Environment;
use serde_json::Value;

use super::error::{Diagnostics, Pos};
use super::load::RawSet;
use super::raw_items::{JsonKind, JsonNode, RawAction, RawMappingSource, RawTrigger};
use super::spanned::{Sp, StrOr};
use super::templates::{expression_wrapper, new_environment};

/// Known data fields: name → children (`None`: a leaf or an object whose
/// members are unknown; anything below it is accepted).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Tree(BTreeMap<String, Option<Tree>>);

impl Tree {
    /// Add a dotted path (`contact.email`); its last part is a leaf.
    fn add_path(&mut self, path: &str) {
        let mut node = self;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let entry = node.0.entry((*part).to_owned());
            let slot = entry.or_insert_with(|| if last { None } else { Some(Tree::default()) });
            if last {
                // A leaf is open: whatever it held may be an object.
                *slot = None;
                return;
            }
            match slot {
                Some(t) => node = t,
                None => return, // already open
            }
        }
    }

    /// Union: a field known in either; open wins over known members.
    fn merge(&mut self, other: Tree) {
        for (k, v) in other.0 {
            match (self.0.get_mut(&k), v) {
                (None, v) => {
                    self.0.insert(k, v);
                }
                (Some(slot), None) => *slot = None,
                (Some(Some(mine)), Some(theirs)) => mine.merge(theirs),
                (Some(None), Some(_)) => {}
            }
        }
    }

    /// Every known dotted path down to the leaves, sorted.
    fn leaves(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            match v {
                Some(t) if !t.0.is_empty() => {
                    out.extend(t.leaves().into_iter().map(|l| format!("{k}.{l}")))
                }
                _ => out.push(k.clone()),
            }
        }
        out
    }

    /// `true` when the dotted `path` may exist: every segment down to an
    /// open node is known.
    fn allows(&self, path: &str) -> bool {
        let mut node = self;
        for part in path.split('.') {
            match node.0.get(part) {
                None => return false,
                Some(None) => return true,
                Some(Some(t)) => node = t,
            }
        }
        true
    }
}

/// The fields a JSON Schema declares, when it declares them plainly
/// (`properties`, no combinators or references that could add others).
pub(crate) fn schema_tree(schema: &Value) -> Option<Tree> {
    let obj = schema.as_object()?;
    const OPAQUE: &[&str] = &[
        "$ref",
        "$dynamicRef",
        "allOf",
        "anyOf",
        "oneOf",
        "if",
        "patternProperties",
        "dependentSchemas",
        "unevaluatedProperties",
    ];
    if OPAQUE.iter().any(|k| obj.contains_key(*k)) {
        return None;
    }
    let props = obj.get("properties")?.as_object()?;
    let mut tree = Tree::default();
    for (name, sub) in props {
        tree.0.insert(name.clone(), schema_tree(sub));
    }
    Some(tree)
}

/// The fields a mapping produces: its output keys, dotted → nested.
fn mapping_tree(m: &BTreeMap<String, RawMappingSource>) -> Tree {
    let mut tree = Tree::default();
    for key in m.keys() {
        tree.add_path(key);
    }
    tree
}

/// The event types a trigger emits; `None` when taken from the request
/// without a `map` (any type).
fn trigger_types(t: &RawTrigger) -> Option<Vec<String>> {
    match &t.event.as_ref()?.value {
        StrOr::Str(s) => Some(vec![s.clone()]),
        StrOr::Map(from) => from.map.as_ref().map(|m| m.values().cloned().collect()),
    }
}

/// What we know of the fields of the events reaching a template.
struct Catalog<'a> {
    set: &'a RawSet,
}

impl Catalog<'_> {
    fn schema(&self, ty: &str) -> Option<Option<Tree>> {
        let it = self
            .set
            .event_types
            .iter()
            .find(|e| e.value.name.value == ty)?;
        Some(it.value.schema.as_ref().and_then(|s| schema_tree(&s.value)))
    }

    /// Fields of type `ty` (or any type) as emitted by trigger `t`.
    fn of_trigger(&self, t: &RawTrigger, ty: Option<&str>) -> Option<Tree> {
        let mapping = match ty {
            Some(ty) => t
                .mappings
                .as_ref()
                .and_then(|m| m.get(ty))
                .or(t.mapping.as_ref())
                .map(mapping_tree),
            // Any type: every mapping may apply; a type without one passes through.
            None => {
                let mut tree = mapping_tree(t.mapping.as_ref()?);
                for m in t.mappings.iter().flat_map(|m| m.values()) {
                    tree.merge(mapping_tree(m));
                }
                Some(tree)
            }
        };
        let schema = ty.and_then(|ty| self.schema(ty)).flatten();
        match (mapping, schema) {
            (Some(mut m), Some(s)) => {
                m.merge(s);
                Some(m)
            }
            (Some(m), None) => Some(m),
            // The body passes through: whatever the sender put in it.
            (None, _) => None,
        }
    }

    /// Fields of events of type `ty` from any source (triggers and the API).
    fn of_type(&self, ty: &str) -> Option<Tree> {
        // The event API may publish the type; only a schema bounds its data.
        let mut tree = self.schema(ty).flatten()?;
        for t in &self.set.triggers {
            let emits = match trigger_types(&t.value) {
                Some(types) => types.iter().any(|x| x == ty),
                None => true,
            };
            if emits {
                tree.merge(self.of_trigger(&t.value, Some(ty))?);
            }
        }
        Some(tree)
    }

    /// Fields of events matching `events` (types) and `triggers` (ids).
    fn matching(&self, events: &[String], triggers: &[String]) -> Option<Tree> {
        let mut tree = Tree::default();
        // A pattern (`order.*`) names no one type: rely on the triggers alone.
        let events: &[String] = if events.iter().any(|e| e.contains('*')) {
            if triggers.is_empty() {
                return None;
            }
            &[]
        } else {
            events
        };
        if triggers.is_empty() {
            if events.is_empty() {
                return None;
            }
            for ty in events {
                tree.merge(self.of_type(ty)?);
            }
            return Some(tree);
        }
        for id in triggers {
            let t = self.set.triggers.iter().find(|t| t.value.id.value == *id)?;
            match (trigger_types(&t.value), events.is_empty()) {
                (_, false) => {
                    for ty in events {
                        tree.merge(self.of_trigger(&t.value, Some(ty))?);
                    }
                }
                (Some(types), true) => {
                    for ty in &types {
                        tree.merge(self.of_trigger(&t.value, Some(ty))?);
                    }
                }
                (None, true) => tree.merge(self.of_trigger(&t.value, None)?),
            }
        }
        Some(tree)
    }
}

/// The variable paths (`contact.email`) a template reads from its context;
/// empty when it does not parse (that error is reported elsewhere).
pub(crate) fn template_vars(env: &Environment<'static>, source: &str) -> BTreeSet<String> {
    match env.template_from_str(source) {
        Ok(t) => t.undeclared_variables(true).into_iter().collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// The closest known field to `path`: same last segment, else a small
/// edit distance.
pub(crate) fn suggest(path: &str, known: &[String]) -> Option<String> {
    let last = path.rsplit('.').next().unwrap_or(path);
    if let Some(k) = known.iter().find(|k| k.rsplit('.').next() == Some(last)) {
        return Some(k.clone());
    }
    known
        .iter()
        .map(|k| (strsim_distance(path, k), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

/// Levenshtein distance (small strings only).
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The warning for `path`, or `None` when it may be a field.
/// `what` is `merge tag` or `expression variable`.
pub(crate) fn check_path(
    path: &str,
    tree: &Tree,
    allowed_roots: &BTreeSet<String>,
    types: &str,
    what: &str,
) -> Option<String> {
    let root = path.split('.').next().unwrap_or(path);
    if allowed_roots.contains(root) || tree.allows(path) {
        return None;
    }
    let known = tree.leaves();
    let shown = if what == "merge tag" {
        format!("{{{{ {path} }}}}")
    } else {
        format!("`{path}`")
    };
    let mut msg = format!(
        "{what} {shown} names no field of {types} (fields: {})",
        known.join(", ")
    );
    if let Some(s) = suggest(path, &known) {
        msg.push_str(&format!("; did you mean {s}?"));
    }
    Some(msg)
}

/// A template or expression (`true`) with its position.
type Spot = (Pos, String, bool);

/// Templates of one request with their positions.
fn request_templates(a: &RawAction, out: &mut Vec<Spot>) {
    if let StrOr::Str(u) = &a.url.value {
        out.push((a.url.pos.clone(), u.clone(), false));
    }
    for m in [&a.headers, &a.query].into_iter().flatten() {
        out.extend(m.values().map(|v| (v.pos.clone(), v.value.clone(), false)));
    }
    if let Some(body) = &a.body {
        if let Some(j) = &body.json {
            json_leaves(j, out);
        }
        for v in body.form.iter().flat_map(|f| f.values()) {
            out.push((v.pos.clone(), v.value.clone(), false));
        }
        if let Some(r) = &body.raw {
            out.push((r.template.pos.clone(), r.template.value.clone(), false));
        }
    }
}

fn json_leaves(n: &JsonNode, out: &mut Vec<Spot>) {
    match &n.value {
        JsonKind::Str(s) => out.push((n.pos.clone(), s.clone(), false)),
        JsonKind::Array(items) => items.iter().for_each(|i| json_leaves(i, out)),
        JsonKind::Object(fields) => fields.iter().for_each(|(_, v)| json_leaves(v, out)),
        _ => {}
    }
}

fn names(v: &Option<super::spanned::OneOrMany<Sp<String>>>) -> Vec<String> {
    v.iter()
        .flat_map(|o| o.0.iter().map(|s| s.value.clone()))
        .collect()
}

/// Check every workflow's and subscription's templates; adds warnings.
pub(crate) fn check(set: &RawSet, diags: &mut Diagnostics) {
    let env = new_environment();
    let mut roots: BTreeSet<String> = ["event", "steps", "secrets"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    roots.extend(env.globals().map(|(k, _)| k.to_owned()));
    let catalog = Catalog { set };
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut jobs: Vec<(String, Option<Tree>, Vec<Spot>)> = Vec::new();
    for wf in &set.workflows {
        let when = &wf.value.when.value;
        let (events, triggers) = (names(&when.event), names(&when.trigger));
        let mut temps = Vec::new();
        if let Some(c) = &when.condition {
            temps.push((c.pos.clone(), c.value.clone(), true));
        }
        for step in &wf.value.steps.value {
            if let Some(r) = &step.request {
                request_templates(&RawAction::from(r.clone()), &mut temps);
            } else if let Some(id) = &step.action {
                if let Some(a) = set.actions.iter().find(|a| a.value.id.value == id.value) {
                    request_templates(&a.value, &mut temps);
                }
            }
        }
        let label = if events.is_empty() {
            // The types the triggers emit, when they are fixed.
            let types: Option<Vec<String>> = triggers
                .iter()
                .map(|id| {
                    let t = set.triggers.iter().find(|t| t.value.id.value == *id)?;
                    trigger_types(&t.value)
                })
                .collect::<Option<Vec<Vec<String>>>>()
                .map(|v| v.concat());
            match types {
                Some(mut t) if !t.is_empty() => {
                    t.sort();
                    t.dedup();
                    format!(
                        "{} events from trigger {}",
                        t.join(", "),
                        triggers.join(", ")
                    )
                }
                _ => format!("events from trigger {}", triggers.join(", ")),
            }
        } else {
            format!("{} events", events.join(", "))
        };
        let tree = catalog.matching(&events, &triggers);
        jobs.push((label, tree, temps));
    }
    for sub in &set.subscriptions {
        let Some(c) = &sub.value.condition else {
            continue;
        };
        let events: Vec<String> = sub.value.events.0.iter().map(|s| s.value.clone()).collect();
        let tree = catalog.matching(&events, &[]);
        let temps = vec![(c.pos.clone(), c.value.clone(), true)];
        jobs.push((format!("{} events", events.join(", ")), tree, temps));
    }
    for (label, tree, temps) in jobs {
        let Some(tree) = tree else { continue };
        for (pos, source, is_expr) in temps {
            let src = if is_expr {
                expression_wrapper(&source)
            } else {
                source
            };
            let what = if is_expr {
                "expression variable"
            } else {
                "merge tag"
            };
            for path in template_vars(&env, &src) {
                if let Some(msg) = check_path(&path, &tree, &roots, &label, what) {
                    if seen.insert((pos.to_string(), msg.clone())) {
                        diags.warn(&pos, msg);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "tags_tests.rs"]
mod tests;
