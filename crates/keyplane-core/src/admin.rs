//! Administrative roles and what each may do: one table, used by every admin endpoint and CLI
//! command, documented in `docs/admin.md` (a test holds the two equal).

/// A tenant role. Users without a role administer nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Owner,
    Admin,
    Helpdesk,
    /// Read-only.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Helpdesk, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Helpdesk => "helpdesk",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Something an administrator (or a machine client, as a scope) may be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    UsersRead,
    /// Invite, set populations, force re-enrolment.
    UsersManage,
    /// Suspend, reactivate and deprovision users.
    UsersSuspend,
    /// Give and take roles.
    RolesAssign,
    CredentialsRead,
    /// Suspend, reactivate and revoke single credentials.
    CredentialsManage,
    /// Bulk actions over many credentials.
    CredentialsBulk,
    PolicyRead,
    PolicyApply,
    ExceptionsRead,
    ExceptionsRequest,
    /// Approve or deny requests (exceptions, dual control).
    ApprovalsDecide,
    ApprovalsRead,
    FraudRead,
    FraudResolve,
    AuditRead,
    ReportsRead,
    ClientsRead,
    ClientsManage,
    /// List and show re-enrolment campaigns with their progress.
    CampaignsRead,
    /// Start and close re-enrolment campaigns for an authenticator model.
    CampaignsManage,
}

impl Permission {
    pub const ALL: [Permission; 21] = [
        Permission::UsersRead,
        Permission::UsersManage,
        Permission::UsersSuspend,
        Permission::RolesAssign,
        Permission::CredentialsRead,
        Permission::CredentialsManage,
        Permission::CredentialsBulk,
        Permission::PolicyRead,
        Permission::PolicyApply,
        Permission::ExceptionsRead,
        Permission::ExceptionsRequest,
        Permission::ApprovalsDecide,
        Permission::ApprovalsRead,
        Permission::FraudRead,
        Permission::FraudResolve,
        Permission::AuditRead,
        Permission::ReportsRead,
        Permission::ClientsRead,
        Permission::ClientsManage,
        Permission::CampaignsRead,
        Permission::CampaignsManage,
    ];

    /// The dotted name, also the machine-client scope that grants it.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::UsersRead => "users.read",
            Permission::UsersManage => "users.manage",
            Permission::UsersSuspend => "users.suspend",
            Permission::RolesAssign => "roles.assign",
            Permission::CredentialsRead => "credentials.read",
            Permission::CredentialsManage => "credentials.manage",
            Permission::CredentialsBulk => "credentials.bulk",
            Permission::PolicyRead => "policy.read",
            Permission::PolicyApply => "policy.apply",
            Permission::ExceptionsRead => "exceptions.read",
            Permission::ExceptionsRequest => "exceptions.request",
            Permission::ApprovalsDecide => "approvals.decide",
            Permission::ApprovalsRead => "approvals.read",
            Permission::FraudRead => "fraud.read",
            Permission::FraudResolve => "fraud.resolve",
            Permission::AuditRead => "audit.read",
            Permission::ReportsRead => "reports.read",
            Permission::ClientsRead => "clients.read",
            Permission::ClientsManage => "clients.manage",
            Permission::CampaignsRead => "campaigns.read",
            Permission::CampaignsManage => "campaigns.manage",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The step-up action a person needs for it (`admin.<permission>`): the policy's `step_up`
    /// rules decide the level and how recent (built-in: `admin.*` needs aal2 within 15 minutes).
    pub fn step_up_action(self) -> String {
        format!("admin.{}", self.as_str())
    }

    /// Whether a machine client may ever hold it as a scope. Acts that need a person's judgement
    /// (approving another's request, giving roles, managing machine clients) may not be delegated
    /// to software.
    pub fn delegable(self) -> bool {
        !matches!(
            self,
            Permission::RolesAssign | Permission::ApprovalsDecide | Permission::ClientsManage
        )
    }
}

/// The permission matrix.
pub fn allows(role: Role, p: Permission) -> bool {
    use Permission as P;
    match role {
        Role::Owner => true,
        Role::Admin => !matches!(p, P::RolesAssign),
        Role::Helpdesk => matches!(
            p,
            P::UsersRead
                | P::UsersManage
                | P::CredentialsRead
                | P::CredentialsManage
                | P::PolicyRead
                | P::ExceptionsRead
                | P::ExceptionsRequest
                | P::ApprovalsRead
                | P::FraudRead
                | P::CampaignsRead
        ),
        Role::Auditor => matches!(
            p,
            P::UsersRead
                | P::CredentialsRead
                | P::PolicyRead
                | P::ExceptionsRead
                | P::ApprovalsRead
                | P::FraudRead
                | P::AuditRead
                | P::ReportsRead
                | P::ClientsRead
                | P::CampaignsRead
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn auditors_only_read_and_only_owners_assign_roles() {
        for p in Permission::ALL {
            let write = !p.as_str().ends_with(".read");
            assert!(
                !(allows(Role::Auditor, p) && write),
                "auditor may {}",
                p.as_str()
            );
            assert_eq!(
                allows(Role::Admin, p) || allows(Role::Helpdesk, p),
                p != Permission::RolesAssign,
                "{}",
                p.as_str()
            );
        }
        assert!(allows(Role::Owner, Permission::RolesAssign));
    }

    #[test]
    fn campaigns_are_started_by_admins_and_followed_by_the_help_desk() {
        use Permission as P;
        for r in [Role::Owner, Role::Admin] {
            assert!(allows(r, P::CampaignsManage) && allows(r, P::CampaignsRead));
        }
        for r in [Role::Helpdesk, Role::Auditor] {
            assert!(!allows(r, P::CampaignsManage), "{}", r.as_str());
            assert!(allows(r, P::CampaignsRead), "{}", r.as_str());
        }
        // Marking a lost passkey is a single-credential act: the help desk's credentials.manage.
        assert!(allows(Role::Helpdesk, P::CredentialsManage));
        assert!(P::CampaignsManage.delegable());
    }
}
