//! Option declarations: every option of the proxy, of a behavior or of a protocol is declared
//! once as an [`OptSpec`]; the command line, the INI file, `--help` and the man page are all
//! derived from these declarations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The longest duration an option takes, in seconds (about 31 years): far past any useful
/// latency or timeout, and short enough that a deadline computed from it cannot overflow.
pub const MAX_SECONDS: f64 = 1e9;

/// Why a behavior or a protocol refused the value of one of its options: the option, named
/// as declared, and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadOption {
    /// The option's declared name (`sleep`).
    pub key: &'static str,
    /// What is wrong, a phrase that follows the name (`must not be negative (got -1)`).
    pub why: String,
}

impl BadOption {
    /// Option `key` refused because its value `why`.
    pub fn new(key: &'static str, why: impl Into<String>) -> BadOption {
        BadOption {
            key,
            why: why.into(),
        }
    }
}

impl fmt::Display for BadOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.why)
    }
}

impl std::error::Error for BadOption {}

/// The type of an option's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptKind {
    /// `true`/`false` (also `yes/no/on/off/1/0`); on the command line a flag.
    Bool,
    /// A signed integer.
    Int,
    /// A floating-point number (durations are seconds as floats).
    Float,
    /// Any text.
    Str,
}

impl OptKind {
    /// The placeholder shown in `--help` for a value of this type.
    pub fn placeholder(self) -> &'static str {
        match self {
            OptKind::Bool => "BOOL",
            OptKind::Int => "N",
            OptKind::Float => "SECONDS",
            OptKind::Str => "TEXT",
        }
    }
}

/// One declared option: name, type, default, unit and a one-line help text.
#[derive(Clone, Copy, Debug)]
pub struct OptSpec {
    /// The option's name, with underscores (`keep_alive`); flags use dashes.
    pub name: &'static str,
    /// The type of its value.
    pub kind: OptKind,
    /// The default, written as on the command line; empty means "unset".
    pub default: &'static str,
    /// The unit of the value (`seconds`, `bytes`), or empty.
    pub unit: &'static str,
    /// One line of help, without the default.
    pub help: &'static str,
    /// Other names it answers to, as flags and INI keys (the 2012 interface's `local`).
    pub aliases: &'static [&'static str],
}

impl OptSpec {
    /// Declares a boolean option.
    pub const fn bool(name: &'static str, default: &'static str, help: &'static str) -> Self {
        OptSpec {
            name,
            kind: OptKind::Bool,
            default,
            unit: "",
            help,
            aliases: &[],
        }
    }
    /// Declares an integer option.
    pub const fn int(
        name: &'static str,
        default: &'static str,
        unit: &'static str,
        help: &'static str,
    ) -> Self {
        OptSpec {
            name,
            kind: OptKind::Int,
            default,
            unit,
            help,
            aliases: &[],
        }
    }
    /// Declares a float option.
    pub const fn float(
        name: &'static str,
        default: &'static str,
        unit: &'static str,
        help: &'static str,
    ) -> Self {
        OptSpec {
            name,
            kind: OptKind::Float,
            default,
            unit,
            help,
            aliases: &[],
        }
    }
    /// Declares a text option.
    pub const fn str(
        name: &'static str,
        default: &'static str,
        unit: &'static str,
        help: &'static str,
    ) -> Self {
        OptSpec {
            name,
            kind: OptKind::Str,
            default,
            unit,
            help,
            aliases: &[],
        }
    }

    /// The same option, answering to `aliases` too.
    pub const fn aliased(self, aliases: &'static [&'static str]) -> Self {
        OptSpec { aliases, ..self }
    }

    /// Whether `name` (underscores) is this option's name or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }

    /// The option's name as a flag fragment: underscores become dashes.
    pub fn flag_name(&self) -> String {
        self.name.replace('_', "-")
    }

    /// The flag (without its dashes) of this option of behavior or protocol `owner`:
    /// `behavior-limit-data-bytes` for `limit_data`'s `bytes` (`kind` is `behavior` or
    /// `protocol`); underscores become dashes, as in the option's own name.
    pub fn owned_flag(&self, kind: &str, owner: &str) -> String {
        format!("{kind}-{}-{}", owner.replace('_', "-"), self.flag_name())
    }

    /// The help line followed by the default and unit, as `--help` and the man page show it.
    pub fn help_with_default(&self) -> String {
        let default = match (self.default, self.kind) {
            ("", _) => "unset".to_string(),
            (d, OptKind::Str) => format!("'{d}'"),
            (d, _) => d.to_string(),
        };
        let unit = match self.default {
            "1" => self.unit.strip_suffix('s').unwrap_or(self.unit),
            _ => self.unit,
        };
        if unit.is_empty() || self.default.is_empty() {
            format!("{} (default: {default})", self.help)
        } else {
            format!("{} (default: {default} {unit})", self.help)
        }
    }

    /// Parses a textual value (command line or INI) as this option's type.
    pub fn parse(&self, text: &str) -> Result<Value, String> {
        let text = text.trim();
        match self.kind {
            OptKind::Bool => parse_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| format!("'{text}' is not a boolean (true/false/yes/no/on/off/1/0)")),
            OptKind::Int => text
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| format!("'{text}' is not an integer")),
            OptKind::Float => match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::Float(f)),
                _ => Err(format!("'{text}' is not a number")),
            },
            OptKind::Str => Ok(Value::Str(text.to_string())),
        }
    }

    /// Converts a JSON value (control API) to this option's type; strings are parsed as text.
    pub fn from_json(&self, json: &serde_json::Value) -> Result<Value, String> {
        use serde_json::Value as J;
        match (self.kind, json) {
            (OptKind::Bool, J::Bool(b)) => Ok(Value::Bool(*b)),
            // A whole float (`1000.0`, as Python clients send) is an integer too.
            (OptKind::Int, J::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                        .map(|f| f as i64)
                })
                .map(Value::Int)
                .ok_or_else(|| format!("{n} is not an integer")),
            (OptKind::Float, J::Number(n)) => n
                .as_f64()
                .map(Value::Float)
                .ok_or_else(|| format!("{n} is not a number")),
            (_, J::String(s)) => self.parse(s),
            (OptKind::Str, J::Number(n)) => Ok(Value::Str(n.to_string())),
            (_, other) => Err(format!(
                "{other} is not a {}",
                match self.kind {
                    OptKind::Bool => "boolean",
                    OptKind::Int => "integer",
                    OptKind::Float => "number",
                    OptKind::Str => "string",
                }
            )),
        }
    }
}

