//! Patroni's key layout under `/<namespace>/<scope>/`.

/// Builds the keys of one cluster. Namespace and scope are joined exactly as Patroni
/// does, so `namespace: /service/` and `namespace: service` name the same prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(namespace: &str, scope: &str) -> Self {
        let ns = namespace.trim_matches('/');
        let prefix = if ns.is_empty() {
            format!("/{scope}/")
        } else {
            format!("/{ns}/{scope}/")
        };
        Self { prefix }
    }

    /// The cluster prefix, always ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn leader(&self) -> String {
        self.key("leader")
    }
    pub fn config(&self) -> String {
        self.key("config")
    }
    pub fn initialize(&self) -> String {
        self.key("initialize")
    }
    pub fn history(&self) -> String {
        self.key("history")
    }
    pub fn failover(&self) -> String {
        self.key("failover")
    }
    pub fn sync(&self) -> String {
        self.key("sync")
    }
    pub fn status(&self) -> String {
        self.key("status")
    }
    pub fn failsafe(&self) -> String {
        self.key("failsafe")
    }
    /// Warden's own key: the member archiving WAL, under that member's lease.
    pub fn archiver(&self) -> String {
        self.key("warden/archiver")
    }
    /// Warden's own key: the recent leadership transitions (`transitions.rs`).
    pub fn transitions(&self) -> String {
        self.key("warden/transitions")
    }
    pub fn members_prefix(&self) -> String {
        self.key("members/")
    }
    pub fn member(&self, name: &str) -> String {
        format!("{}members/{name}", self.prefix)
    }

    /// The part of `key` after the cluster prefix, if it is under it.
    pub fn relative<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())
    }

    fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_forms_give_the_same_prefix() {
        for ns in ["/service/", "service", "/service", "service/"] {
            assert_eq!(Keys::new(ns, "demo").prefix(), "/service/demo/");
        }
        assert_eq!(Keys::new("/", "demo").prefix(), "/demo/");
    }

    #[test]
    fn key_names_match_patroni() {
        let k = Keys::new("/service/", "demo");
        assert_eq!(k.leader(), "/service/demo/leader");
        assert_eq!(k.member("node1"), "/service/demo/members/node1");
        assert_eq!(k.initialize(), "/service/demo/initialize");
        assert_eq!(k.archiver(), "/service/demo/warden/archiver");
        assert_eq!(k.transitions(), "/service/demo/warden/transitions");
        assert_eq!(k.relative("/service/demo/members/n2"), Some("members/n2"));
        assert_eq!(k.relative("/service/other/leader"), None);
    }
}
