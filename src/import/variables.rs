//! Variables and the text that refers to them: `environment` and `env_file` into the ConfigMap
//! (plain values) and Secret keys (sensitive ones, never their values), command words and
//! health checks with references resolved, and the words a service's values contain (to find
//! the services it talks to).

use super::compose::{as_name_map, scalar};
use super::interpolate::{self, Piece};
use super::secrets;
use super::service::{Ctx, Service};
use super::{ImportError, Level};
use serde_json::{Map, Value};

/// What a variable reference becomes in a place that is not a variable's value.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Refs {
    /// Kubernetes expands `$(NAME)` in env values, command and args.
    Kubernetes,
    /// A shell expands `$NAME` (CMD-SHELL health checks).
    Shell,
}

pub(super) fn environment(
    ctx: &mut Ctx,
    s: &mut Service,
    m: &Map<String, Value>,
    base: &str,
) -> Result<(), ImportError> {
    // env_file first: `environment` wins over it (compose-spec, "env_file").
    let mut vars: Vec<(String, Option<String>, String)> = Vec::new();
    let files: Vec<Value> = match m.get("env_file") {
        Some(Value::Array(a)) => a.clone(),
        Some(v @ (Value::String(_) | Value::Object(_))) => vec![v.clone()],
        _ => Vec::new(),
    };
    for (i, f) in files.iter().enumerate() {
        let p = format!("{base}/env_file/{i}");
        let (path, required) = match f {
            Value::String(x) => (x.clone(), true),
            Value::Object(o) => (
                o.get("path").and_then(Value::as_str).unwrap_or_default().to_string(),
                o.get("required") != Some(&Value::Bool(false)),
            ),
            _ => continue,
        };
        let full = ctx.project.dir.join(&path);
        let text = match crate::limits::read_text(&full) {
            Ok(t) => t,
            Err(_) if !required => continue,
            Err(e) => {
                return Err(ctx.bad(
                    &p,
                    format!("env_file {path}: {e}"),
                    "create the file, or mark it required: false",
                ));
            }
        };
        let parsed = interpolate::parse_env_file(&text).map_err(|(line, msg)| {
            ImportError::input(&full.display().to_string(), line, msg, "write KEY=VALUE lines")
        })?;
        for (k, v, _) in parsed {
            vars.retain(|(n, _, _)| *n != k);
            vars.push((k, Some(v), p.clone()));
        }
    }
    if let Some(env) = m.get("environment") {
        for (k, v) in as_name_map(env) {
            vars.retain(|(n, _, _)| *n != k);
            vars.push((k.clone(), scalar(&v), format!("{base}/environment/{k}")));
        }
    }
    for (name, raw, p) in vars {
        // A bare name takes its value from the environment (compose), and is dropped if unset.
        let raw = match raw {
            Some(r) => r,
            None if (ctx.lookup)(&name).is_some() => format!("${{{name}}}"),
            None => continue,
        };
        s.words.extend(words(&raw));
        if secrets::sensitive(&name) {
            secret_var(ctx, s, &name, &raw, &p)?;
            continue;
        }
        let pieces = interpolate::pieces(&raw, ctx.lookup)
            .map_err(|e| ctx.bad(&p, e, "set the variable, or give a default: ${VAR:-value}"))?;
        let refers = pieces
            .iter()
            .any(|x| matches!(x, Piece::Var(v) if secrets::sensitive(&v.name)));
        let value = join(ctx, s, pieces, &p, if refers { Some(Refs::Kubernetes) } else { None })?;
        s.words.extend(words(&value));
        if refers {
            s.expanded.push((name, value))
        } else {
            s.config.push((name, value))
        }
    }
    Ok(())
}

/// A sensitive variable: a key of the stack's Secrets, never its value.
fn secret_var(ctx: &mut Ctx, s: &mut Service, name: &str, raw: &str, p: &str) -> Result<(), ImportError> {
    let pieces = interpolate::pieces(raw, ctx.lookup)
        .map_err(|e| ctx.bad(p, e, "set the variable, or give a default: ${VAR:-value}"))?;
    let gen_ok = secrets::generatable(name);
    let env = match pieces.as_slice() {
        [Piece::Var(v)] => {
            let has_default = v.default.as_deref().is_some_and(|d| !d.is_empty());
            let explicit_empty = v.default.as_deref() == Some("");
            if !v.set && explicit_empty && !(gen_ok || secrets::generatable(&v.name)) {
                ctx.note(Level::Warning, &s.compose, "environment", format!("{name}: optional (empty default) and not set: left out; set {} when importing to carry it as a secret", v.name), p);
                return Ok(());
            }
            if v.missing {
                ctx.note(
                    Level::Warning,
                    &s.compose,
                    "environment",
                    format!(
                        "{name}: variable {} is not set; declared as a secret to give when applying",
                        v.name
                    ),
                    p,
                );
            }
            if has_default && !v.set {
                ctx.note(
                    Level::Warning,
                    &s.compose,
                    "environment",
                    format!(
                        "{name}: the default in the compose file is not copied; give {} when applying{}",
                        v.name,
                        if gen_ok { ", or kstrap generates one" } else { "" }
                    ),
                    p,
                );
            }
            let generate = !v.set && (gen_ok || secrets::generatable(&v.name));
            ctx.secrets.add(&v.name, generate, &s.compose)
        }
        [] | [Piece::Text(_)] => {
            let literal: String = pieces
                .iter()
                .map(|x| if let Piece::Text(t) = x { t.as_str() } else { "" })
                .collect();
            if literal.is_empty() && !gen_ok {
                ctx.note(Level::Warning, &s.compose, "environment", format!("{name}: optional (empty) and not set: left out; set it when applying by editing the stack, or give it a value when importing"), p);
                return Ok(());
            }
            if !literal.is_empty() {
                ctx.note(Level::Warning, &s.compose, "environment", format!("{name}: the value written in the compose file is not copied into the stack; give it when applying{}", if gen_ok { ", or kstrap generates one" } else { "" }), p);
            }
            ctx.secrets.add_literal(name, &literal, gen_ok, &s.compose)
        }
        _ => {
            ctx.note(
                Level::Warning,
                &s.compose,
                "environment",
                format!("{name}: a value built from several parts is a secret as a whole: give {name} when applying"),
                p,
            );
            ctx.secrets
                .add(&format!("{}_{name}", secrets::env_word(&s.compose)), false, &s.compose)
        }
    };
    s.secret_env.retain(|(n, _)| n != name);
    s.secret_env.push((name.to_string(), env));
    Ok(())
}

