//! The REST API's TLS as patronictl takes it: `ctl.cacert`, `ctl.certfile`,
//! `ctl.keyfile`, `ctl.keyfile_password`, `ctl.insecure`, each falling back to the
//! `restapi` twin (`cafile`, `certfile`, `keyfile`, `keyfile_password`), from the file
//! and then Patroni's `PATRONI_CTL_*` / `PATRONI_RESTAPI_*` variables. `-k/--insecure`
//! or `ctl.insecure` (and nothing else) skip verifying the members' certificates.

use serde_yaml::Value;
use std::path::PathBuf;
use warden_api::tls::{ClientFiles, ClientSource};

/// One section's file settings.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub key_password: Option<String>,
}

impl std::fmt::Debug for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Section")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field(
                "key_password",
                &self.key_password.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `ctl` and `restapi` TLS settings before the fallback is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestTlsSettings {
    pub ctl: Section,
    pub restapi: Section,
    /// `ctl.insecure` (`PATRONI_CTL_INSECURE`).
    pub insecure: bool,
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on" | "y"
    )
}

impl RestTlsSettings {
    /// The settings in a config file's `ctl` and `restapi` sections.
    pub fn apply_file(&mut self, root: &Value) {
        if let Some(ctl) = root.get("ctl") {
            self.ctl.ca = text(ctl.get("cacert")).or(self.ctl.ca.take());
            self.ctl.cert = text(ctl.get("certfile")).or(self.ctl.cert.take());
            self.ctl.key = text(ctl.get("keyfile")).or(self.ctl.key.take());
            self.ctl.key_password =
                text(ctl.get("keyfile_password")).or(self.ctl.key_password.take());
            match ctl.get("insecure") {
                Some(Value::Bool(b)) => self.insecure = *b,
                Some(Value::String(s)) => self.insecure = truthy(s),
                _ => {}
            }
        }
        if let Some(r) = root.get("restapi") {
            self.restapi.ca = text(r.get("cafile")).or(self.restapi.ca.take());
            self.restapi.cert = text(r.get("certfile")).or(self.restapi.cert.take());
            self.restapi.key = text(r.get("keyfile")).or(self.restapi.key.take());
            self.restapi.key_password =
                text(r.get("keyfile_password")).or(self.restapi.key_password.take());
        }
    }

    /// Patroni's variables override the file.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        let set = |slot: &mut Option<String>, name: &str| {
            if let Some(v) = env(name) {
                *slot = Some(v);
            }
        };
        set(&mut self.ctl.ca, "PATRONI_CTL_CACERT");
        set(&mut self.ctl.cert, "PATRONI_CTL_CERTFILE");
        set(&mut self.ctl.key, "PATRONI_CTL_KEYFILE");
        set(&mut self.ctl.key_password, "PATRONI_CTL_KEYFILE_PASSWORD");
        set(&mut self.restapi.ca, "PATRONI_RESTAPI_CAFILE");
        set(&mut self.restapi.cert, "PATRONI_RESTAPI_CERTFILE");
        set(&mut self.restapi.key, "PATRONI_RESTAPI_KEYFILE");
        set(
            &mut self.restapi.key_password,
            "PATRONI_RESTAPI_KEYFILE_PASSWORD",
        );
        if let Some(v) = env("PATRONI_CTL_INSECURE") {
            self.insecure = truthy(&v);
        }
    }

    /// The files the client uses: `ctl.*` else `restapi.*`; the certificate and its
    /// key (and password) come from one section. `insecure`: `-k` or `ctl.insecure`.
    pub fn files(&self, insecure: bool) -> ClientFiles {
        let (ca, ca_key) = match (&self.ctl.ca, &self.restapi.ca) {
            (Some(c), _) => (Some(c), "ctl.cacert"),
            (None, Some(r)) => (Some(r), "restapi.cafile"),
            (None, None) => (None, "ctl.cacert"),
        };
        let (cert, cert_key, key_key) = match (&self.ctl.cert, &self.restapi.cert) {
            (None, Some(_)) => (&self.restapi, "restapi.certfile", "restapi.keyfile"),
            _ => (&self.ctl, "ctl.certfile", "ctl.keyfile"),
        };
        ClientFiles {
            cafile: ca.map(PathBuf::from),
            certfile: cert.cert.as_ref().map(PathBuf::from),
            keyfile: cert.key.as_ref().map(PathBuf::from),
            keyfile_password: cert.key_password.clone(),
            insecure: insecure || self.insecure,
            source: ClientSource {
                cafile: ca_key,
                certfile: cert_key,
                keyfile: key_key,
            },
        }
    }

    /// Installs the process's REST client TLS. Unusable files make every https call
    /// fail with the reason (commands that only read etcd still work).
    pub fn install(&self, insecure: bool) {
        match warden_api::client::ClientTls::from_files(&self.files(insecure)) {
            Ok(t) => warden_api::client::set_tls(t),
            Err(e) => warden_api::client::set_tls_error(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctl_settings_win_and_restapi_fills_in() {
        let root: Value = serde_yaml::from_str(
            "restapi: {cafile: /r/ca, certfile: /r/crt, keyfile: /r/key}\nctl: {cacert: /c/ca}\n",
        )
        .unwrap();
        let mut s = RestTlsSettings::default();
        s.apply_file(&root);
        let f = s.files(false);
        assert_eq!(f.cafile, Some(PathBuf::from("/c/ca")));
        assert_eq!(f.source.cafile, "ctl.cacert");
        assert_eq!(f.certfile, Some(PathBuf::from("/r/crt")));
        assert_eq!(f.keyfile, Some(PathBuf::from("/r/key")));
        assert_eq!(f.source.certfile, "restapi.certfile");
        assert!(!f.insecure);
        let env = |k: &str| match k {
            "PATRONI_CTL_CERTFILE" => Some("/e/crt".to_string()),
            "PATRONI_CTL_INSECURE" => Some("true".to_string()),
            _ => None,
        };
        s.apply_env(&env);
        let f = s.files(false);
        assert_eq!(f.certfile, Some(PathBuf::from("/e/crt")));
        // The key belongs to the ctl certificate's section, which has none.
        assert_eq!(f.keyfile, None);
        assert!(f.insecure);
        assert!(RestTlsSettings::default().files(true).insecure);
    }
}
