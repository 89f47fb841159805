//! keyplane-testkit