/// Reads `true/false/yes/no/on/off/1/0` in any case.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// A typed option value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text.
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s}"),
        }
    }
}

/// The values of a set of declared options: defaults overlaid by what the user set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Values {
    values: BTreeMap<String, Value>,
    explicit: BTreeSet<String>,
}

impl Values {
    /// The defaults of `specs`; an empty default leaves the option unset.
    pub fn defaults(specs: &[OptSpec]) -> Self {
        let mut values = BTreeMap::new();
        for spec in specs {
            if !spec.default.is_empty() {
                // Declarations are checked by a test, so a default always parses.
                if let Ok(v) = spec.parse(spec.default) {
                    values.insert(spec.name.to_string(), v);
                }
            }
        }
        Values {
            values,
            explicit: BTreeSet::new(),
        }
    }

    /// Sets an option, marking it as given by the user.
    pub fn set(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_string(), value);
        self.explicit.insert(name.to_string());
    }

    /// Whether the user set this option (command line, file or API) rather than the default.
    pub fn is_explicit(&self, name: &str) -> bool {
        self.explicit.contains(name)
    }

    /// The value of an option, if set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// A boolean option; false when unset.
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Value::Bool(true)))
    }

    /// An integer option, if set.
    pub fn int_opt(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// An integer option; 0 when unset.
    pub fn int(&self, name: &str) -> i64 {
        self.int_opt(name).unwrap_or(0)
    }

    /// A float option (an integer value is widened); 0 when unset.
    pub fn float(&self, name: &str) -> f64 {
        match self.get(name) {
            Some(Value::Float(x)) => *x,
            Some(Value::Int(i)) => *i as f64,
            _ => 0.0,
        }
    }

    /// A text option, if set.
    pub fn str_opt(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A text option; empty when unset.
    pub fn str(&self, name: &str) -> &str {
        self.str_opt(name).unwrap_or("")
    }

    /// Every set option, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Finds the declaration of `name` (dashes or underscores), or of an option it is an alias
/// of, in `specs`.
pub fn find<'a>(specs: &'a [OptSpec], name: &str) -> Option<&'a OptSpec> {
    let name = name.replace('-', "_");
    specs.iter().find(|s| s.answers_to(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_and_rejects_garbage() {
        let b = OptSpec::bool("x", "false", "");
        assert_eq!(b.parse("Yes"), Ok(Value::Bool(true)));
        assert_eq!(b.parse("off"), Ok(Value::Bool(false)));
        assert!(b.parse("maybe").is_err());
        let i = OptSpec::int("n", "1", "", "");
        assert_eq!(i.parse(" 12 "), Ok(Value::Int(12)));
        assert!(i.parse("1.5").is_err());
        let f = OptSpec::float("s", "1.0", "seconds", "");
        assert_eq!(f.parse("0.25"), Ok(Value::Float(0.25)));
        assert!(f.parse("inf").is_err());
        assert!(f.parse("abc").is_err());
    }

    #[test]
    fn json_values_are_type_checked() {
        let f = OptSpec::float("sleep", "1", "seconds", "");
        assert_eq!(f.from_json(&serde_json::json!(2)), Ok(Value::Float(2.0)));
        assert_eq!(
            f.from_json(&serde_json::json!("0.5")),
            Ok(Value::Float(0.5))
        );
        assert!(f.from_json(&serde_json::json!(true)).is_err());
        let b = OptSpec::bool("before", "true", "");
        assert_eq!(
            b.from_json(&serde_json::json!(false)),
            Ok(Value::Bool(false))
        );
        assert!(b.from_json(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn values_track_what_the_user_set() {
        let specs = [
            OptSpec::float("sleep", "1.0", "seconds", ""),
            OptSpec::int("seed", "", "", ""),
        ];
        let mut v = Values::defaults(&specs);
        assert_eq!(v.float("sleep"), 1.0);
        assert_eq!(v.int_opt("seed"), None);
        assert!(!v.is_explicit("sleep"));
        v.set("sleep", Value::Float(2.0));
        assert!(v.is_explicit("sleep"));
        assert_eq!(v.float("sleep"), 2.0);
    }

    #[test]
    fn help_ends_with_default_and_unit() {
        let f = OptSpec::float("sleep", "1.0", "seconds", "how long");
        assert_eq!(f.help_with_default(), "how long (default: 1.0 seconds)");
        let s = OptSpec::str("seed", "", "", "seed");
        assert_eq!(s.help_with_default(), "seed (default: unset)");
    }
}
