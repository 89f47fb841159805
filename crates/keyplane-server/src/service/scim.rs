//! SCIM 2.0 provisioning (issue 9): the rules behind `/scim/v2`. An identity provider creates,
//! replaces and deletes users and groups; a user is a Keyplane user (its provisioned extras kept
//! beside it), a group is a population. Deactivating or deleting a user deprovisions it through
//! the same service an administrator uses (`deprovision_user`: sessions end, passkeys are revoked
//! per `governance.deprovision_revokes_credentials`). Every change is audited with the SCIM
//! machine client as the actor. The wire format (SCIM JSON, filters, PATCH) is `api/scim/`.

use super::App;
use keyplane_core::audit::{Caller, NewEvent};
use keyplane_core::scim::{check_text, normalise_group_name, ScimGroup, ScimProfile};
use keyplane_core::*;
use keyplane_store::{AuditBatch, ScimUserChange, StoreError};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What deprovisioning through SCIM records as its reason.
const DEACTIVATED: &str = "deactivated by the identity provider (SCIM active=false)";
const DELETED: &str = "deleted by the identity provider (SCIM DELETE)";
const REACTIVATED: &str = "reactivated by the identity provider (SCIM active=true)";

/// A user as SCIM shows it.
#[derive(Clone, Debug)]
pub struct ScimUser {
    pub user: User,
    pub profile: ScimProfile,
    /// When SCIM last changed it, else its creation.
    pub updated_at: Timestamp,
    /// The groups it is a member of: (id, name).
    pub groups: Vec<(ScimGroupId, String)>,
    /// Whether SCIM created or changed it (else its profile is empty and its display name the
    /// one an administrator gave).
    pub provisioned: bool,
}

/// What an identity provider writes to a user: a POST, a PUT, or a PATCH once applied.
#[derive(Clone, Debug)]
pub struct ScimUserInput {
    pub username: String,
    pub display_name: Option<String>,
    pub active: bool,
    pub profile: ScimProfile,
}

/// A group as SCIM shows it, with its members: (id, username).
#[derive(Clone, Debug)]
pub struct ScimGroupView {
    pub group: ScimGroup,
    pub members: Vec<(UserId, String)>,
}

/// What an identity provider writes to a group; members are user ids as sent.
#[derive(Clone, Debug)]
pub struct ScimGroupInput {
    pub display_name: String,
    pub external_id: Option<String>,
    pub members: Vec<String>,
}

fn user_not_found() -> Error {
    Error::not_found("user_not_found", "no such user in this tenant")
}

fn group_not_found() -> Error {
    Error::not_found("group_not_found", "no such group in this tenant")
}

fn username_taken(e: StoreError) -> Error {
    match e {
        StoreError::Conflict(_) => Error::conflict(
            "username_taken",
            "another user of this tenant has that userName",
        ),
        other => other.into(),
    }
}

