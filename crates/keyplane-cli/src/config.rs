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

#[cfg(test)]
mod tests {
    use super::*;

    /// The ```toml blocks of a Markdown document.
    fn toml_blocks(doc: &str) -> Vec<String> {
        doc.split("```toml\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap_or_default().to_owned())
            .collect()
    }

    /// Every configuration example in the docs loads as written (no unknown or mistyped key,
    /// every value valid), so the docs cannot drift from the settings.
    #[test]
    fn the_configuration_examples_in_the_docs_load() {
        let docs = [
            (
                "docs/configuration.md",
                include_str!("../../../docs/configuration.md"),
            ),
            (
                "docs/operations.md",
                include_str!("../../../docs/operations.md"),
            ),
        ];
        let mut loaded = 0;
        for (name, doc) in docs {
            for block in toml_blocks(doc) {
                let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
                    .merge(Toml::string(&block))
                    .extract()
                    .unwrap_or_else(|e| panic!("{name}: {e}\n{block}"));
                if let Err(problems) = settings.validate() {
                    panic!("{name}: {problems:?}\n{block}");
                }
                loaded += 1;
            }
        }
        assert!(loaded >= 3, "found the examples ({loaded})");
    }
}
