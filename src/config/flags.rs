//! The flags of the config keys: built from [`KEYS`] for clap, read back as [`Overrides`].

use super::{Commands, Config, Error, KEYS, Key, providers};

/// Values given as flags, applied over the file and the environment. Built by clap from the
/// flags of [`KEYS`] (`serve`, `demo` and `config` take [`Overrides`]; every command takes
/// [`GlobalOverrides`]), or by [`Overrides::set`].
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// In the order given; a list key's values joined by commas.
    values: Vec<(&'static Key, String)>,
    /// `--provider NAME.KEY=VALUE`: (name, key, value), in the order given.
    providers: Vec<(String, String, String)>,
}

/// The flag of the providers' keys: `--provider NAME.KEY=VALUE`.
const PROVIDER_FLAG: &str = "provider";

/// The flags every command takes: the keys of where the store is and how to reach it
/// ([`Commands::All`]), as global flags of `tickvault`.
#[derive(Debug, Default, Clone)]
pub struct GlobalOverrides(pub Overrides);

impl Overrides {
    /// Sets `key` (its file name: `max_body`, `s3.endpoint`, `providers.NAME.KEY`) as a flag
    /// would.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> Result<(), Error> {
        if let Some(provider_key) = key.strip_prefix("providers.") {
            let flag = format!("{provider_key}={}", value.into());
            let (name, key, value) =
                providers::parse_flag(&flag).map_err(|_| Error::UnknownKey(key.to_string()))?;
            let given = (name.to_string(), key.to_string(), value.to_string());
            self.providers.push(given);
            return Ok(());
        }
        let key = KEYS
            .iter()
            .find(|k| k.toml == key)
            .ok_or_else(|| Error::UnknownKey(key.to_string()))?;
        self.values.push((key, value.into()));
        Ok(())
    }

    /// These overrides, then `later`'s (which win).
    pub fn and(mut self, later: &Overrides) -> Overrides {
        self.values.extend(later.values.iter().cloned());
        self.providers.extend(later.providers.iter().cloned());
        self
    }

    pub(super) fn values(&self) -> &[(&'static Key, String)] {
        &self.values
    }

    pub(super) fn providers(&self) -> &[(String, String, String)] {
        &self.providers
    }

    fn add_flags(mut cmd: clap::Command, commands: Commands) -> clap::Command {
        for key in KEYS.iter().filter(|k| k.commands == commands) {
            let arg = clap::Arg::new(key.toml)
                .long(key.flag)
                .value_name(key.kind.hint)
                .help(key.help_text())
                .global(commands == Commands::All)
                .help_heading(match commands {
                    Commands::All => "Store options (every command)",
                    Commands::Serve => "Server options",
                })
                // Checked here so that a bad flag is a usage error naming the flag, as clap's are.
                .value_parser(move |text: &str| {
                    (key.apply)(&mut Config::default(), text).map(|()| text.to_string())
                });
            cmd = cmd.arg(if key.kind.switch {
                arg.num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true")
            } else if key.kind.list {
                arg.action(clap::ArgAction::Append).value_delimiter(',')
            } else {
                arg.action(clap::ArgAction::Set)
            });
        }
        if commands != Commands::Serve {
            return cmd;
        }
        let help = format!(
            "Sets KEY of provider NAME, as `[providers.NAME] KEY = VALUE` in the file would; a \
             provider not in the file needs NAME.kind. Keys: {}. The flag repeats. [env: \
             TICKVAULT_PROVIDER_<NAME>_<KEY>]",
            providers::keys().join(", ")
        );
        cmd.arg(
            clap::Arg::new(PROVIDER_FLAG)
                .long(PROVIDER_FLAG)
                .value_name("NAME.KEY=VALUE")
                .help(help)
                .help_heading("Server options")
                .action(clap::ArgAction::Append)
                .value_parser(|text: &str| providers::parse_flag(text).map(|_| text.to_string())),
        )
    }

    fn from_flags(matches: &clap::ArgMatches, commands: Commands) -> Overrides {
        let values = KEYS
            .iter()
            .filter(|k| k.commands == commands)
            .filter_map(|key| {
                let given: Vec<String> = matches.get_many::<String>(key.toml)?.cloned().collect();
                Some((key, given.join(",")))
            })
            .collect();
        let providers = match commands {
            Commands::Serve => matches.get_many::<String>(PROVIDER_FLAG),
            Commands::All => None,
        };
        let providers = providers
            .into_iter()
            .flatten()
            // Each was checked by the flag's parser.
            .filter_map(|text| providers::parse_flag(text).ok())
            .map(|(n, k, v)| (n.to_string(), k.to_string(), v.to_string()))
            .collect();
        Overrides { values, providers }
    }
}

impl clap::FromArgMatches for Overrides {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self::from_flags(matches, Commands::Serve))
    }
    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_flags(matches, Commands::Serve);
        Ok(())
    }
}

impl clap::Args for Overrides {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        Self::add_flags(cmd, Commands::Serve)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for GlobalOverrides {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self(Overrides::from_flags(matches, Commands::All)))
    }
    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0 = Overrides::from_flags(matches, Commands::All);
        Ok(())
    }
}

impl clap::Args for GlobalOverrides {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        Overrides::add_flags(cmd, Commands::All)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}
