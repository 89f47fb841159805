//! Loading settings: built-in defaults, then the TOML file, then `KEYPLANE_*` environment
//! variables (nested keys with `__`, e.g. `KEYPLANE_DATABASE__URL`), then command-line flags.

use crate::Cli;
use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use keyplane_server::Settings;

pub fn load(cli: &Cli) -> anyhow::Result<Settings> {
    let mut fig = Figment::from(Serialized::defaults(Settings::default()));
    if let Some(path) = &cli.config {
        if !path.exists() {
            bail!("configuration file {} does not exist", path.display());
        }
        fig = fig.merge(Toml::file(path));
    }
    // KEYPLANE_CONFIG names the file; KEYPLANE_LOG is the log filter; KEYPLANE_TEST_* belong to
    // the test suite. Every other KEYPLANE_* variable is a setting, and an unknown one is an error.
    fig = fig.merge(
        Env::prefixed("KEYPLANE_")
            .split("__")
            // The key arrives in its original case, without the prefix.
            .filter(|key| {
                let key = key.as_str().to_ascii_lowercase();
                !(key == "config" || key == "log" || key.starts_with("test_"))
            }),
    );
    let mut settings: Settings = fig.extract().context("invalid configuration")?;
    if let Some(d) = &cli.data_dir {
        settings.data_dir = d.clone();
    }
    if let Some(u) = &cli.database_url {
        settings.database.url = u.clone();
    }
    if let Err(problems) = settings.validate() {
        bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
    }
    Ok(settings)
}
