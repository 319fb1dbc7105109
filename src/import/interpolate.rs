//! Compose variable interpolation, as the Compose specification defines it (compose-spec
//! `interpolation.md`; compose-go v2 `template/template.go`, the code `docker compose` runs):
//! `$VAR` and `${VAR}`, `${VAR:-default}` (unset or empty → default), `${VAR-default}` (unset →
//! default), `${VAR:?message}` / `${VAR?message}` (an error), `${VAR:+alt}` / `${VAR+alt}`, and
//! `$$` for a literal `$`. A variable that is not set and has no default is blank, with a
//! warning, as `docker compose` does ("The \"X\" variable is not set. Defaulting to a blank
//! string.").
//!
//! The stack format has no interpolation, so the importer resolves values here, except the
//! values of variables that name a secret: those are never read into the stack (see
//! `secrets.rs`); the caller decides what a reference to one becomes.

/// One piece of an interpolated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// A variable reference, already resolved to `value` (blank when unset without default).
    Var(VarUse),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarUse {
    pub name: String,
    /// The resolved value (the variable's, or the default's).
    pub value: String,
    /// Whether the variable itself was set (in the environment or the env file).
    pub set: bool,
    /// The default written in the file, if any (`${X:-d}` → `d`).
    pub default: Option<String>,
    /// Unset with no default and no `?` message: compose warns and uses a blank.
    pub missing: bool,
}

/// Splits `text` into text and resolved variable references. `lookup` answers the variables
/// (environment first, then the env file). Errors: a `${X?msg}` whose X is unset, or a syntax
/// error (`${` without `}`, a bad name).
pub fn pieces(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Piece>, String> {
    let mut out: Vec<Piece> = Vec::new();
    let mut buf = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            buf.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                buf.push('$');
                i += 2;
            }
            Some('{') => {
                let close =
                    find_close(&chars, i + 2).ok_or_else(|| format!("`${{` without a closing `}}` in {text:?}"))?;
                let inner: String = chars[i + 2..close].iter().collect();
                let var = braced(&inner, lookup)?;
                flush(&mut out, &mut buf);
                out.push(Piece::Var(var));
                i = close + 1;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
                    end += 1;
                }
                let name: String = chars[start..end].iter().collect();
                let value = lookup(&name);
                flush(&mut out, &mut buf);
                out.push(Piece::Var(VarUse {
                    missing: value.is_none(),
                    set: value.is_some(),
                    value: value.unwrap_or_default(),
                    name,
                    default: None,
                }));
                i = end;
            }
            // A lone `$` (at the end, or before a character no name starts with) stays.
            _ => {
                buf.push('$');
                i += 1;
            }
        }
    }
    flush(&mut out, &mut buf);
    Ok(out)
}

fn flush(out: &mut Vec<Piece>, buf: &mut String) {
    if !buf.is_empty() {
        out.push(Piece::Text(std::mem::take(buf)));
    }
}

