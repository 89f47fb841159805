//! SCIM 2.0 provisioning records: what an identity provider says about a user beyond Keyplane's
//! own user record (its external id, the parts of its name, its email addresses), and a SCIM
//! group, which is a population under the name the identity provider gives it. The wire format
//! (SCIM JSON, filters, PATCH paths) is the server's; these are only the facts kept.

use crate::ids::{ScimGroupId, TenantId};
use crate::time::Timestamp;
use crate::Error;
use serde::{Deserialize, Serialize};

/// Longest value kept for any provisioned text attribute (names, external ids, email types).
pub const MAX_ATTRIBUTE_CHARS: usize = 256;
/// Most email addresses kept per user.
pub const MAX_EMAILS: usize = 10;

/// One email address of a provisioned user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimEmail {
    pub value: String,
    /// `work`, `home`, `other` or whatever the identity provider sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub primary: bool,
}

/// The provisioned attributes a Keyplane user record has no column for. Stored as JSON beside
/// the user (`scim_users.profile`); a user created by an administrator has the empty profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// `displayName` as provisioned. The user record always has a display name (derived from
    /// the name or username when none is given); this says whether SCIM gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honorific_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honorific_suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<ScimEmail>,
}

impl ScimProfile {
    /// The address that becomes the user's contact: the one marked primary, else the only one.
    pub fn contact_email(&self) -> Option<&str> {
        self.emails
            .iter()
            .find(|e| e.primary)
            .or(match self.emails.as_slice() {
                [only] => Some(only),
                _ => None,
            })
            .map(|e| e.value.as_str())
    }

    /// Whether every value is within the limits; the first problem otherwise.
    pub fn check(&self) -> Result<(), Error> {
        let texts = [
            ("externalId", &self.external_id),
            ("displayName", &self.display_name),
            ("name.formatted", &self.formatted),
            ("name.familyName", &self.family_name),
            ("name.givenName", &self.given_name),
            ("name.middleName", &self.middle_name),
            ("name.honorificPrefix", &self.honorific_prefix),
            ("name.honorificSuffix", &self.honorific_suffix),
        ];
        for (name, value) in texts {
            if let Some(v) = value {
                check_text(name, v)?;
            }
        }
        if self.emails.len() > MAX_EMAILS {
            return Err(Error::invalid(
                "invalid_value",
                format!("at most {MAX_EMAILS} email addresses are kept"),
            ));
        }
        if self.emails.iter().filter(|e| e.primary).count() > 1 {
            return Err(Error::invalid(
                "invalid_value",
                "at most one email address may be primary",
            ));
        }
        for e in &self.emails {
            crate::notification::validate_contact_email(&e.value)
                .map_err(|err| Error::invalid("invalid_value", err.message))?;
            if let Some(k) = &e.kind {
                check_text("emails.type", k)?;
            }
        }
        Ok(())
    }
}

/// A provisioned text value: 1 to [`MAX_ATTRIBUTE_CHARS`] characters, no control characters.
pub fn check_text(attribute: &str, value: &str) -> Result<(), Error> {
    if value.is_empty()
        || value.chars().count() > MAX_ATTRIBUTE_CHARS
        || value.chars().any(char::is_control)
    {
        return Err(Error::invalid(
            "invalid_value",
            format!(
                "{attribute} must be 1 to {MAX_ATTRIBUTE_CHARS} characters without control characters"
            ),
        ));
    }
    Ok(())
}

/// A SCIM group. Its members are the users in the population named `display_name`; the group
/// row only gives that population an id, an external id and times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimGroup {
    pub id: ScimGroupId,
    pub tenant_id: TenantId,
    /// The population's name, unique in the tenant.
    pub display_name: String,
    pub external_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A group's name, which is the population's: trimmed, 1 to 128 characters without control
/// characters.
pub fn normalise_group_name(raw: &str) -> Result<String, Error> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > 128 || t.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_value",
            "displayName must be 1 to 128 characters without control characters",
        ));
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(v: &str, primary: bool) -> ScimEmail {
        ScimEmail {
            value: v.into(),
            kind: None,
            primary,
        }
    }

    #[test]
    fn the_contact_is_the_primary_address_or_the_only_one() {
        let mut p = ScimProfile::default();
        assert_eq!(p.contact_email(), None);
        p.emails = vec![email("a@example.com", false)];
        assert_eq!(p.contact_email(), Some("a@example.com"));
        p.emails.push(email("b@example.com", false));
        assert_eq!(p.contact_email(), None, "two, none primary: no guess");
        p.emails[1].primary = true;
        assert_eq!(p.contact_email(), Some("b@example.com"));
    }

    #[test]
    fn profiles_out_of_limits_are_refused() {
        let ok = ScimProfile {
            given_name: Some("Ada".into()),
            emails: vec![email("ada@example.com", true)],
            ..ScimProfile::default()
        };
        assert!(ok.check().is_ok());
        let long = ScimProfile {
            family_name: Some("x".repeat(MAX_ATTRIBUTE_CHARS + 1)),
            ..ScimProfile::default()
        };
        assert_eq!(long.check().unwrap_err().code, "invalid_value");
        let two_primary = ScimProfile {
            emails: vec![email("a@example.com", true), email("b@example.com", true)],
            ..ScimProfile::default()
        };
        assert!(two_primary.check().is_err());
        let not_an_address = ScimProfile {
            emails: vec![email("nobody", false)],
            ..ScimProfile::default()
        };
        assert!(not_an_address.check().is_err());
        assert!(check_text("x", "a\u{7}b").is_err());
        assert_eq!(normalise_group_name("  Staff ").unwrap(), "Staff");
        assert!(normalise_group_name(" ").is_err());
    }
}