/// A value with its references resolved; references to secrets become `$(NAME)` or `$NAME`
/// (`refs`), with NAME added to the container from the stack's Secrets. Without `refs`, a
/// reference to a secret is refused.
fn join(
    ctx: &mut Ctx,
    s: &mut Service,
    pieces: Vec<Piece>,
    p: &str,
    refs: Option<Refs>,
) -> Result<String, ImportError> {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Var(v) if secrets::sensitive(&v.name) => {
                let Some(refs) = refs else {
                    return Err(ctx.bad(
                        p,
                        format!(
                            "{} looks like a secret and is used here; kstrap does not write secret values into a stack",
                            v.name
                        ),
                        "use it in environment:, command: or a health check only",
                    ));
                };
                if !s.secret_env.iter().any(|(n, _)| *n == v.name) {
                    let key = ctx
                        .secrets
                        .add(&v.name, !v.set && secrets::generatable(&v.name), &s.compose);
                    s.secret_env.push((v.name.clone(), key));
                }
                out.push_str(&match refs {
                    Refs::Kubernetes => format!("$({})", v.name),
                    Refs::Shell => format!("${{{}}}", v.name),
                });
            }
            Piece::Var(v) => {
                if v.missing {
                    ctx.note(
                        Level::Warning,
                        &s.compose,
                        "variables",
                        format!(
                            "variable {} is not set: a blank string is used (as docker compose does)",
                            v.name
                        ),
                        p,
                    );
                }
                out.push_str(&v.value);
            }
        }
    }
    Ok(out)
}

/// Resolves a command word or health-check text.
pub(super) fn text(ctx: &mut Ctx, s: &mut Service, raw: &str, p: &str, refs: Refs) -> Result<String, ImportError> {
    let pieces = interpolate::pieces(raw, ctx.lookup)
        .map_err(|e| ctx.bad(p, e, "set the variable, or give a default: ${VAR:-value}"))?;
    let v = join(ctx, s, pieces, p, Some(refs))?;
    s.words.extend(words(&v));
    Ok(v)
}

pub(super) fn shell_text(ctx: &mut Ctx, s: &mut Service, raw: &str, p: &str) -> Result<String, ImportError> {
    text(ctx, s, raw, p, Refs::Shell)
}

/// Any scalar (or list of scalars) with references resolved; a secret is refused.
pub(super) fn resolve_value(ctx: &mut Ctx, v: &Value, p: &str) -> Result<Value, ImportError> {
    match v {
        Value::String(raw) => {
            let pieces = interpolate::pieces(raw, ctx.lookup)
                .map_err(|e| ctx.bad(p, e, "set the variable, or give a default: ${VAR:-value}"))?;
            if let Some(Piece::Var(v)) = pieces
                .iter()
                .find(|x| matches!(x, Piece::Var(v) if secrets::sensitive(&v.name)))
            {
                return Err(ctx.bad(
                    p,
                    format!(
                        "{} looks like a secret and is used here; kstrap does not write secret values into a stack",
                        v.name
                    ),
                    "use it in environment:, command: or a health check only",
                ));
            }
            let out: String = pieces
                .into_iter()
                .map(|x| match x {
                    Piece::Text(t) => t,
                    Piece::Var(v) => v.value,
                })
                .collect();
            Ok(Value::String(out))
        }
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                out.insert(k.clone(), resolve_value(ctx, x, &format!("{p}/{k}"))?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => Ok(Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| resolve_value(ctx, x, &format!("{p}/{i}")))
                .collect::<Result<_, _>>()?,
        )),
        other => Ok(other.clone()),
    }
}

/// The words of a value that could be host names (`postgres://db:5432/x` → db, 5432, x, ...).
pub fn words(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
}

/// Splits a command line into words as a POSIX shell does (quotes, backslashes), which is what
/// compose does with a string `command`/`entrypoint` (compose-go uses shellwords).
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unclosed ' in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unclosed \" in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unclosed \" in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}
