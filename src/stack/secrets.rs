//! The secrets a stack declares, filled from the environment, from files named on the command
//! line, or generated, and turned into `v1 Secret` objects. Values never reach a log, a plan, an
//! error message or JSON output: `SecretValue`'s `Debug` is redacted and errors name only keys.
//!
//! A generated value (a session key, a LiveKit API secret) is made once: the caller passes the
//! values already in the cluster (`existing`) and those are kept, so a re-run converges instead
//! of rotating keys under running services.

use super::{SecretDecl, Stack};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A secret value; shows as `<redacted>` in debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a value came from, for messages ("LIVEKIT_KEYS from the environment").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Environment,
    File,
    Generated,
    /// Kept from the Secret already in the cluster.
    Cluster,
}

/// A Secret ready to apply: the object (values under `data`) and where each key came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSecret {
    pub name: String,
    /// By environment variable (the name the user knows).
    pub origins: BTreeMap<String, Origin>,
    /// By key in the Secret (`SecretDecl::secret_key`).
    values: BTreeMap<String, SecretValue>,
}

impl ResolvedSecret {
    /// The `v1 Secret` for `namespace`, values base64-encoded under `data` (not the write-only
    /// `stringData`, which the API server folds into `data` and never returns: applying `data`
    /// lets a re-run compare like with like). Holds the values: never print it.
    pub fn object(&self, namespace: &str) -> Value {
        let data: serde_json::Map<String, Value> = self
            .values
            .iter()
            .map(|(k, v)| {
                let encoded = serde_json::to_value(k8s_openapi::ByteString(v.expose().as_bytes().to_vec()))
                    .unwrap_or(Value::Null);
                (k.clone(), encoded)
            })
            .collect();
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": self.name, "namespace": namespace },
            "type": "Opaque",
            "data": data,
        })
    }

    /// The value of `key`, decoded (for tests and for comparing with the cluster).
    pub fn value(&self, key: &str) -> Option<&SecretValue> {
        self.values.get(key)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "--secret-file {arg:?}: not of the form KEY=PATH\n  fix: name the key the stack declares and a file holding its value, e.g. --secret-file LIVEKIT_KEYS=/root/livekit.txt"
    )]
    BadFlag { arg: String },
    #[error("--secret-file {key}=... is given twice\n  fix: give each key once")]
    Twice { key: String },
    #[error(
        "--secret-file {key}=...: stack {stack} declares no secret key {key:?} (it declares: {declared})\n  fix: use one of the declared keys"
    )]
    UnknownKey {
        stack: String,
        key: String,
        declared: String,
    },
    #[error("--secret-file {key}={}: cannot read: {message}\n  fix: check the path and its permissions", path.display())]
    Unreadable {
        key: String,
        path: PathBuf,
        message: String,
    },
    #[error(
        "{key} for secret {secret} is empty (from {from})\n  fix: give a non-empty value, or leave it unset if the stack can generate it"
    )]
    Empty { key: String, secret: String, from: String },
    #[error(
        "stack {stack} needs values kstrap cannot make up:{}\n  fix: set each as an environment variable, or pass --secret-file KEY=PATH",
        missing.iter().map(|(k, d)| format!("\n    {k}: {d}")).collect::<String>()
    )]
    Missing {
        stack: String,
        /// (key, the secret's description)
        missing: Vec<(String, String)>,
    },
}

/// Parses `--secret-file KEY=PATH` flags.
pub fn parse_secret_files(args: &[String]) -> Result<BTreeMap<String, PathBuf>, SecretError> {
    let mut out = BTreeMap::new();
    for arg in args {
        match arg.split_once('=') {
            Some((k, p)) if !k.is_empty() && !p.is_empty() => {
                if out.insert(k.to_string(), PathBuf::from(p)).is_some() {
                    return Err(SecretError::Twice { key: k.to_string() });
                }
            }
            _ => return Err(SecretError::BadFlag { arg: arg.clone() }),
        }
    }
    Ok(out)
}

/// Checks `--secret-file` flags before anything runs (a dry run included): the form, that the
/// stack declares each key, and that each file can be read and is not empty. The values read are
/// dropped; `resolve` reads them again when the Secrets are made.
pub fn check_files(stack: &Stack, args: &[String]) -> Result<(), SecretError> {
    let files = parse_secret_files(args)?;
    unknown_key(stack, &files)?;
    for decl in &stack.secrets {
        for key in &decl.keys {
            if let Some(path) = files.get(key)
                && read_value(key, path)?.is_empty()
            {
                return Err(SecretError::Empty {
                    key: key.clone(),
                    secret: decl.name.clone(),
                    from: format!("file {}", path.display()),
                });
            }
        }
    }
    Ok(())
}

