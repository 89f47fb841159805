//! The domain's error: a stable machine-readable code, a human message, and a kind that the
//! server maps to an HTTP status exactly once.

use std::fmt;

/// Broad class of an error; decides the HTTP status at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or unacceptable input (400).
    Invalid,
    /// Missing or bad authentication (401).
    Unauthenticated,
    /// Authenticated but not allowed (403).
    Forbidden,
    /// No such thing, in this tenant (404).
    NotFound,
    /// Conflicts with existing state (409).
    Conflict,
    /// Something once valid is no longer (410).
    Gone,
    /// Body too large (413).
    TooLarge,
    /// Too many requests from this address or for this account (429).
    RateLimited,
    /// Storage or another dependency failed (503).
    Unavailable,
    /// A bug (500).
    Internal,
}

/// A domain error with a stable code such as `ceremony_expired`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
    /// Further machine-readable members of the error (e.g. `level` for `step_up_required`).
    pub extra: Vec<(&'static str, String)>,
}

impl Error {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Error {
            kind,
            code,
            message: message.into(),
            extra: Vec::new(),
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }

    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    /// Adds a machine-readable member to the error.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((key, value.into()));
        self
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, "storage_unavailable", message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}
