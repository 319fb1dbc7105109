//! Which variables are secrets, and the keys the imported stack declares for them.
//!
//! The seed's split (seed 004, "Environment Variable Handling"): names like `*_API_KEY`, `*_KEY`,
//! `*_PASSWORD`, `*_PASS`, `*_TOKEN`, `*_SECRET`, `*_CREDENTIALS` are sensitive. kompose copies
//! every `environment` value into the Deployment as a plain `value:` (`ConfigEnvs`,
//! pkg/transformer/kubernetes/kubernetes.go at v1.38.0), so a password in a compose file ends up
//! in the manifests; kstrap never writes a sensitive value into the stack folder. Each becomes a
//! key of a declared Secret (`secrets:` in stack.yaml), read from the environment or
//! `--secret-file` when the stack is applied, or generated when it is a password nobody gave.

use std::collections::{BTreeMap, BTreeSet};

/// Whether a variable named `name` holds a secret.
pub fn sensitive(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    if n.ends_with("_FILE") || n.ends_with("_PATH") || n.ends_with("_URL") && !n.contains("PASSWORD") {
        return false;
    }
    const SUFFIXES: &[&str] = &[
        "_API_KEY",
        "_KEY",
        "_PASSWORD",
        "_PASS",
        "_TOKEN",
        "_SECRET",
        "_CREDENTIALS",
    ];
    matches!(
        n.as_str(),
        "PASSWORD" | "SECRET" | "TOKEN" | "API_KEY" | "PASS" | "CREDENTIALS"
    ) || SUFFIXES.iter().any(|s| n.ends_with(s))
        || n.contains("PASSWORD")
}

/// Whether `text` refers to a variable that holds a secret (`${DB_PASSWORD}`, `$API_KEY`).
pub fn sensitive_ref(text: &str) -> bool {
    super::interpolate::pieces(text, &|_| None)
        .map(|p| {
            p.iter()
                .any(|x| matches!(x, super::interpolate::Piece::Var(v) if sensitive(&v.name)))
        })
        .unwrap_or(false)
}

/// A secret kstrap may make up when none is given: passwords and signing keys (the services of
/// the stack agree on it because they read the same key). API keys and tokens issued by someone
/// else cannot be made up.
pub fn generatable(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    sensitive(&n)
        && !(n.ends_with("_API_KEY")
            || n == "API_KEY"
            || n.ends_with("_TOKEN")
            || n == "TOKEN"
            || n.ends_with("_CREDENTIALS"))
        && (n.contains("PASS") || n.ends_with("SECRET") || n.ends_with("SECRET_KEY"))
}

/// One key of the stack's secrets: read from the environment variable `env` at apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub env: String,
    pub generate: bool,
    /// Services that read it.
    pub services: BTreeSet<String>,
}

/// The keys the stack declares, by environment variable. Literal values seen in the compose
/// file are kept only in memory (to give equal literals one key), never written.
#[derive(Debug, Default)]
pub struct Registry {
    pub keys: BTreeMap<String, Key>,
    literals: BTreeMap<String, u64>,
}

fn fingerprint(value: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

impl Registry {
    /// Declares `env` for `service`.
    pub fn add(&mut self, env: &str, generate: bool, service: &str) -> String {
        let k = self.keys.entry(env.to_string()).or_insert_with(|| Key {
            env: env.to_string(),
            generate,
            services: BTreeSet::new(),
        });
        k.generate |= generate;
        k.services.insert(service.to_string());
        env.to_string()
    }

    /// Declares a key for a literal value written in the compose file: the variable's own name,
    /// shared with another service that wrote the same literal, else `SERVICE_NAME`.
    pub fn add_literal(&mut self, name: &str, value: &str, generate: bool, service: &str) -> String {
        let fp = fingerprint(value);
        let env = match self.literals.get(name) {
            None if !self.keys.contains_key(name) => name.to_string(),
            Some(have) if *have == fp => name.to_string(),
            _ => format!("{}_{}", env_word(service), name),
        };
        self.literals.insert(env.clone(), fp);
        self.add(&env, generate, service)
    }
}

/// `open-webui` → `OPEN_WEBUI`: a service's name as part of a variable name.
pub fn env_word(s: &str) -> String {
    let w: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if w.starts_with(|c: char| c.is_ascii_digit()) {
        format!("S_{w}")
    } else {
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_names_are_sensitive() {
        for s in [
            "OPENAI_API_KEY",
            "SECRET_KEY",
            "DB_PASSWORD",
            "SMTP_PASS",
            "HF_TOKEN",
            "JWT_SECRET",
            "GCP_CREDENTIALS",
            "PASSWORD",
            "MYSQL_ROOT_PASSWORD",
        ] {
            assert!(sensitive(s), "{s}");
        }
        for s in [
            "OLLAMA_BASE_URL",
            "POSTGRES_PASSWORD_FILE",
            "KEYCLOAK_URL",
            "PORT",
            "POSTGRES_USER",
            "TOKENIZERS_PARALLELISM",
        ] {
            assert!(!sensitive(s), "{s}");
        }
    }

    #[test]
    fn passwords_may_be_generated_api_keys_not() {
        assert!(generatable("POSTGRES_PASSWORD") && generatable("WEBUI_SECRET_KEY") && generatable("JWT_SECRET"));
        assert!(!generatable("OPENAI_API_KEY") && !generatable("HF_TOKEN") && !generatable("STRIPE_KEY"));
    }

    #[test]
    fn equal_literals_share_a_key_different_ones_do_not() {
        let mut r = Registry::default();
        assert_eq!(
            r.add_literal("POSTGRES_PASSWORD", "pw", true, "db"),
            "POSTGRES_PASSWORD"
        );
        assert_eq!(
            r.add_literal("POSTGRES_PASSWORD", "pw", true, "app"),
            "POSTGRES_PASSWORD"
        );
        assert_eq!(
            r.add_literal("POSTGRES_PASSWORD", "other", true, "api-2"),
            "API_2_POSTGRES_PASSWORD"
        );
        assert_eq!(r.keys["POSTGRES_PASSWORD"].services.len(), 2);
    }
}
