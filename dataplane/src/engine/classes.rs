//! Client classification for both families, as Kea 2.2 does it: classes with a `test` are
//! evaluated in configuration order before subnet selection (`member()` sees the classes decided
//! so far, `only-if-required` classes are skipped); the classes a host reservation names are added
//! once the reservation is known. Membership then guards subnets and pools (`client-class`), sets
//! class lifetimes and boot fields, and class options rank between the shared network's options
//! and the global ones (the order of Kea's `buildCfgOptionList`).

use smallvec::SmallVec;
use xdhcp_config::classify::{eval_bool, ClassifyInput};
use xdhcp_config::model::ClientClass;

/// The classes a client belongs to, as indexes into [`ClassTable::list`], in the order decided.
pub type Classes = SmallVec<[u16; 8]>;

/// The configured classes of one family.
#[derive(Debug, Clone, Default)]
pub struct ClassTable {
    pub list: Vec<ClientClass>,
    /// Whether any class has a test (classification is skipped entirely when none does).
    has_tests: bool,
}

impl ClassTable {
    pub fn new(list: &[ClientClass]) -> Self {
        ClassTable {
            has_tests: list.iter().any(|c| c.test.is_some()),
            list: list.to_vec(),
        }
    }

    /// The classes whose test the packet passes.
    pub fn classify(&self, input: &dyn ClassifyInput) -> Classes {
        let mut member = Classes::new();
        if !self.has_tests {
            return member;
        }
        for (i, c) in self.list.iter().enumerate() {
            let Some(test) = &c.test else { continue };
            if c.only_if_required {
                continue;
            }
            let is_member = |name: &str| self.contains(&member, name);
            if eval_bool(test, input, &is_member) {
                member.push(i as u16);
            }
        }
        member
    }

    /// Adds the classes a host reservation names (names that are not configured classes are
    /// ignored, as Kea does).
    pub fn add_reserved(&self, member: &mut Classes, names: &[String]) {
        for name in names {
            if let Some(i) = self.list.iter().position(|c| &c.name == name) {
                if !member.contains(&(i as u16)) {
                    member.push(i as u16);
                }
            }
        }
    }

    pub fn contains(&self, member: &Classes, name: &str) -> bool {
        member
            .iter()
            .any(|&i| self.list[usize::from(i)].name == name)
    }

    /// May a client of `member` use a subnet or pool guarded by `client-class` `guard`?
    pub fn allows(&self, member: &Classes, guard: Option<&str>) -> bool {
        guard.is_none_or(|g| self.contains(member, g))
    }

    /// The client's classes, in the order they were decided.
    pub fn of<'a>(&'a self, member: &'a Classes) -> impl Iterator<Item = &'a ClientClass> + 'a {
        member.iter().map(|&i| &self.list[usize::from(i)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xdhcp_config::model::{OptionSet, PktField};
    use xdhcp_config::options::{OptionDefs, Universe};

    struct Input;
    impl ClassifyInput for Input {
        fn option(&self, code: u16) -> Option<&[u8]> {
            (code == 60).then_some(&b"PXEClient"[..])
        }
        fn relay4_suboption(&self, _: u8) -> Option<&[u8]> {
            None
        }
        fn pkt_field(&self, _: PktField) -> Vec<u8> {
            Vec::new()
        }
    }

    fn class(name: &str, test: Option<&str>, only_if_required: bool) -> ClientClass {
        ClientClass {
            name: name.into(),
            test: test.map(|t| {
                let defs = OptionDefs::standard(Universe::V4);
                xdhcp_config::classify::parse(t, &defs).expect("test parses")
            }),
            only_if_required,
            options: OptionSet::default(),
            next_server: None,
            server_hostname: None,
            boot_file_name: None,
            valid_lifetime: None,
        }
    }

    #[test]
    fn tests_in_order_member_sees_earlier_and_reservations_add() {
        let t = ClassTable::new(&[
            class("pxe", Some("substring(option[60].hex,0,3) == 'PXE'"), false),
            class("pxe-too", Some("member('pxe')"), false),
            class("never", Some("option[61].exists"), false),
            class("required", Some("option[60].exists"), true),
            class("fixed", None, false),
        ]);
        let mut m = t.classify(&Input);
        let names: Vec<_> = t.of(&m).map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["pxe", "pxe-too"]);
        assert!(t.allows(&m, None) && t.allows(&m, Some("pxe")) && !t.allows(&m, Some("fixed")));
        t.add_reserved(&mut m, &["fixed".into(), "pxe".into(), "unknown".into()]);
        let names: Vec<_> = t.of(&m).map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["pxe", "pxe-too", "fixed"]);
    }
}
