//! Tenants, users and enrolment invitations: creating them, and the first-start bootstrap.

use super::App;
use keyplane_core::audit::Caller;
use keyplane_core::*;
use keyplane_store::AuditBatch;
use serde_json::json;

/// An invitation just issued: the token is shown once and only its hash is stored.
pub struct Invitation {
    pub user: User,
    pub enrolment: Enrolment,
    pub token: Secret,
    pub link: String,
}

/// What a new tenant needs.
pub struct NewTenant {
    pub name: String,
    pub rp_id: String,
    pub rp_name: String,
    pub origins: Vec<String>,
    pub hostnames: Vec<String>,
}

fn validate_tenant(t: &NewTenant) -> Result<(), Error> {
    let name_ok = !t.name.is_empty()
        && t.name.len() <= 64
        && t.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        return Err(Error::invalid(
            "invalid_tenant_name",
            "a tenant name is 1-64 characters of a-z, 0-9 and '-'",
        ));
    }
    let rp_ok = is_host_name(&t.rp_id);
    if !rp_ok {
        return Err(Error::invalid(
            "invalid_rp_id",
            format!("{:?} is not a valid RP ID (a domain name)", t.rp_id),
        ));
    }
    if t.origins.is_empty() {
        return Err(Error::invalid(
            "invalid_origin",
            "a tenant needs at least one origin",
        ));
    }
    for o in &t.origins {
        let u = url::Url::parse(o)
            .map_err(|_| Error::invalid("invalid_origin", format!("{o} is not a URL")))?;
        let host = u.host_str().unwrap_or_default();
        // WebAuthn: the RP ID must be the origin's host or a registrable suffix of it.
        if !(host == t.rp_id || host.ends_with(&format!(".{}", t.rp_id))) {
            return Err(Error::invalid(
                "origin_rp_id_mismatch",
                format!(
                    "origin {o} is not within RP ID {} (related origins are not yet supported)",
                    t.rp_id
                ),
            ));
        }
        if u.scheme() != "https" && host != "localhost" {
            return Err(Error::invalid(
                "insecure_origin",
                format!("origin {o} must use https (plain http is only for localhost)"),
            ));
        }
    }
    if t.hostnames.is_empty() {
        return Err(Error::invalid(
            "invalid_hostname",
            "a tenant needs at least one hostname",
        ));
    }
    if let Some(h) = t.hostnames.iter().find(|h| !is_host_name(h)) {
        return Err(Error::invalid(
            "invalid_hostname",
            format!("{h:?} is not a host name (give it without scheme, port or path)"),
        ));
    }
    Ok(())
}

