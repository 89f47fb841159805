//! SCIM JSON for Users and Groups (RFC 7643): resources rendered from the services' records,
//! request bodies read into the services' inputs, the schemas and resource types the server
//! publishes, weak ETags, and `attributes` / `excludedAttributes`.

use super::filter::get;
use super::ScimError;
use crate::service::{ScimGroupInput, ScimGroupView, ScimUser, ScimUserInput};
use keyplane_core::scim::{ScimEmail, ScimProfile};
use keyplane_core::UserStatus;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// Most resources one list response holds (`filter.maxResults`).
pub const MAX_RESULTS: usize = 200;

/// The two resource types, with what differs between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn schema(self) -> &'static str {
        match self {
            Kind::User => USER_SCHEMA,
            Kind::Group => GROUP_SCHEMA,
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }

    /// The attributes a resource of this kind has: (name, sub-attributes, multi-valued,
    /// writable). Common attributes (`id`, `externalId`, `meta`, `schemas`) included.
    pub fn attributes(self) -> &'static [(&'static str, &'static [&'static str], bool, bool)] {
        const META: &[&str] = &[
            "resourceType",
            "created",
            "lastModified",
            "location",
            "version",
        ];
        match self {
            Kind::User => &[
                ("schemas", &[], true, true),
                ("id", &[], false, false),
                ("externalId", &[], false, true),
                ("meta", META, false, false),
                ("userName", &[], false, true),
                (
                    "name",
                    &[
                        "formatted",
                        "familyName",
                        "givenName",
                        "middleName",
                        "honorificPrefix",
                        "honorificSuffix",
                    ],
                    false,
                    true,
                ),
                ("displayName", &[], false, true),
                ("active", &[], false, true),
                (
                    "emails",
                    &["value", "type", "primary", "display"],
                    true,
                    true,
                ),
                ("groups", &["value", "$ref", "display", "type"], true, false),
            ],
            Kind::Group => &[
                ("schemas", &[], true, true),
                ("id", &[], false, false),
                ("externalId", &[], false, true),
                ("meta", META, false, false),
                ("displayName", &[], false, true),
                ("members", &["value", "$ref", "type"], true, true),
            ],
        }
    }

    /// The attribute's canonical spelling and definition, found case-insensitively.
    #[allow(clippy::type_complexity)]
    pub fn attribute(
        self,
        name: &str,
    ) -> Option<(&'static str, &'static [&'static str], bool, bool)> {
        self.attributes()
            .iter()
            .find(|(n, ..)| n.eq_ignore_ascii_case(name))
            .copied()
    }

    /// Whether `attr[.sub]` names an attribute of this kind.
    pub fn knows(self, attr: &str, sub: Option<&str>) -> bool {
        match (self.attribute(attr), sub) {
            (Some(_), None) => true,
            (Some((_, subs, ..)), Some(s)) => subs.iter().any(|x| x.eq_ignore_ascii_case(s)),
            (None, _) => false,
        }
    }

    /// Attributes whose strings compare exactly in filters.
    pub fn case_exact(attr: &str) -> bool {
        ["id", "externalId", "members", "groups"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(attr))
    }
}

/// `W/"<first 16 bytes of the SHA-256 of the resource without meta>"`: the ETag and
/// `meta.version`. It changes with anything the resource shows, whoever changed it.
pub fn etag_of(resource: &Value) -> String {
    let mut without_meta = resource.clone();
    if let Some(o) = without_meta.as_object_mut() {
        o.remove("meta");
    }
    let digest = Sha256::digest(without_meta.to_string().as_bytes());
    format!("W/\"{}\"", hex::encode(&digest[..16]))
}

fn with_meta(
    mut resource: Value,
    kind: Kind,
    created: String,
    modified: String,
    location: String,
) -> Value {
    let version = etag_of(&resource);
    resource["meta"] = json!({
        "resourceType": match kind { Kind::User => "User", Kind::Group => "Group" },
        "created": created,
        "lastModified": modified,
        "location": location,
        "version": version,
    });
    resource
}

