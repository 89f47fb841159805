//! SCIM PATCH (RFC 7644 §3.5.2): `add`, `replace` and `remove` operations applied, in order, to
//! a resource's JSON. The result is then read like a PUT body, so a PATCH obeys exactly the
//! rules a replace does; if any operation fails, nothing is written.

use super::filter::{self, get, Filter};
use super::resources::{Kind, PATCH_OP};
use super::ScimError;
use serde_json::{Map, Value};

/// Most operations one PATCH may carry.
pub const MAX_OPERATIONS: usize = 100;

/// A PATCH path: `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub`, with canonical
/// attribute names.
#[derive(Debug)]
struct Path {
    attr: &'static str,
    multi: bool,
    subs: &'static [&'static str],
    filter: Option<Filter>,
    sub: Option<&'static str>,
}

fn invalid_path(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidPath", detail)
}

fn no_target(detail: impl Into<String>) -> ScimError {
    ScimError::bad("noTarget", detail)
}

fn parse_path(raw: &str, kind: Kind) -> Result<Path, ScimError> {
    let (head, filter, tail) = match raw.find('[') {
        Some(open) => {
            let close = raw
                .rfind(']')
                .filter(|c| *c > open)
                .ok_or_else(|| invalid_path(format!("{raw:?}: a bracket is not closed")))?;
            let tail = &raw[close + 1..];
            let tail = match tail {
                "" => None,
                t => Some(t.strip_prefix('.').ok_or_else(|| {
                    invalid_path(format!("{raw:?}: only .subAttribute may follow ]"))
                })?),
            };
            let f = filter::parse(&raw[open + 1..close])
                .map_err(|e| invalid_path(format!("{raw:?}: {}", e.0)))?;
            (&raw[..open], Some(f), tail)
        }
        None => (raw, None, None),
    };
    let p = filter::parse_attr_path(head).map_err(|e| invalid_path(e.0))?;
    if filter.is_some() && p.sub.is_some() {
        return Err(invalid_path(format!("{raw:?} is not a path")));
    }
    let sub = p.sub.as_deref().or(tail);
    let Some((attr, subs, multi, writable)) = kind.attribute(&p.attr) else {
        return Err(invalid_path(format!(
            "{raw:?}: {} has no attribute {:?}",
            kind.endpoint(),
            p.attr
        )));
    };
    let sub = match sub {
        None => None,
        Some(s) => Some(
            subs.iter()
                .find(|x| x.eq_ignore_ascii_case(s))
                .copied()
                .ok_or_else(|| {
                    invalid_path(format!("{raw:?}: {attr} has no sub-attribute {s:?}"))
                })?,
        ),
    };
    if filter.is_some() && !multi {
        return Err(invalid_path(format!("{raw:?}: {attr} is not multi-valued")));
    }
    if let Some(f) = &filter {
        for (named, _) in f.paths() {
            // Inside brackets the paths are sub-attributes of `attr`.
            if !subs.iter().any(|x| x.eq_ignore_ascii_case(&named)) {
                return Err(invalid_path(format!(
                    "{raw:?}: {attr} has no sub-attribute {named:?}"
                )));
            }
        }
    }
    if !writable || attr == "schemas" {
        return Err(ScimError::bad("mutability", format!("{attr} is read-only")));
    }
    Ok(Path {
        attr,
        multi,
        subs,
        filter,
        sub,
    })
}

/// An object's keys spelled as the schema spells them; unknown sub-attributes are dropped.
fn canonical(v: &Value, subs: &[&'static str]) -> Value {
    match v {
        Value::Object(o) if !subs.is_empty() => Value::Object(
            o.iter()
                .filter_map(|(k, v)| {
                    subs.iter()
                        .find(|s| s.eq_ignore_ascii_case(k))
                        .map(|s| (s.to_string(), v.clone()))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| canonical(i, subs)).collect()),
        other => other.clone(),
    }
}

fn merge(target: &mut Value, value: &Value) {
    match (target.as_object_mut(), value.as_object()) {
        (Some(t), Some(v)) => {
            for (k, x) in v {
                t.insert(k.clone(), x.clone());
            }
        }
        _ => *target = value.clone(),
    }
}

fn slot<'a>(resource: &'a mut Map<String, Value>, attr: &str) -> &'a mut Value {
    // Take over a differently-cased key, so the resource has one spelling.
    if let Some(k) = resource
        .keys()
        .find(|k| k.eq_ignore_ascii_case(attr) && k.as_str() != attr)
        .cloned()
    {
        if let Some(v) = resource.remove(&k) {
            resource.insert(attr.to_string(), v);
        }
    }
    resource.entry(attr.to_string()).or_insert(Value::Null)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Add,
    Replace,
    Remove,
}

fn matching<'a>(
    items: &'a mut [Value],
    f: &Filter,
    path: &str,
) -> Result<Vec<&'a mut Value>, ScimError> {
    let hits: Vec<&mut Value> = items
        .iter_mut()
        .filter(|i| f.matches(i, &|_| true))
        .collect();
    if hits.is_empty() {
        return Err(no_target(format!("{path}: no value matches the filter")));
    }
    Ok(hits)
}

