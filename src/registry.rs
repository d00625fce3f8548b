//! The registry of behaviors and protocols a proxy knows: the built-ins, plus what a library
//! user or the INI file adds. Nothing global: each proxy owns its registry.

use std::borrow::Cow;

use crate::behavior::{self, BehaviorSpec};
use crate::protocol::{self, ProtocolSpec};

/// Known behaviors and protocols, in documentation order.
#[derive(Debug, Clone)]
pub struct Registry {
    behaviors: Vec<BehaviorSpec>,
    protocols: Vec<ProtocolSpec>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// The built-in behaviors and protocols.
    pub fn builtin() -> Self {
        Registry {
            behaviors: behavior::builtins(),
            protocols: protocol::builtins(),
        }
    }

    /// Adds (or replaces, by name) a behavior.
    pub fn with_behavior(mut self, spec: BehaviorSpec) -> Self {
        self.behaviors.retain(|b| b.name != spec.name);
        self.behaviors.push(spec);
        self
    }

    /// Adds (or replaces, by name) a protocol.
    pub fn with_protocol(mut self, spec: ProtocolSpec) -> Self {
        self.protocols.retain(|p| p.name != spec.name);
        self.protocols.push(spec);
        self
    }

    /// Defines behavior `name` as `base` with its own option values (INI `base =`).
    pub fn derive_behavior(self, name: &str, base: &str) -> Result<Self, String> {
        let mut spec = self.behavior(base).cloned().ok_or_else(|| {
            format!(
                "base behavior '{base}' does not exist (known: {})",
                self.behavior_names().join(", ")
            )
        })?;
        spec.name = Cow::Owned(name.to_string());
        spec.aliases = &[];
        Ok(self.with_behavior(spec))
    }

    /// The behavior called `name` (or an alias of it).
    pub fn behavior(&self, name: &str) -> Option<&BehaviorSpec> {
        self.behaviors.iter().find(|b| b.answers_to(name))
    }

    /// The protocol called `name`.
    pub fn protocol(&self, name: &str) -> Option<&ProtocolSpec> {
        self.protocols.iter().find(|p| p.name == name)
    }

    /// Every behavior, in documentation order.
    pub fn behaviors(&self) -> &[BehaviorSpec] {
        &self.behaviors
    }

    /// Every protocol, in documentation order.
    pub fn protocols(&self) -> &[ProtocolSpec] {
        &self.protocols
    }

    /// Behavior names, sorted.
    pub fn behavior_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.behaviors.iter().map(|b| b.name.to_string()).collect();
        names.sort();
        names
    }

    /// Protocol names, sorted.
    pub fn protocol_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.protocols.iter().map(|p| p.name.to_string()).collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_behavior_keeps_base_options_and_answers_to_its_name() {
        let r = Registry::builtin()
            .derive_behavior("flaky", "errors")
            .unwrap();
        let flaky = r.behavior("flaky").unwrap();
        assert!(flaky.options.iter().any(|o| o.name == "warmup"));
        assert!(r.behavior_names().contains(&"flaky".to_string()));
        assert!(Registry::builtin().derive_behavior("x", "nope").is_err());
    }

    #[test]
    fn protocol_names_are_unique() {
        let mut names = Registry::builtin().protocol_names();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
    }
}