pub fn user_json(u: &ScimUser, base: &str) -> Value {
    let p = &u.profile;
    let mut r = json!({
        "schemas": [USER_SCHEMA],
        "id": u.user.id,
        "userName": u.user.username,
        "active": u.user.status == UserStatus::Active,
    });
    // A provisioned user shows the displayName SCIM gave (none if none); any other user the
    // display name an administrator gave.
    let display = if u.provisioned {
        p.display_name.as_ref()
    } else {
        Some(&u.user.display_name)
    };
    if let Some(d) = display {
        r["displayName"] = json!(d);
    }
    if let Some(e) = &p.external_id {
        r["externalId"] = json!(e);
    }
    let mut name = Map::new();
    for (key, value) in [
        ("formatted", &p.formatted),
        ("familyName", &p.family_name),
        ("givenName", &p.given_name),
        ("middleName", &p.middle_name),
        ("honorificPrefix", &p.honorific_prefix),
        ("honorificSuffix", &p.honorific_suffix),
    ] {
        if let Some(v) = value {
            name.insert(key.into(), json!(v));
        }
    }
    if !name.is_empty() {
        r["name"] = Value::Object(name);
    }
    if !p.emails.is_empty() {
        r["emails"] = Value::Array(
            p.emails
                .iter()
                .map(|e| {
                    let mut o = json!({ "value": e.value, "primary": e.primary });
                    if let Some(k) = &e.kind {
                        o["type"] = json!(k);
                    }
                    o
                })
                .collect(),
        );
    }
    if !u.groups.is_empty() {
        r["groups"] = Value::Array(
            u.groups
                .iter()
                .map(|(id, name)| {
                    json!({ "value": id, "display": name, "$ref": format!("{base}/Groups/{id}"), "type": "direct" })
                })
                .collect(),
        );
    }
    with_meta(
        r,
        Kind::User,
        u.user.created_at.to_rfc3339(),
        u.updated_at.to_rfc3339(),
        format!("{base}/Users/{}", u.user.id),
    )
}

pub fn group_json(g: &ScimGroupView, base: &str) -> Value {
    let mut r = json!({
        "schemas": [GROUP_SCHEMA],
        "id": g.group.id,
        "displayName": g.group.display_name,
        "members": g.members.iter().map(|(id, _)| json!({
            "value": id, "type": "User", "$ref": format!("{base}/Users/{id}"),
        })).collect::<Vec<_>>(),
    });
    if let Some(e) = &g.group.external_id {
        r["externalId"] = json!(e);
    }
    with_meta(
        r,
        Kind::Group,
        g.group.created_at.to_rfc3339(),
        g.group.updated_at.to_rfc3339(),
        format!("{base}/Groups/{}", g.group.id),
    )
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidValue", detail)
}

fn string_of(v: &Value, what: &str) -> Result<Option<String>, ScimError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(invalid(format!("{what} must be a string"))),
    }
}

fn opt_string(o: &Value, name: &str, what: &str) -> Result<Option<String>, ScimError> {
    get(o, name).map_or(Ok(None), |v| string_of(v, what))
}

/// A boolean, also spelled as the strings `"true"` / `"false"` (some identity providers do).
fn boolean(v: &Value, what: &str) -> Result<Option<bool>, ScimError> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        _ => Err(invalid(format!("{what} must be true or false"))),
    }
}

/// A body must be a JSON object and, when it names its schemas, name this kind's.
fn check_body(body: &Value, kind: Kind) -> Result<(), ScimError> {
    if !body.is_object() {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the body must be a JSON object",
        ));
    }
    match get(body, "schemas") {
        None => Ok(()),
        Some(Value::Array(s)) if s.iter().any(|x| x.as_str() == Some(kind.schema())) => Ok(()),
        Some(_) => Err(ScimError::bad(
            "invalidSyntax",
            format!("schemas must be a list that holds {}", kind.schema()),
        )),
    }
}