fn apply_one(
    resource: &mut Map<String, Value>,
    op: OpKind,
    path: &Path,
    raw: &str,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let value = value.map(|v| canonical(v, path.subs));
    let need = || {
        value.clone().ok_or_else(|| {
            ScimError::bad(
                "invalidValue",
                format!("{raw}: the operation needs a value"),
            )
        })
    };
    let target = slot(resource, path.attr);
    match (&path.filter, path.sub) {
        (None, None) => match op {
            OpKind::Remove => {
                // Some identity providers (Entra ID) remove members by sending them as the value
                // of a path-only remove; do what they mean rather than empty the group.
                if let (true, Some(Value::Array(gone)), Value::Array(items)) =
                    (path.multi, &value, &mut *target)
                {
                    let ids: Vec<&Value> = gone.iter().filter_map(|g| get(g, "value")).collect();
                    items.retain(|i| !get(i, "value").is_some_and(|v| ids.contains(&v)));
                } else {
                    *target = Value::Null;
                }
            }
            OpKind::Add if path.multi => {
                let add = match need()? {
                    Value::Array(a) => a,
                    one => vec![one],
                };
                match target {
                    Value::Array(items) => items.extend(add),
                    other => *other = Value::Array(add),
                }
            }
            OpKind::Replace if path.multi => {
                *target = match need()? {
                    a @ Value::Array(_) => a,
                    one => Value::Array(vec![one]),
                }
            }
            _ if !path.subs.is_empty() && target.is_object() => merge(target, &need()?),
            _ => *target = need()?,
        },
        (None, Some(sub)) => {
            let items: Vec<&mut Value> = match target {
                Value::Array(items) if path.multi => items.iter_mut().collect(),
                Value::Null if op != OpKind::Remove && !path.multi => {
                    *target = Value::Object(Map::new());
                    vec![target]
                }
                Value::Object(_) => vec![target],
                _ if op == OpKind::Remove => vec![],
                _ => return Err(no_target(format!("{raw}: there is no value to change"))),
            };
            for item in items {
                if let Value::Object(o) = item {
                    if op == OpKind::Remove {
                        o.remove(sub);
                    } else {
                        o.insert(sub.to_string(), need()?);
                    }
                }
            }
        }
        (Some(f), sub) => {
            let Value::Array(items) = target else {
                return Err(no_target(format!("{raw}: no value matches the filter")));
            };
            match (op, sub) {
                (OpKind::Remove, None) => {
                    let before = items.len();
                    items.retain(|i| !f.matches(i, &|_| true));
                    if items.len() == before {
                        return Err(no_target(format!("{raw}: no value matches the filter")));
                    }
                }
                (OpKind::Remove, Some(sub)) => {
                    for hit in matching(items, f, raw)? {
                        if let Value::Object(o) = hit {
                            o.remove(sub);
                        }
                    }
                }
                (_, Some(sub)) => {
                    let v = need()?;
                    for hit in matching(items, f, raw)? {
                        if let Value::Object(o) = hit {
                            o.insert(sub.to_string(), v.clone());
                        }
                    }
                }
                (_, None) => {
                    let v = need()?;
                    for hit in matching(items, f, raw)? {
                        merge(hit, &v);
                    }
                }
            }
        }
    }
    if resource.get(path.attr).is_some_and(Value::is_null) {
        resource.remove(path.attr);
    }
    Ok(())
}