/// The display name a user gets: `displayName`, else `name.formatted`, else the given and
/// family names, else the username.
fn display_name_of(input: &ScimUserInput, username: &str) -> String {
    let p = &input.profile;
    let parts: Vec<&str> = [p.given_name.as_deref(), p.family_name.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    input
        .display_name
        .clone()
        .or_else(|| p.formatted.clone())
        .or_else(|| (!parts.is_empty()).then(|| parts.join(" ")))
        .unwrap_or_else(|| username.to_string())
}

/// Checks an input completely before anything is written: the username, the display name and
/// every provisioned value.
fn check_user_input(input: &mut ScimUserInput) -> Result<(String, String), Error> {
    let username = normalise_username(&input.username)
        .map_err(|e| Error::invalid("invalid_value", format!("userName: {}", e.message)))?;
    input.profile.display_name = input.display_name.clone();
    input.profile.check()?;
    let display = display_name_of(input, &username);
    Ok((username, display))
}

impl App {
    /// Every user SCIM may see (all of the tenant's but those SCIM deleted), in username order.
    pub async fn scim_users(&self, tenant: &Tenant) -> Result<Vec<ScimUser>, Error> {
        let users = self.store.list_users(&tenant.id).await?;
        let rows: HashMap<UserId, _> = self
            .store
            .scim_user_rows(&tenant.id)
            .await?
            .into_iter()
            .map(|r| (r.user_id.clone(), r))
            .collect();
        let groups = self.group_names(tenant).await?;
        let mut memberships: HashMap<UserId, Vec<(ScimGroupId, String)>> = HashMap::new();
        for (user, population) in self.store.all_user_populations(&tenant.id).await? {
            if let Some(id) = groups.get(&population) {
                memberships
                    .entry(user)
                    .or_default()
                    .push((id.clone(), population));
            }
        }
        Ok(users
            .into_iter()
            .filter_map(|u| {
                let row = rows.get(&u.id);
                if row.is_some_and(|r| r.deleted) {
                    return None;
                }
                Some(ScimUser {
                    provisioned: row.is_some(),
                    profile: row.map(|r| r.profile.clone()).unwrap_or_default(),
                    updated_at: row.map(|r| r.updated_at).unwrap_or(u.created_at),
                    groups: memberships.remove(&u.id).unwrap_or_default(),
                    user: u,
                })
            })
            .collect())
    }

    /// One user as SCIM shows it; `user_not_found` when it is not in the tenant or SCIM
    /// deleted it.
    pub async fn scim_user(&self, tenant: &Tenant, id: &UserId) -> Result<ScimUser, Error> {
        let user = self
            .store
            .user_by_id(&tenant.id, id)
            .await?
            .ok_or_else(user_not_found)?;
        let row = self.store.scim_user_row(&tenant.id, id).await?;
        if row.as_ref().is_some_and(|r| r.deleted) {
            return Err(user_not_found());
        }
        let groups = self.group_names(tenant).await?;
        let populations = self.store.user_populations(&tenant.id, id).await?;
        Ok(ScimUser {
            provisioned: row.is_some(),
            profile: row.as_ref().map(|r| r.profile.clone()).unwrap_or_default(),
            updated_at: row.map(|r| r.updated_at).unwrap_or(user.created_at),
            groups: populations
                .into_iter()
                .filter_map(|p| groups.get(&p).map(|id| (id.clone(), p)))
                .collect(),
            user,
        })
    }

    /// Creates a user (`user.created`, by the SCIM client), active or, with `active: false`,
    /// deprovisioned from the start. A username already in the tenant is `username_taken`.
    pub async fn scim_create_user(
        &self,
        tenant: &Tenant,
        mut input: ScimUserInput,
        caller: &Caller,
    ) -> Result<ScimUser, Error> {
        let (username, display_name) = check_user_input(&mut input)?;
        let now = self.clock.now();
        let mut handle = vec![0u8; USER_HANDLE_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut handle);
        let user = User {
            id: UserId::generate(),
            tenant_id: tenant.id.clone(),
            username,
            display_name,
            user_handle: handle,
            status: if input.active {
                UserStatus::Active
            } else {
                UserStatus::Deprovisioned
            },
            role: None,
            created_at: now,
            re_enrol_reason: None,
            contact_email: input.profile.contact_email().map(str::to_string),
        };
        let event = caller
            .event("user.created", "user", user.id.as_str())
            .details(json!({
                "username": user.username,
                "role": null,
                "source": "scim",
                "external_id": input.profile.external_id,
                "status": user.status.as_str(),
            }));
        self.store
            .scim_create_user(&user, &input.profile, AuditBatch::new(now, &[event]))
            .await
            .map_err(username_taken)?;
        self.scim_user(tenant, &user.id).await
    }

    /// Replaces what SCIM owns of a user (`scim.user_updated`, and `user.contact_changed` when
    /// the primary email changes). `active: false` deprovisions an active or suspended user
    /// (`user.deprovisioned`); `active: true` reactivates a deprovisioned one
    /// (`user.reactivated`), but not one an administrator suspended, which stays suspended.
    /// Everything is checked before anything is written.
    pub async fn scim_replace_user(
        &self,
        tenant: &Tenant,
        id: &UserId,
        mut input: ScimUserInput,
        caller: &Caller,
    ) -> Result<ScimUser, Error> {
        let current = self.scim_user(tenant, id).await?;
        let (username, display_name) = check_user_input(&mut input)?;
        if username != current.user.username {
            if let Some(other) = self.store.user_by_username(&tenant.id, &username).await? {
                if other.id != current.user.id {
                    return Err(Error::conflict(
                        "username_taken",
                        "another user of this tenant has that userName",
                    ));
                }
            }
        }
        match (input.active, current.user.status) {
            (false, UserStatus::Active | UserStatus::Suspended) => {
                self.deprovision_user(tenant, id, DEACTIVATED, caller)
                    .await?;
            }
            (true, UserStatus::Deprovisioned) => {
                self.reactivate_user(tenant, id, REACTIVATED, caller)
                    .await?;
            }
            _ => {}
        }
        let contact = input.profile.contact_email().map(str::to_string);
        let u = &current.user;
        let mut changed = vec![];
        if username != u.username {
            changed.push("userName");
        }
        if display_name != u.display_name {
            changed.push("displayName");
        }
        if contact != u.contact_email {
            changed.push("emails");
        }
        if input.profile != current.profile || !current.provisioned {
            changed.push("profile");
        }
        if changed.is_empty() {
            return self.scim_user(tenant, id).await;
        }
        let mut events = vec![caller
            .event("scim.user_updated", "user", id.as_str())
            .details(json!({
                "changed": changed,
                "username": { "from": u.username, "to": username },
                "display_name": { "from": u.display_name, "to": display_name },
                "external_id": input.profile.external_id,
            }))];
        if contact != u.contact_email {
            events.push(
                caller
                    .event("user.contact_changed", "user", id.as_str())
                    .details(json!({ "from": u.contact_email, "to": contact })),
            );
        }
        let change = ScimUserChange {
            user: id,
            username: &username,
            display_name: &display_name,
            contact_email: contact.as_deref(),
            profile: &input.profile,
        };
        let written = self
            .store
            .scim_update_user(
                &tenant.id,
                &change,
                AuditBatch::new(self.clock.now(), &events),
            )
            .await
            .map_err(username_taken)?;
        if !written {
            return Err(user_not_found());
        }
        self.scim_user(tenant, id).await
    }

    /// Deletes a user as SCIM sees it: deprovisioned first (unless it already is), then marked
    /// deleted and taken out of every group (`scim.user_deleted`). The Keyplane user stays, so
    /// its audit trail and passkey history keep their subject.
    pub async fn scim_delete_user(
        &self,
        tenant: &Tenant,
        id: &UserId,
        caller: &Caller,
    ) -> Result<(), Error> {
        let current = self.scim_user(tenant, id).await?;
        if current.user.status != UserStatus::Deprovisioned {
            self.deprovision_user(tenant, id, DELETED, caller).await?;
        }
        let populations = self.store.user_populations(&tenant.id, id).await?;
        let event = caller
            .event("scim.user_deleted", "user", id.as_str())
            .details(json!({
                "username": current.user.username,
                "external_id": current.profile.external_id,
                "populations_removed": populations,
            }));
        if !self
            .store
            .scim_delete_user(&tenant.id, id, AuditBatch::new(self.clock.now(), &[event]))
            .await?
        {
            return Err(user_not_found());
        }
        Ok(())
    }

    /// Group names → ids.
    async fn group_names(&self, tenant: &Tenant) -> Result<HashMap<String, ScimGroupId>, Error> {
        Ok(self
            .store
            .scim_groups(&tenant.id)
            .await?
            .into_iter()
            .map(|g| (g.display_name, g.id))
            .collect())
    }

    /// Whether `name` is a SCIM group's population in this tenant.
    pub(crate) async fn is_scim_group(&self, tenant: &Tenant, name: &str) -> Result<bool, Error> {
        Ok(self.group_names(tenant).await?.contains_key(name))
    }

    /// Every group with its members, in name order.
    pub async fn scim_groups(&self, tenant: &Tenant) -> Result<Vec<ScimGroupView>, Error> {
        let groups = self.store.scim_groups(&tenant.id).await?;
        let members = self.population_members(tenant).await?;
        Ok(groups
            .into_iter()
            .map(|g| ScimGroupView {
                members: members.get(&g.display_name).cloned().unwrap_or_default(),
                group: g,
            })
            .collect())
    }

    pub async fn scim_group(
        &self,
        tenant: &Tenant,
        id: &ScimGroupId,
    ) -> Result<ScimGroupView, Error> {
        let group = self
            .store
            .scim_group(&tenant.id, id)
            .await?
            .ok_or_else(group_not_found)?;
        let mut members = self.population_members(tenant).await?;
        Ok(ScimGroupView {
            members: members.remove(&group.display_name).unwrap_or_default(),
            group,
        })
    }

    /// Population → its members (id, username) among the users SCIM sees, in username order.
    async fn population_members(
        &self,
        tenant: &Tenant,
    ) -> Result<HashMap<String, Vec<(UserId, String)>>, Error> {
        let users: BTreeMap<UserId, String> = self
            .scim_users(tenant)
            .await?
            .into_iter()
            .map(|u| (u.user.id, u.user.username))
            .collect();
        let mut out: HashMap<String, Vec<(UserId, String)>> = HashMap::new();
        for (user, population) in self.store.all_user_populations(&tenant.id).await? {
            if let Some(name) = users.get(&user) {
                out.entry(population)
                    .or_default()
                    .push((user, name.clone()));
            }
        }
        for members in out.values_mut() {
            members.sort_by(|a, b| a.1.cmp(&b.1));
        }
        Ok(out)
    }

    /// The members asked for, each a user SCIM sees in this tenant (else `invalid_member`).
    async fn check_members(
        &self,
        tenant: &Tenant,
        raw: &[String],
    ) -> Result<BTreeSet<UserId>, Error> {
        let known: BTreeSet<UserId> = self
            .scim_users(tenant)
            .await?
            .into_iter()
            .map(|u| u.user.id)
            .collect();
        raw.iter()
            .map(|m| {
                UserId::parse(m)
                    .filter(|id| known.contains(id))
                    .ok_or_else(|| {
                        Error::invalid(
                            "invalid_member",
                            format!("member {m:?} is not a user of this tenant"),
                        )
                    })
            })
            .collect()
    }

    /// `user.populations_changed` for every user whose populations the write changes.
    async fn membership_events(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        group: &ScimGroupId,
        previous_name: Option<&str>,
        name: &str,
        members: &BTreeSet<UserId>,
    ) -> Result<Vec<NewEvent>, Error> {
        let mut before: BTreeMap<UserId, Vec<String>> = BTreeMap::new();
        for (user, population) in self.store.all_user_populations(&tenant.id).await? {
            before.entry(user).or_default().push(population);
        }
        for m in members {
            before.entry(m.clone()).or_default();
        }
        let mut events = vec![];
        for (user, from) in before {
            let mut to: Vec<String> = from
                .iter()
                .filter(|p| Some(p.as_str()) != previous_name && p.as_str() != name)
                .cloned()
                .collect();
            if members.contains(&user) {
                to.push(name.to_string());
            }
            to.sort();
            let mut sorted_from = from.clone();
            sorted_from.sort();
            if to != sorted_from {
                events.push(
                    caller
                        .event("user.populations_changed", "user", user.as_str())
                        .details(json!({ "from": sorted_from, "to": to, "group": group })),
                );
            }
        }
        Ok(events)
    }

    /// Creates a group (`scim.group_created`): its population's members become exactly the
    /// members given (each a `user.populations_changed`). A population of that name that users
    /// already hold is taken over. A name another group holds is `group_name_taken`.
    pub async fn scim_create_group(
        &self,
        tenant: &Tenant,
        input: ScimGroupInput,
        caller: &Caller,
    ) -> Result<ScimGroupView, Error> {
        self.write_group(tenant, None, input, caller).await
    }

    /// Replaces a group (`scim.group_updated`): a new name renames its population; its members
    /// become exactly those given.
    pub async fn scim_replace_group(
        &self,
        tenant: &Tenant,
        id: &ScimGroupId,
        input: ScimGroupInput,
        caller: &Caller,
    ) -> Result<ScimGroupView, Error> {
        let current = self.scim_group(tenant, id).await?;
        self.write_group(tenant, Some(current.group), input, caller)
            .await
    }

    async fn write_group(
        &self,
        tenant: &Tenant,
        current: Option<ScimGroup>,
        input: ScimGroupInput,
        caller: &Caller,
    ) -> Result<ScimGroupView, Error> {
        let name = normalise_group_name(&input.display_name)?;
        if let Some(e) = &input.external_id {
            check_text("externalId", e)?;
        }
        let members = self.check_members(tenant, &input.members).await?;
        let now = self.clock.now();
        let group = ScimGroup {
            id: current
                .as_ref()
                .map(|g| g.id.clone())
                .unwrap_or_else(ScimGroupId::generate),
            tenant_id: tenant.id.clone(),
            display_name: name.clone(),
            external_id: input.external_id,
            created_at: current.as_ref().map(|g| g.created_at).unwrap_or(now),
            updated_at: now,
        };
        let previous = current.as_ref().map(|g| g.display_name.as_str());
        let mut events = vec![caller
            .event(
                if current.is_some() {
                    "scim.group_updated"
                } else {
                    "scim.group_created"
                },
                "group",
                group.id.as_str(),
            )
            .details(json!({
                "display_name": { "from": previous, "to": name },
                "external_id": group.external_id,
                "members": members.len(),
            }))];
        events.extend(
            self.membership_events(tenant, caller, &group.id, previous, &name, &members)
                .await?,
        );
        let members: Vec<UserId> = members.into_iter().collect();
        let written = self
            .store
            .scim_write_group(&group, previous, &members, AuditBatch::new(now, &events))
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => Error::conflict(
                    "group_name_taken",
                    "another group of this tenant has that displayName",
                ),
                other => other.into(),
            })?;
        if !written {
            return Err(group_not_found());
        }
        self.scim_group(tenant, &group.id).await
    }

    /// Deletes a group and empties its population (`scim.group_deleted`, and a
    /// `user.populations_changed` for each member).
    pub async fn scim_delete_group(
        &self,
        tenant: &Tenant,
        id: &ScimGroupId,
        caller: &Caller,
    ) -> Result<(), Error> {
        let current = self.scim_group(tenant, id).await?;
        let g = &current.group;
        let mut events = vec![caller
            .event("scim.group_deleted", "group", g.id.as_str())
            .details(json!({
                "display_name": g.display_name,
                "external_id": g.external_id,
                "members": current.members.len(),
            }))];
        // Deleting is renaming the population away with no members.
        let none = BTreeSet::new();
        events.extend(
            self.membership_events(tenant, caller, &g.id, Some(&g.display_name), "", &none)
                .await?,
        );
        if !self
            .store
            .scim_delete_group(g, AuditBatch::new(self.clock.now(), &events))
            .await?
        {
            return Err(group_not_found());
        }
        Ok(())
    }
}