/// A User body (POST, PUT, or a PATCH's result). Read-only attributes (`id`, `meta`, `groups`)
/// are ignored, as RFC 7644 §3.5.1 asks; attributes Keyplane does not keep are ignored too.
pub fn user_input(body: &Value) -> Result<ScimUserInput, ScimError> {
    check_body(body, Kind::User)?;
    let username =
        opt_string(body, "userName", "userName")?.ok_or_else(|| invalid("userName is required"))?;
    let mut profile = ScimProfile {
        external_id: opt_string(body, "externalId", "externalId")?,
        ..ScimProfile::default()
    };
    match get(body, "name") {
        None | Some(Value::Null) => {}
        Some(name @ Value::Object(_)) => {
            profile.formatted = opt_string(name, "formatted", "name.formatted")?;
            profile.family_name = opt_string(name, "familyName", "name.familyName")?;
            profile.given_name = opt_string(name, "givenName", "name.givenName")?;
            profile.middle_name = opt_string(name, "middleName", "name.middleName")?;
            profile.honorific_prefix = opt_string(name, "honorificPrefix", "name.honorificPrefix")?;
            profile.honorific_suffix = opt_string(name, "honorificSuffix", "name.honorificSuffix")?;
        }
        Some(_) => return Err(invalid("name must be an object")),
    }
    match get(body, "emails") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                if !item.is_object() {
                    return Err(invalid("each of emails must be an object"));
                }
                let value = opt_string(item, "value", "emails.value")?
                    .ok_or_else(|| invalid("each of emails needs a value"))?;
                profile.emails.push(ScimEmail {
                    value,
                    kind: opt_string(item, "type", "emails.type")?,
                    primary: get(item, "primary")
                        .map_or(Ok(None), |v| boolean(v, "emails.primary"))?
                        .unwrap_or(false),
                });
            }
        }
        Some(_) => return Err(invalid("emails must be a list")),
    }
    Ok(ScimUserInput {
        username,
        display_name: opt_string(body, "displayName", "displayName")?,
        active: get(body, "active")
            .map_or(Ok(None), |v| boolean(v, "active"))?
            .unwrap_or(true),
        profile,
    })
}

/// A Group body (POST, PUT, or a PATCH's result).
pub fn group_input(body: &Value) -> Result<ScimGroupInput, ScimError> {
    check_body(body, Kind::Group)?;
    let display_name = opt_string(body, "displayName", "displayName")?
        .ok_or_else(|| invalid("displayName is required"))?;
    let mut members = vec![];
    match get(body, "members") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                let value = opt_string(item, "value", "members.value")?
                    .ok_or_else(|| invalid("each of members needs a value (a user id)"))?;
                if let Some(t) = opt_string(item, "type", "members.type")? {
                    if !t.eq_ignore_ascii_case("User") {
                        return Err(invalid("members are users; groups do not nest"));
                    }
                }
                members.push(value);
            }
        }
        Some(_) => return Err(invalid("members must be a list")),
    }
    Ok(ScimGroupInput {
        display_name,
        external_id: opt_string(body, "externalId", "externalId")?,
        members,
    })
}

/// The `attributes` / `excludedAttributes` parameters applied to a resource: `id` and
/// `schemas` are always returned.
pub fn project(
    resource: Value,
    attributes: &[(String, Option<String>)],
    excluded: &[(String, Option<String>)],
) -> Value {
    let Value::Object(mut o) = resource else {
        return resource;
    };
    let always = |k: &str| k == "id" || k == "schemas";
    if !attributes.is_empty() {
        o.retain(|k, v| {
            if always(k) {
                return true;
            }
            let wanted: Vec<&Option<String>> = attributes
                .iter()
                .filter(|(a, _)| a.eq_ignore_ascii_case(k))
                .map(|(_, s)| s)
                .collect();
            if wanted.is_empty() {
                return false;
            }
            if wanted.iter().any(|s| s.is_none()) {
                return true;
            }
            let keep = |item: &mut Value| {
                if let Value::Object(inner) = item {
                    inner.retain(|sk, _| {
                        wanted
                            .iter()
                            .any(|s| s.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(sk)))
                    });
                }
            };
            match v {
                Value::Array(items) => items.iter_mut().for_each(keep),
                other => keep(other),
            }
            true
        });
    }
    for (attr, sub) in excluded {
        if always(attr) {
            continue;
        }
        match sub {
            None => o.retain(|k, _| !k.eq_ignore_ascii_case(attr)),
            Some(sub) => {
                let drop = |item: &mut Value| {
                    if let Value::Object(inner) = item {
                        inner.retain(|sk, _| !sk.eq_ignore_ascii_case(sub));
                    }
                };
                for (_, v) in o.iter_mut().filter(|(k, _)| k.eq_ignore_ascii_case(attr)) {
                    match v {
                        Value::Array(items) => items.iter_mut().for_each(drop),
                        other => drop(other),
                    }
                }
            }
        }
    }
    Value::Object(o)
}

pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://github.com/keyplane/keyplane/blob/main/docs/scim.md",
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": MAX_RESULTS },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Keyplane SCIM token",
            "description": "A machine client of kind scim_token (Authorization: Bearer kpm_…)",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

pub fn resource_type(kind: Kind, base: &str) -> Value {
    let (name, description) = match kind {
        Kind::User => ("User", "A Keyplane user"),
        Kind::Group => ("Group", "A population of users"),
    };
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": name,
        "name": name,
        "description": description,
        "endpoint": format!("/{}", kind.endpoint()),
        "schema": kind.schema(),
        "schemaExtensions": [],
        "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{name}") },
    })
}

/// One attribute definition of RFC 7643 §7: its arguments are that section's fields, in order.
#[allow(clippy::too_many_arguments)]
fn attr(
    name: &str,
    kind: &str,
    multi: bool,
    required: bool,
    mutability: &str,
    uniqueness: &str,
    case_exact: bool,
    description: &str,
) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": multi,
        "description": description,
        "required": required,
        "caseExact": case_exact,
        "mutability": mutability,
        "returned": "default",
        "uniqueness": uniqueness,
    })
}

fn string_attr(name: &str, description: &str) -> Value {
    attr(
        name,
        "string",
        false,
        false,
        "readWrite",
        "none",
        false,
        description,
    )
}

fn complex(mut base: Value, sub: Vec<Value>) -> Value {
    base["subAttributes"] = Value::Array(sub);
    base
}

fn reference(name: &str, types: &[&str], mutability: &str) -> Value {
    let mut r = attr(
        name,
        "reference",
        false,
        false,
        mutability,
        "none",
        false,
        "The resource's URI",
    );
    r["referenceTypes"] = json!(types);
    r
}