/// Applies a PatchOp body to `resource` (the resource as rendered).
pub fn apply(resource: &mut Value, kind: Kind, body: &Value) -> Result<(), ScimError> {
    let syntax = |d: &str| ScimError::bad("invalidSyntax", d.to_string());
    match get(body, "schemas") {
        Some(Value::Array(s)) if s.iter().any(|x| x.as_str() == Some(PATCH_OP)) => {}
        _ => {
            return Err(syntax(
                "a PATCH body's schemas must hold urn:ietf:params:scim:api:messages:2.0:PatchOp",
            ))
        }
    }
    let Some(Value::Array(ops)) = get(body, "Operations") else {
        return Err(syntax("a PATCH body needs a list of Operations"));
    };
    if ops.is_empty() || ops.len() > MAX_OPERATIONS {
        return Err(ScimError::bad(
            "invalidValue",
            format!("a PATCH carries 1 to {MAX_OPERATIONS} operations"),
        ));
    }
    let Value::Object(r) = resource else {
        return Err(ScimError::internal("rendered resource is not an object"));
    };
    for op in ops {
        let name = get(op, "op").and_then(Value::as_str).unwrap_or_default();
        let kind_of = match name.to_ascii_lowercase().as_str() {
            "add" => OpKind::Add,
            "replace" => OpKind::Replace,
            "remove" => OpKind::Remove,
            _ => {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("op {name:?} is not add, replace or remove"),
                ))
            }
        };
        let value = get(op, "value");
        match get(op, "path") {
            Some(Value::String(raw)) => {
                let path = parse_path(raw, kind)?;
                apply_one(r, kind_of, &path, raw, value)?;
            }
            Some(_) => return Err(invalid_path("path must be a string")),
            None if kind_of == OpKind::Remove => {
                return Err(no_target("a remove operation needs a path"))
            }
            None => {
                let Some(Value::Object(attrs)) = value else {
                    return Err(ScimError::bad(
                        "invalidValue",
                        "without a path, the value must be an object of attributes",
                    ));
                };
                for (k, v) in attrs {
                    // A schema URN key holds that schema's attributes; read-only and unknown
                    // attributes are ignored, as in a PUT.
                    if k.eq_ignore_ascii_case(kind.schema()) {
                        if let Value::Object(inner) = v {
                            for (ik, iv) in inner {
                                if let Ok(path) = parse_path(ik, kind) {
                                    apply_one(r, kind_of, &path, ik, Some(iv))?;
                                }
                            }
                        }
                        continue;
                    }
                    match parse_path(k, kind) {
                        Ok(path) if path.filter.is_none() => {
                            apply_one(r, kind_of, &path, k, Some(v))?
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(resource: Value, kind: Kind, ops: Value) -> Result<Value, ScimError> {
        let mut r = resource;
        apply(
            &mut r,
            kind,
            &json!({ "schemas": [PATCH_OP], "Operations": ops }),
        )?;
        Ok(r)
    }

    fn user() -> Value {
        json!({
            "id": "1", "userName": "ada", "active": true,
            "name": { "givenName": "Ada" },
            "emails": [{ "value": "a@example.com", "type": "work", "primary": true }]
        })
    }

    #[test]
    fn operations_change_what_their_paths_name() {
        let r = patch(user(), Kind::User, json!([
            { "op": "Replace", "path": "active", "value": false },
            { "op": "add", "path": "name.familyName", "value": "Lovelace" },
            { "op": "add", "path": "emails", "value": [{ "value": "b@example.com", "type": "home" }] },
            { "op": "replace", "path": "emails[type eq \"work\"].value", "value": "c@example.com" },
            { "op": "remove", "path": "emails[type eq \"home\"]" },
        ])).unwrap();
        assert_eq!(r["active"], false);
        assert_eq!(
            r["name"],
            json!({ "givenName": "Ada", "familyName": "Lovelace" })
        );
        assert_eq!(
            r["emails"],
            json!([{ "value": "c@example.com", "type": "work", "primary": true }])
        );
        let r = patch(user(), Kind::User, json!([
            { "op": "replace", "value": { "displayName": "Ada L", "NAME": { "familyname": "L" } } },
            { "op": "remove", "path": "urn:ietf:params:scim:schemas:core:2.0:User:emails" },
        ])).unwrap();
        assert_eq!(r["displayName"], "Ada L");
        assert_eq!(r["name"], json!({ "givenName": "Ada", "familyName": "L" }));
        assert!(r.get("emails").is_none());
    }

    #[test]
    fn members_are_added_and_removed() {
        let g = json!({ "id": "g", "displayName": "staff", "members": [{ "value": "u1" }, { "value": "u2" }] });
        let r = patch(
            g.clone(),
            Kind::Group,
            json!([
                { "op": "add", "path": "members", "value": [{ "value": "u3" }] },
                { "op": "remove", "path": "members[value eq \"u1\"]" },
            ]),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{ "value": "u2" }, { "value": "u3" }]));
        let r = patch(
            g,
            Kind::Group,
            json!([
                { "op": "remove", "path": "members", "value": [{ "value": "u2" }] },
            ]),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{ "value": "u1" }]));
    }

    #[test]
    fn bad_operations_are_refused_with_their_scim_type() {
        let t = |ops: Value| patch(user(), Kind::User, ops).unwrap_err().scim_type;
        assert_eq!(
            t(json!([{ "op": "replace", "path": "nickName", "value": "x" }])),
            Some("invalidPath")
        );
        assert_eq!(
            t(json!([{ "op": "replace", "path": "name.nick", "value": "x" }])),
            Some("invalidPath")
        );
        assert_eq!(
            t(json!([{ "op": "replace", "path": "emails[type eq", "value": "x" }])),
            Some("invalidPath")
        );
        assert_eq!(
            t(json!([{ "op": "replace", "path": "emails[nick eq \"x\"]", "value": {} }])),
            Some("invalidPath")
        );
        assert_eq!(
            t(json!([{ "op": "replace", "path": "id", "value": "x" }])),
            Some("mutability")
        );
        assert_eq!(
            t(json!([{ "op": "replace", "path": "meta.created", "value": "x" }])),
            Some("mutability")
        );
        assert_eq!(t(json!([{ "op": "remove" }])), Some("noTarget"));
        assert_eq!(
            t(json!([{ "op": "remove", "path": "emails[type eq \"home\"]" }])),
            Some("noTarget")
        );
        assert_eq!(
            t(json!([{ "op": "add", "path": "displayName" }])),
            Some("invalidValue")
        );
        assert_eq!(
            t(json!([{ "op": "move", "path": "displayName", "value": "x" }])),
            Some("invalidValue")
        );
        assert_eq!(t(json!([])), Some("invalidValue"));
        let mut r = user();
        let e = apply(&mut r, Kind::User, &json!({ "Operations": [] })).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidSyntax"));
    }
}