/// The `}` that closes a `${` opened before `from`, allowing nested `${...}` in defaults.
fn find_close(chars: &[char], from: usize) -> Option<usize> {
    let mut depth = 0;
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '$' if chars.get(i + 1) == Some(&'{') => {
                depth += 1;
                i += 1;
            }
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn braced(inner: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<VarUse, String> {
    let name_end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let name = &inner[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("`${{{inner}}}` does not start with a variable name"));
    }
    let rest = &inner[name_end..];
    let value = lookup(name);
    let set = value.is_some();
    let nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    // Defaults may themselves hold references (`${A:-${B}}`).
    let resolve = |s: &str| -> Result<String, String> {
        Ok(pieces(s, lookup)?
            .into_iter()
            .map(|p| match p {
                Piece::Text(t) => t,
                Piece::Var(v) => v.value,
            })
            .collect())
    };
    let (op, arg) = ["?:", ":-", ":?", ":+", "-", "?", "+"]
        .iter()
        .find_map(|op| rest.strip_prefix(op).map(|a| (*op, a)))
        .unwrap_or(("", rest));
    let mut var = VarUse {
        name: name.to_string(),
        value: value.clone().unwrap_or_default(),
        set,
        default: None,
        missing: false,
    };
    match op {
        "" if rest.is_empty() => var.missing = !set,
        ":-" | "-" => {
            let use_default = if op == ":-" { !nonempty } else { !set };
            let d = resolve(arg)?;
            if use_default {
                var.value = d.clone();
            }
            var.default = Some(d);
        }
        ":?" | "?" => {
            let fails = if op == ":?" { !nonempty } else { !set };
            if fails {
                let msg = resolve(arg)?;
                return Err(if msg.is_empty() {
                    format!("required variable {name} is not set")
                } else {
                    format!("required variable {name} is not set: {msg}")
                });
            }
        }
        ":+" | "+" => {
            let use_alt = if op == ":+" { nonempty } else { set };
            var.value = if use_alt { resolve(arg)? } else { String::new() };
        }
        _ => return Err(format!("`${{{inner}}}`: unknown modifier {rest:?}")),
    }
    Ok(var)
}

/// The string with every reference replaced by its value.
pub fn resolve(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(String, Vec<VarUse>), String> {
    let mut s = String::new();
    let mut uses = Vec::new();
    for p in pieces(text, lookup)? {
        match p {
            Piece::Text(t) => s.push_str(&t),
            Piece::Var(v) => {
                s.push_str(&v.value);
                uses.push(v);
            }
        }
    }
    Ok((s, uses))
}

/// (name, value, 1-based line) of one variable of an env file.
pub type EnvLine = (String, String, usize);

/// Reads a `.env` file as compose does (compose-go `dotenv`): `KEY=VALUE` lines, `#` comments,
/// an optional `export ` prefix, values in single quotes taken literally, in double quotes with
/// `\n` escapes, unquoted ones up to an inline ` #` comment. Errors name the 1-based line.
pub fn parse_env_file(text: &str) -> Result<Vec<EnvLine>, (usize, String)> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            // compose-go accepts a bare KEY (value from the environment); kstrap takes it as unset.
            if line.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            return Err((n + 1, format!("{line:?} is not KEY=VALUE")));
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err((n + 1, format!("{key:?} is not a variable name")));
        }
        let v = value.trim();
        let value = if let Some(q) = v.strip_prefix('\'') {
            q.split_once('\'')
                .map(|(a, _)| a.to_string())
                .unwrap_or_else(|| q.to_string())
        } else if let Some(q) = v.strip_prefix('"') {
            let body = q.rsplit_once('"').map(|(a, _)| a).unwrap_or(q);
            body.replace("\\n", "\n").replace("\\\"", "\"")
        } else {
            match v.find(" #") {
                Some(i) => v[..i].trim_end().to_string(),
                None => v.to_string(),
            }
        };
        out.push((key.to_string(), value, n + 1));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn r(s: &str) -> String {
        resolve(s, &env).unwrap().0
    }

    #[test]
    fn defaults_follow_the_colon_rule() {
        assert_eq!(r("${SET:-d}"), "value");
        assert_eq!(r("${EMPTY:-d}"), "d");
        assert_eq!(r("${EMPTY-d}"), "");
        assert_eq!(r("${UNSET-d}"), "d");
        assert_eq!(r("${UNSET:-d}"), "d");
        assert_eq!(r("${UNSET-}"), "");
        assert_eq!(r("${SET:+alt}"), "alt");
        assert_eq!(r("${EMPTY:+alt}"), "");
        assert_eq!(r("${EMPTY+alt}"), "alt");
        assert_eq!(r("a$SET-b"), "avalue-b");
        assert_eq!(r("$$SET ${UNSET:-${SET}}"), "$SET value");
        assert_eq!(r("cost: 5$"), "cost: 5$");
    }

    #[test]
    fn a_missing_variable_is_blank_and_marked() {
        let (v, uses) = resolve("x${UNSET}y", &env).unwrap();
        assert_eq!(v, "xy");
        assert!(uses[0].missing && !uses[0].set);
        let (_, uses) = resolve("${UNSET-}", &env).unwrap();
        assert!(!uses[0].missing, "an explicit empty default is not missing");
    }

    #[test]
    fn required_variables_and_bad_syntax_are_errors() {
        let e = resolve("${UNSET:?set it}", &env).unwrap_err();
        assert!(e.contains("UNSET") && e.contains("set it"), "{e}");
        assert!(resolve("${EMPTY?x}", &env).is_ok());
        assert!(resolve("${EMPTY:?x}", &env).is_err());
        assert!(resolve("${OPEN", &env).unwrap_err().contains("closing"));
        assert!(resolve("${1X}", &env).is_err());
        assert!(resolve("${X/a/b}", &env).is_err());
    }

    #[test]
    fn env_files_read_like_compose() {
        let text = "# comment\nA=1\nexport B = two \nC='x # y'\nD=\"multi\\nline\"\nE=v # note\n\nF=\n";
        let got = parse_env_file(text).unwrap();
        let kv: Vec<(&str, &str)> = got.iter().map(|(k, v, _)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            kv,
            [
                ("A", "1"),
                ("B", "two"),
                ("C", "x # y"),
                ("D", "multi\nline"),
                ("E", "v"),
                ("F", "")
            ]
        );
        assert_eq!(parse_env_file("ok=1\nnot a pair\n").unwrap_err().0, 2);
    }
}