pub fn schema(kind: Kind, base: &str) -> Value {
    let (name, description, attributes) = match kind {
        Kind::User => (
            "User",
            "A Keyplane user",
            vec![
                attr(
                    "userName",
                    "string",
                    false,
                    true,
                    "readWrite",
                    "server",
                    false,
                    "The username (stored in lower case)",
                ),
                complex(
                    attr(
                        "name",
                        "complex",
                        false,
                        false,
                        "readWrite",
                        "none",
                        false,
                        "The parts of the user's name",
                    ),
                    vec![
                        string_attr("formatted", "The full name"),
                        string_attr("familyName", "The family name"),
                        string_attr("givenName", "The given name"),
                        string_attr("middleName", "The middle name"),
                        string_attr("honorificPrefix", "A title before the name"),
                        string_attr("honorificSuffix", "A suffix after the name"),
                    ],
                ),
                string_attr(
                    "displayName",
                    "The name shown to the user and administrators",
                ),
                attr(
                    "active",
                    "boolean",
                    false,
                    false,
                    "readWrite",
                    "none",
                    false,
                    "false deprovisions the user",
                ),
                complex(
                    attr(
                        "emails",
                        "complex",
                        true,
                        false,
                        "readWrite",
                        "none",
                        false,
                        "Email addresses; the primary one becomes the contact address",
                    ),
                    vec![
                        string_attr("value", "The address"),
                        {
                            let mut t = string_attr("type", "work, home or other");
                            t["canonicalValues"] = json!(["work", "home", "other"]);
                            t
                        },
                        attr(
                            "primary",
                            "boolean",
                            false,
                            false,
                            "readWrite",
                            "none",
                            false,
                            "The user's contact address",
                        ),
                    ],
                ),
                complex(
                    attr(
                        "groups",
                        "complex",
                        true,
                        false,
                        "readOnly",
                        "none",
                        false,
                        "The groups the user is a member of",
                    ),
                    vec![
                        attr(
                            "value",
                            "string",
                            false,
                            false,
                            "readOnly",
                            "none",
                            true,
                            "The group's id",
                        ),
                        reference("$ref", &["Group"], "readOnly"),
                        attr(
                            "display",
                            "string",
                            false,
                            false,
                            "readOnly",
                            "none",
                            false,
                            "The group's name",
                        ),
                        attr(
                            "type", "string", false, false, "readOnly", "none", false, "direct",
                        ),
                    ],
                ),
            ],
        ),
        Kind::Group => (
            "Group",
            "A population of users",
            vec![
                attr(
                    "displayName",
                    "string",
                    false,
                    true,
                    "readWrite",
                    "server",
                    false,
                    "The population's name",
                ),
                complex(
                    attr(
                        "members",
                        "complex",
                        true,
                        false,
                        "readWrite",
                        "none",
                        false,
                        "The users in the population",
                    ),
                    vec![
                        attr(
                            "value",
                            "string",
                            false,
                            false,
                            "immutable",
                            "none",
                            true,
                            "The user's id",
                        ),
                        reference("$ref", &["User"], "immutable"),
                        {
                            let mut t = attr(
                                "type",
                                "string",
                                false,
                                false,
                                "immutable",
                                "none",
                                false,
                                "User",
                            );
                            t["canonicalValues"] = json!(["User"]);
                            t
                        },
                    ],
                ),
            ],
        ),
    };
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": kind.schema(),
        "name": name,
        "description": description,
        "attributes": attributes,
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{}", kind.schema()) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_bodies_are_read_leniently_but_typed() {
        let u = user_input(&json!({
            "schemas": [USER_SCHEMA],
            "UserName": "Ada",
            "active": "False",
            "name": { "givenName": "Ada", "familyName": "Lovelace" },
            "emails": [{ "value": "ada@example.com", "type": "work", "primary": true }],
            "phoneNumbers": [{ "value": "ignored" }],
            "id": "ignored", "meta": {}
        }))
        .unwrap();
        assert_eq!(u.username, "Ada");
        assert!(!u.active);
        assert_eq!(u.profile.contact_email(), Some("ada@example.com"));
        for bad in [
            json!([]),
            json!({ "schemas": ["urn:other"], "userName": "a" }),
            json!({ "displayName": "no username" }),
            json!({ "userName": 5 }),
            json!({ "userName": "a", "active": "maybe" }),
            json!({ "userName": "a", "emails": "a@example.com" }),
            json!({ "userName": "a", "emails": [{ "type": "work" }] }),
            json!({ "userName": "a", "name": "Ada" }),
        ] {
            assert!(user_input(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn group_bodies_name_users_only() {
        let g =
            group_input(&json!({ "displayName": "staff", "members": [{ "value": "x" }] })).unwrap();
        assert_eq!(g.members, vec!["x"]);
        assert!(group_input(&json!({ "members": [] })).is_err());
        assert!(group_input(
            &json!({ "displayName": "a", "members": [{ "value": "x", "type": "Group" }] })
        )
        .is_err());
    }

    #[test]
    fn projection_keeps_id_and_schemas() {
        let r = json!({ "id": "1", "schemas": [], "userName": "a", "name": { "givenName": "A", "familyName": "B" }, "active": true });
        let p = project(r.clone(), &[("name".into(), Some("givenName".into()))], &[]);
        assert_eq!(
            p,
            json!({ "id": "1", "schemas": [], "name": { "givenName": "A" } })
        );
        let p = project(r, &[], &[("active".into(), None), ("id".into(), None)]);
        assert!(p.get("active").is_none() && p.get("id").is_some());
    }

    #[test]
    fn etags_ignore_meta_and_follow_content() {
        let a = json!({ "id": "1", "userName": "a", "meta": { "version": "x" } });
        let b = json!({ "id": "1", "userName": "a", "meta": { "version": "y" } });
        let c = json!({ "id": "1", "userName": "b" });
        assert_eq!(etag_of(&a), etag_of(&b));
        assert_ne!(etag_of(&a), etag_of(&c));
        assert!(etag_of(&a).starts_with("W/\""));
    }
}
