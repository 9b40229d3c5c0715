//! The keys of `[providers.NAME]` tables by variable and flag: `TICKVAULT_PROVIDER_<NAME>_<KEY>`
//! and `--provider NAME.KEY=VALUE`. The keys are the fields of [`ProviderConfig`] as serde reads
//! them, so a key added there is settable here with no other declaration; a value is applied as
//! the file would hold it, so the file's parsers and defaults apply.

use serde::Deserialize;

use crate::sync::settings::{ProviderConfig, Providers};

/// The keys of a `[providers.NAME]` table, in declaration order.
pub(super) fn keys() -> &'static [&'static str] {
    static KEYS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let mut fields: &'static [&'static str] = &[];
        let _ = ProviderConfig::deserialize(FieldNames(&mut fields));
        fields
    })
}

/// The variable of `key` of provider `name`: upper case, `-` as `_`.
pub(super) fn env_name(name: &str, key: &str) -> String {
    format!("TICKVAULT_PROVIDER_{name}_{key}")
        .to_ascii_uppercase()
        .replace('-', "_")
}

/// Splits a `--provider` value, `NAME.KEY=VALUE`, checking that KEY is a provider key.
pub(super) fn parse_flag(text: &str) -> Result<(&str, &str, &str), String> {
    let shape = || format!("{text:?} is not NAME.KEY=VALUE, e.g. yahoo.timeout=10s");
    let (target, value) = text.split_once('=').ok_or_else(shape)?;
    let (name, key) = target.split_once('.').ok_or_else(shape)?;
    if name.is_empty() {
        return Err(shape());
    }
    if !keys().contains(&key) {
        return Err(format!(
            "{key:?} is not a provider key ({})",
            keys().join(", ")
        ));
    }
    Ok((name, key, value))
}

/// A provider's table while its values are applied: from the file's config (or empty for a
/// provider the flags add), each value checked as it comes.
pub(super) struct Table {
    table: toml::Table,
}

impl Table {
    pub(super) fn of(provider: Option<&ProviderConfig>) -> Table {
        let table = provider
            .map(|p| toml::Table::try_from(p).expect("a provider config serializes"))
            .unwrap_or_default();
        Table { table }
    }

    /// Sets `key` from text: as a TOML string, else (for numbers and booleans) as the TOML
    /// value the text spells. Refused if neither reads as the key's type.
    pub(super) fn set(&mut self, key: &str, text: &str) -> Result<(), String> {
        let mut error = None;
        for value in [Some(toml::Value::String(text.to_string())), literal(text)]
            .into_iter()
            .flatten()
        {
            let mut table = self.table.clone();
            table.insert(key.to_string(), value);
            // A provider the flags add has no kind until its own flag gives one.
            let mut checked = table.clone();
            checked
                .entry("kind")
                .or_insert_with(|| toml::Value::String("csv".into()));
            match ProviderConfig::deserialize(checked) {
                Ok(_) => {
                    self.table = table;
                    return Ok(());
                }
                Err(e) => {
                    error.get_or_insert_with(|| e.message().to_string());
                }
            }
        }
        Err(error.unwrap_or_default())
    }

    pub(super) fn finish(self) -> Result<ProviderConfig, String> {
        ProviderConfig::deserialize(self.table).map_err(|e| e.message().to_string())
    }
}

/// Applies the variables, then the flags (`(name, key, value)`, in order) to `providers`; a
/// refused value is named with its source.
pub(super) fn apply(
    providers: &mut Providers,
    var: &impl Fn(&str) -> Option<String>,
    flags: &[(String, String, String)],
) -> Result<(), super::Error> {
    let mut names: Vec<String> = providers.keys().cloned().collect();
    for (name, _, _) in flags {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    for name in names {
        let invalid = |given: String, message: String| super::Error::Value { given, message };
        let mut table = Table::of(providers.get(&name));
        // Only a provider a variable or a flag sets is rebuilt from its table.
        let mut touched = false;
        for key in keys() {
            let env = env_name(&name, key);
            if let Some(text) = var(&env) {
                table
                    .set(key, &text)
                    .map_err(|e| invalid(format!("{env} ([providers.{name}] {key})"), e))?;
                touched = true;
            }
        }
        for (_, key, text) in flags.iter().filter(|(n, _, _)| *n == name) {
            table.set(key, text).map_err(|e| {
                invalid(
                    format!("--provider {name}.{key} ([providers.{name}] {key})"),
                    e,
                )
            })?;
            touched = true;
        }
        if touched {
            let provider = table
                .finish()
                .map_err(|e| invalid(format!("--provider {name}.* ([providers.{name}])"), e))?;
            providers.insert(name, provider);
        }
    }
    Ok(())
}

/// `text` read as a bare TOML value (`4`, `true`, `0.5`), if it is one.
fn literal(text: &str) -> Option<toml::Value> {
    let mut doc: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
    doc.remove("v")
}

/// A deserializer that only records the field names a struct asks for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("only struct fields are read"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("fields read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
