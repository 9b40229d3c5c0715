//! The machinery behind [`config_keys!`]: a key's declaration gives its TOML name, its
//! `TICKVAULT_*` variable, its flag, its help and its type; from the type come the parser, the
//! flag's shape (a switch, a repeatable list, a value) and a sample value for the tests.

use super::{ByteSize, Config, Seconds, Token};

/// Which commands take a key's flag. Variables and the file apply to every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commands {
    /// Every command: the keys that say where the store is and how to reach it (global flags).
    All,
    /// `serve`, `demo` and `config`.
    Serve,
}

/// One config key. Declared by [`config_keys!`]; listed in [`super::KEYS`].
#[derive(Debug)]
pub struct Key {
    /// Its name in the file: `max_body`, or `s3.endpoint` for a key of the `[s3]` table.
    pub toml: &'static str,
    pub env: &'static str,
    /// The long flag, without `--`.
    pub flag: &'static str,
    pub help: &'static str,
    pub commands: Commands,
    pub kind: Kind,
    /// Parses `value` (written as in a variable or a flag) into the key's field.
    pub apply: fn(&mut Config, &str) -> Result<(), String>,
    /// The key's value written as a variable or a flag would give it.
    pub show: fn(&Config) -> String,
}

/// What a key's type says about how it is written.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The placeholder in `--help`: `--max-body <SIZE>`.
    pub hint: &'static str,
    /// A comma-separated list; its flag may be repeated.
    pub list: bool,
    /// A boolean: `--read-only` alone means true, `--read-only=false` says false.
    pub switch: bool,
    /// A value that differs from every key's default, for the tests that set each key.
    pub sample: &'static str,
}

impl Key {
    /// `max_body`, or `[s3] endpoint`.
    pub fn file_name(&self) -> String {
        match self.toml.split_once('.') {
            Some((table, key)) => format!("[{table}] {key}"),
            None => self.toml.to_string(),
        }
    }

    /// The declaration's doc comment on one line.
    pub fn help_line(&self) -> String {
        self.help.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The flag's help: the doc comment, the default, and where else the key is set.
    pub fn help_text(&self) -> String {
        let default = (self.show)(&Config::default());
        let default = match default.as_str() {
            "" => String::new(),
            d => format!(" [default: {d}]"),
        };
        format!(
            "{}{default} [file: {}] [env: {}]",
            self.help_line(),
            self.file_name(),
            self.env
        )
    }
}

/// A type a key can have: parsed from the text of a variable or a flag.
pub(super) trait Value: Sized {
    const KIND: Kind;
    fn parse(text: &str) -> Result<Self, String>;
    /// Written back as `parse` reads it (a secret too: only defaults are shown).
    fn show(&self) -> String;
}

impl Value for String {
    const KIND: Kind = kind("TEXT", "sample");
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

/// An empty value unsets the key.
impl Value for Option<String> {
    const KIND: Kind = kind("TEXT", "sample");
    fn parse(text: &str) -> Result<Self, String> {
        Ok((!text.is_empty()).then(|| text.to_string()))
    }
    fn show(&self) -> String {
        self.clone().unwrap_or_default()
    }
}

impl Value for ByteSize {
    const KIND: Kind = kind("SIZE", "3MiB");
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for Seconds {
    const KIND: Kind = kind("DURATION", "7s");
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for usize {
    const KIND: Kind = kind("N", "7");
    fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a whole number"))
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// Seconds, as the `[s3]` timeouts are written.
impl Value for f64 {
    const KIND: Kind = kind("SECONDS", "7.5");
    fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for bool {
    const KIND: Kind = Kind {
        switch: true,
        ..kind("BOOL", "true")
    };
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(format!("{text:?} is not true or false")),
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for Vec<String> {
    const KIND: Kind = Kind {
        list: true,
        ..kind("NAME,...", "live,gc")
    };
    fn parse(text: &str) -> Result<Self, String> {
        Ok(items(text).map(str::to_string).collect())
    }
    fn show(&self) -> String {
        self.join(",")
    }
}

impl Value for Vec<Token> {
    const KIND: Kind = Kind {
        list: true,
        ..kind("SCOPE:TOKEN", "read:abc,write:def")
    };
    fn parse(text: &str) -> Result<Self, String> {
        items(text).map(str::parse).collect()
    }
    fn show(&self) -> String {
        let items: Vec<String> = self
            .iter()
            .map(|t| format!("{}:{}", t.scope.as_str(), t.token))
            .collect();
        items.join(",")
    }
}

const fn kind(hint: &'static str, sample: &'static str) -> Kind {
    Kind {
        hint,
        list: false,
        switch: false,
        sample,
    }
}

/// The items of a comma-separated list; an empty text is an empty list.
fn items(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Declares `Config`: each key once, with its default, flag, variable and doc comment (the
/// flag's help). Generates the struct, its `Default` and [`super::KEYS`]. The `[s3]` keys are
/// fields of [`crate::storage::S3Config`] (defaults there); `tables` are the struct's tables
/// (`[s3]`, whose keys are the section above, and `[providers.NAME]`, whose keys are the fields
/// of `ProviderConfig`: see `config/providers.rs`).
macro_rules! config_keys {
    (
        $(#[$meta:meta])*
        pub struct Config {
            $(
                $(#[doc = $doc:literal])+
                $field:ident: $ty:ty = $default:expr,
                    flag $flag:literal, env $env:literal, $commands:ident;
            )+
        }
        [s3] {
            $(
                $(#[doc = $s3_doc:literal])+
                $s3_field:ident: $s3_ty:ty, flag $s3_flag:literal, env $s3_env:literal;
            )+
        }
        tables {
            $(
                $(#[doc = $table_doc:literal])+
                $table:ident: $table_ty:ty;
            )+
        }
    ) => {
        $(#[$meta])*
        pub struct Config {
            $(
                $(#[doc = $doc])+
                pub $field: $ty,
            )+
            $(
                $(#[doc = $table_doc])+
                pub $table: $table_ty,
            )+
        }

        impl Default for Config {
            fn default() -> Self {
                Self {
                    $($field: $default,)+
                    $($table: Default::default(),)+
                }
            }
        }

        /// Every key, in the order declared: the top-level keys, then the `[s3]` table's.
        pub static KEYS: &[keys::Key] = &[
            $(
                keys::Key {
                    toml: stringify!($field),
                    env: $env,
                    flag: $flag,
                    help: concat!($($doc, " "),+),
                    commands: keys::Commands::$commands,
                    kind: <$ty as keys::Value>::KIND,
                    apply: |config, text| {
                        config.$field = keys::Value::parse(text)?;
                        Ok(())
                    },
                    show: |config| keys::Value::show(&config.$field),
                },
            )+
            $(
                keys::Key {
                    toml: concat!("s3.", stringify!($s3_field)),
                    env: $s3_env,
                    flag: $s3_flag,
                    help: concat!($($s3_doc, " "),+),
                    commands: keys::Commands::All,
                    kind: <$s3_ty as keys::Value>::KIND,
                    apply: |config, text| {
                        config.s3.$s3_field = keys::Value::parse(text)?;
                        Ok(())
                    },
                    show: |config| keys::Value::show(&config.s3.$s3_field),
                },
            )+
        ];
    };
}
pub(crate) use config_keys;