/// Checks the environment variables a stack's secrets are read from: one that is set must not be
/// empty (the run would refuse it after the cluster is up). Keys given by `--secret-file` are
/// not read from the environment and are skipped.
pub fn check_env(stack: &Stack, args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<(), SecretError> {
    let files = parse_secret_files(args)?;
    for decl in &stack.secrets {
        for key in decl.keys.iter().filter(|k| !files.contains_key(*k)) {
            if env(key).is_some_and(|v| v.is_empty()) {
                return Err(SecretError::Empty {
                    key: key.clone(),
                    secret: decl.name.clone(),
                    from: "the environment".into(),
                });
            }
        }
    }
    Ok(())
}

/// A `--secret-file` key the stack does not declare.
fn unknown_key(stack: &Stack, files: &BTreeMap<String, PathBuf>) -> Result<(), SecretError> {
    let declared: Vec<&str> = stack.secrets.iter().flat_map(|s| &s.keys).map(String::as_str).collect();
    if let Some(key) = files.keys().find(|k| !declared.contains(&k.as_str())) {
        return Err(SecretError::UnknownKey {
            stack: stack.name.clone(),
            key: key.clone(),
            declared: if declared.is_empty() {
                "none".to_string()
            } else {
                declared.join(", ")
            },
        });
    }
    Ok(())
}

/// Fills every secret the stack declares. Per key, in order: `--secret-file`, the environment
/// variable of the same name, the value already in the cluster, a generated one (if the stack
/// allows it). `existing` maps secret name → key in the Secret → value from the cluster.
pub fn resolve(
    stack: &Stack,
    files: &BTreeMap<String, PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
    existing: &BTreeMap<String, BTreeMap<String, SecretValue>>,
    random: &mut dyn FnMut(usize) -> String,
) -> Result<Vec<ResolvedSecret>, SecretError> {
    unknown_key(stack, files)?;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for decl in &stack.secrets {
        let mut resolved = ResolvedSecret {
            name: decl.name.clone(),
            origins: BTreeMap::new(),
            values: BTreeMap::new(),
        };
        for key in &decl.keys {
            match value_for(decl, key, files, env, existing, random)? {
                Some((value, origin)) => {
                    crate::redact::remember(value.expose());
                    resolved.values.insert(decl.secret_key(key).to_string(), value);
                    resolved.origins.insert(key.clone(), origin);
                }
                None => missing.push((key.clone(), decl.description.clone())),
            }
        }
        out.push(resolved);
    }
    if !missing.is_empty() {
        return Err(SecretError::Missing {
            stack: stack.name.clone(),
            missing,
        });
    }
    Ok(out)
}

fn value_for(
    decl: &SecretDecl,
    key: &str,
    files: &BTreeMap<String, PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
    existing: &BTreeMap<String, BTreeMap<String, SecretValue>>,
    random: &mut dyn FnMut(usize) -> String,
) -> Result<Option<(SecretValue, Origin)>, SecretError> {
    let empty = |from: String| SecretError::Empty {
        key: key.to_string(),
        secret: decl.name.clone(),
        from,
    };
    if let Some(path) = files.get(key) {
        let text = read_value(key, path)?;
        if text.is_empty() {
            return Err(empty(format!("file {}", path.display())));
        }
        return Ok(Some((SecretValue(text), Origin::File)));
    }
    if let Some(v) = env(key) {
        if v.is_empty() {
            return Err(empty("the environment".into()));
        }
        return Ok(Some((SecretValue(v), Origin::Environment)));
    }
    if let Some(v) = existing.get(&decl.name).and_then(|m| m.get(decl.secret_key(key))) {
        return Ok(Some((v.clone(), Origin::Cluster)));
    }
    if let Some(g) = &decl.generate {
        let value = g.format.replace("{random}", &random(g.length));
        return Ok(Some((SecretValue(value), Origin::Generated)));
    }
    Ok(None)
}

/// A file's value: one trailing newline (what editors add) is not part of it.
fn read_value(key: &str, path: &Path) -> Result<String, SecretError> {
    let text = crate::limits::read_text(path).map_err(|e| SecretError::Unreadable {
        key: key.to_string(),
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(text.to_string())
}

/// `length` random characters from [A-Za-z0-9], read from the kernel's random source.
pub fn random_alphanumeric(length: usize) -> std::io::Result<String> {
    use std::io::Read;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(length);
    let mut file = std::fs::File::open("/dev/urandom")?;
    let mut buf = [0u8; 64];
    while out.len() < length {
        file.read_exact(&mut buf)?;
        // 248 = 62 * 4: rejecting bytes above it keeps every character equally likely.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == length {
                break;
            }
            out.push(ALPHABET[(*b % 62) as usize] as char);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::Generate;

    fn stack(secrets: Vec<SecretDecl>) -> Stack {
        Stack {
            name: "s".into(),
            description: String::new(),
            namespace: "demo".into(),
            stages: Vec::new(),
            profiles: BTreeMap::new(),
            distros: BTreeMap::new(),
            secrets,
            images: Vec::new(),
            namespaces: Vec::new(),
            databases: Vec::new(),
            verify: None,
        }
    }

    fn decl(name: &str, keys: &[&str], generate: Option<Generate>) -> SecretDecl {
        SecretDecl {
            name: name.into(),
            description: format!("{name} description"),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            secret_keys: BTreeMap::new(),
            generate,
        }
    }

    /// A value of a Secret object, base64-decoded as the API server would.
    fn decoded(secret: &Value, key: &str) -> String {
        let b: k8s_openapi::ByteString = serde_json::from_value(secret["data"][key].clone()).unwrap();
        String::from_utf8(b.0).unwrap()
    }

    fn counter() -> impl FnMut(usize) -> String {
        let mut n = 0;
        move |len| {
            n += 1;
            format!("{n}").repeat(len)
        }
    }

    #[test]
    fn order_is_file_then_env_then_cluster_then_generated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "from-file\n").unwrap();
        let gen_ = Some(Generate {
            length: 4,
            format: "k: {random}".into(),
        });
        let s = stack(vec![decl("one", &["A", "B"], None), decl("two", &["C", "D"], gen_)]);
        let files = BTreeMap::from([("A".to_string(), file)]);
        let env = |k: &str| (k == "A" || k == "B").then(|| format!("env-{k}"));
        let existing = BTreeMap::from([(
            "two".to_string(),
            BTreeMap::from([("C".to_string(), SecretValue::new("kept"))]),
        )]);
        let out = resolve(&s, &files, &env, &existing, &mut counter()).unwrap();
        let one = out[0].object("demo");
        assert_eq!(decoded(&one, "A"), "from-file", "one trailing newline dropped");
        assert_eq!(decoded(&one, "B"), "env-B");
        assert_eq!(one["metadata"]["namespace"], "demo");
        let two = out[1].object("demo");
        assert_eq!(decoded(&two, "C"), "kept");
        assert_eq!(decoded(&two, "D"), "k: 1111");
        assert_eq!(out[0].origins["A"], Origin::File);
        assert_eq!(out[1].origins["C"], Origin::Cluster);
        assert_eq!(out[1].origins["D"], Origin::Generated);
    }

    #[test]
    fn values_never_show_in_debug_or_errors() {
        let s = stack(vec![decl("one", &["A"], None)]);
        let env = |_: &str| Some("hunter2-super-secret".to_string());
        let out = resolve(&s, &BTreeMap::new(), &env, &BTreeMap::new(), &mut counter()).unwrap();
        let debug = format!("{out:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn missing_values_are_listed_with_how_to_give_them() {
        let s = stack(vec![decl("one", &["A", "B"], None)]);
        let env = |k: &str| (k == "A").then(|| "x".to_string());
        let err = resolve(&s, &BTreeMap::new(), &env, &BTreeMap::new(), &mut counter()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("B: one description"), "{msg}");
        assert!(!msg.contains("\n    A:"), "{msg}");
        assert!(msg.contains("--secret-file KEY=PATH"), "{msg}");
    }

    #[test]
    fn bad_flags_unknown_keys_empty_and_unreadable_values() {
        assert!(matches!(
            parse_secret_files(&["NOEQUALS".into()]),
            Err(SecretError::BadFlag { .. })
        ));
        assert!(matches!(
            parse_secret_files(&["=x".into()]),
            Err(SecretError::BadFlag { .. })
        ));
        let files = parse_secret_files(&["A=/nonexistent/kstrap-secret".into()]).unwrap();
        let s = stack(vec![decl("one", &["A"], None)]);
        let none = |_: &str| None;
        let err = resolve(&s, &files, &none, &BTreeMap::new(), &mut counter()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kstrap-secret"), "{err}");

        let files = parse_secret_files(&["Z=/tmp/x".into()]).unwrap();
        let err = resolve(&s, &files, &none, &BTreeMap::new(), &mut counter()).unwrap_err();
        assert!(err.to_string().contains("declares: A"), "{err}");

        let empty = |_: &str| Some(String::new());
        let err = resolve(&s, &BTreeMap::new(), &empty, &BTreeMap::new(), &mut counter()).unwrap_err();
        assert!(matches!(err, SecretError::Empty { .. }), "{err}");
    }

    #[test]
    fn random_values_have_the_length_and_alphabet_and_differ() {
        let a = random_alphanumeric(40).unwrap();
        let b = random_alphanumeric(40).unwrap();
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn voice_ai_secrets_generate_in_the_shape_livekit_wants() {
        let s = crate::stack::load("voice-ai", None).unwrap();
        let none = |_: &str| None;
        let out = resolve(&s, &BTreeMap::new(), &none, &BTreeMap::new(), &mut |n| {
            random_alphanumeric(n).unwrap()
        })
        .unwrap();
        let lk = out
            .iter()
            .find(|r| r.name == "livekit-keys")
            .unwrap()
            .object("voice-ai");
        let v = decoded(&lk, "LIVEKIT_KEYS");
        let v = v.as_str();
        let (key, secret) = v.split_once(": ").unwrap();
        assert_eq!(key, "kstrap");
        assert!(secret.len() >= 32, "LiveKit wants secrets of 32+ characters");
    }
}