/// A DNS name: dot-separated labels of letters, digits and '-', each 1-63 long.
fn is_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl App {
    /// Creates a tenant. Names and hostnames are unique across the deployment.
    pub async fn create_tenant(
        &self,
        mut new: NewTenant,
        caller: &Caller,
    ) -> Result<Tenant, Error> {
        new.rp_id = new.rp_id.to_lowercase();
        new.hostnames = new.hostnames.iter().map(|h| h.to_lowercase()).collect();
        validate_tenant(&new)?;
        let tenant = Tenant {
            id: TenantId::generate(),
            name: new.name,
            rp_id: new.rp_id,
            rp_name: new.rp_name,
            origins: new.origins,
            hostnames: new.hostnames,
            created_at: self.clock.now(),
        };
        let event = caller.event("tenant.created", "tenant", tenant.id.as_str()).details(json!({
            "name": tenant.name, "rp_id": tenant.rp_id, "origins": tenant.origins, "hostnames": tenant.hostnames,
        }));
        self.store
            .create_tenant(&tenant, AuditBatch::new(tenant.created_at, &[event]))
            .await
            .map_err(|e| match e {
                keyplane_store::StoreError::Conflict(_) => Error::conflict(
                    "tenant_exists",
                    "a tenant with that name or hostname already exists",
                ),
                other => other.into(),
            })?;
        Ok(tenant)
    }

    pub async fn tenant_named(&self, name: &str) -> Result<Tenant, Error> {
        self.store
            .tenant_by_name(name)
            .await?
            .ok_or_else(|| Error::not_found("unknown_tenant", format!("no tenant named {name:?}")))
    }

    /// The tenant serving an HTTP `Host` (port ignored, case-insensitive).
    pub async fn tenant_for_host(&self, host: &str) -> Result<Tenant, Error> {
        let hostname = host_without_port(host).to_lowercase();
        self.store
            .tenant_by_hostname(&hostname)
            .await?
            .ok_or_else(|| Error::not_found("unknown_tenant", "no tenant serves this host name"))
    }

    /// Invites a user to enrol a passkey, creating the user if needed. Returns the one-time link.
    pub async fn invite(
        &self,
        tenant: &Tenant,
        username: &str,
        display_name: Option<&str>,
        role: Option<&str>,
        caller: &Caller,
    ) -> Result<Invitation, Error> {
        let username = normalise_username(username)?;
        let now = self.clock.now();
        let user = match self.store.user_by_username(&tenant.id, &username).await? {
            Some(u) => u,
            None => {
                let mut handle = vec![0u8; USER_HANDLE_BYTES];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut handle);
                let u = User {
                    id: UserId::generate(),
                    tenant_id: tenant.id.clone(),
                    display_name: display_name
                        .map(str::to_string)
                        .unwrap_or_else(|| username.clone()),
                    username: username.clone(),
                    user_handle: handle,
                    status: UserStatus::Active,
                    role: role.map(str::to_string),
                    created_at: now,
                    re_enrol_reason: None,
                    contact_email: None,
                };
                let event = caller
                    .event("user.created", "user", u.id.as_str())
                    .details(json!({ "username": u.username, "role": u.role }));
                self.store
                    .create_user(&u, AuditBatch::new(now, &[event]))
                    .await?;
                u
            }
        };
        if user.status != UserStatus::Active {
            return Err(Error::conflict(
                "user_inactive",
                "the user is suspended or deprovisioned",
            ));
        }
        let token = Secret::generate(&mut rand::rng());
        let enrolment = Enrolment {
            id: EnrolmentId::generate(),
            tenant_id: tenant.id.clone(),
            user_id: user.id.clone(),
            token_hash: token.hash(),
            created_at: now,
            expires_at: now.plus_secs(self.settings.enrolment_ttl_secs),
            used_at: None,
        };
        // The token itself is never recorded; the invitation is known by its id.
        let event = caller
            .event("enrolment.invited", "user", user.id.as_str())
            .details(json!({ "enrolment": enrolment.id, "expires_at": enrolment.expires_at.to_rfc3339() }));
        self.store
            .create_enrolment(&enrolment, AuditBatch::new(now, &[event]))
            .await?;
        let base = tenant
            .origins
            .first()
            .cloned()
            .unwrap_or_else(|| self.settings.public_url.clone());
        let link = format!(
            "{}/enrol#token={}",
            base.trim_end_matches('/'),
            token.expose()
        );
        Ok(Invitation {
            user,
            enrolment,
            token,
            link,
        })
    }

    /// On first start (no tenants at all): creates the default tenant and an invitation for its
    /// first administrator. Returns `None` when the deployment is already set up.
    pub async fn bootstrap(&self) -> Result<Option<Invitation>, Error> {
        if !self.store.list_tenants().await?.is_empty() {
            return Ok(None);
        }
        let s = &self.settings;
        let caller = Caller::system("bootstrap");
        let tenant = self
            .create_tenant(
                NewTenant {
                    name: s.default_tenant.name.clone(),
                    rp_id: s.default_tenant.rp_id.clone(),
                    rp_name: s.default_tenant.rp_name.clone(),
                    origins: s.default_tenant_origins(),
                    hostnames: s.default_tenant_hostnames(),
                },
                &caller,
            )
            .await?;
        self.invite(
            &tenant,
            "admin",
            Some("Administrator"),
            Some("owner"),
            &caller,
        )
        .await
        .map(Some)
    }
}

/// `example.com:8443` → `example.com`; `[::1]:8080` → `[::1]`.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(host_without_port("localhost:8080"), "localhost");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
    }

    fn t(name: &str, rp: &str, origin: &str) -> NewTenant {
        NewTenant {
            name: name.into(),
            rp_id: rp.into(),
            rp_name: "x".into(),
            origins: vec![origin.into()],
            hostnames: vec![rp.into()],
        }
    }

    #[test]
    fn tenant_validation_rejects_bad_settings() {
        assert!(validate_tenant(&t("acme", "acme.test", "https://login.acme.test")).is_ok());
        assert!(validate_tenant(&t("localhost", "localhost", "http://localhost:8080")).is_ok());
        assert_eq!(
            validate_tenant(&t("Acme!", "acme.test", "https://acme.test"))
                .unwrap_err()
                .code,
            "invalid_tenant_name"
        );
        assert_eq!(
            validate_tenant(&t("acme", "acme.test", "https://evil.test"))
                .unwrap_err()
                .code,
            "origin_rp_id_mismatch"
        );
        assert_eq!(
            validate_tenant(&t("acme", "acme.test", "http://acme.test"))
                .unwrap_err()
                .code,
            "insecure_origin"
        );
        assert_eq!(
            validate_tenant(&t("acme", "acme.test", "not a url"))
                .unwrap_err()
                .code,
            "invalid_origin"
        );
        assert_eq!(
            validate_tenant(&t("acme", "acme..test", "https://acme.test"))
                .unwrap_err()
                .code,
            "invalid_rp_id"
        );
        let mut bad_host = t("acme", "acme.test", "https://acme.test");
        bad_host.hostnames = vec!["https://acme.test:443".into()];
        assert_eq!(
            validate_tenant(&bad_host).unwrap_err().code,
            "invalid_hostname"
        );
    }
}
