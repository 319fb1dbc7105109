//! The grammar of a container image reference, so a stack or a flag cannot hand the cluster a
//! name no runtime can pull (`NGINX:1.27 bad`, `x@sha256:zz`).
//!
//! The grammar is distribution/reference's (the one containerd and the kubelet use), from
//! github.com/distribution/reference v0.5.0, reference.go lines 4-26:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] remote-name
//! domain           := host [':' port-number]
//! host             := domain-name | IPv4address | \[ IPv6address \]
//! domain-name      := domain-component ['.' domain-component]*
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! port-number      := /[0-9]+/
//! path-component   := alpha-numeric [separator alpha-numeric]*
//! remote-name      := path-component ['/' path-component]*
//! alpha-numeric    := /[a-z0-9]+/
//! separator        := /[_.]|__|[-]*/
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := digest-algorithm ":" digest-hex
//! digest-algorithm := component [ /[+.-_]/ component ]*, component := /[A-Za-z][A-Za-z0-9]*/
//! digest-hex       := /[0-9a-fA-F]{32,}/
//! ```
//!
//! and the name is at most 255 characters (`NameTotalLengthMax`, same file). A `sha256` digest is
//! exactly 64 lowercase hex digits (opencontainers/go-digest v1.0.0, algorithm.go:
//! `anchoredEncodedRegexp` `^[a-f0-9]{64}$` for SHA256).

/// Why `image` is not a reference the grammar accepts, if it is not.
pub fn reference_problem(image: &str) -> Option<String> {
    if image.is_empty() {
        return Some("it is empty".into());
    }
    if let Some(c) = image.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("it contains {}", describe_char(c)));
    }
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest
        && let Some(why) = digest_problem(d)
    {
        return Some(why);
    }
    // The tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag
        && let Some(why) = tag_problem(t)
    {
        return Some(why);
    }
    if name.len() > 255 {
        return Some(format!("its name is {} characters; at most 255", name.len()));
    }
    name_problem(name)
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        '\t' => "a tab".into(),
        '\n' | '\r' => "a line break".into(),
        c => format!("the character {c:?}"),
    }
}

fn digest_problem(d: &str) -> Option<String> {
    let Some((algo, hex)) = d.split_once(':') else {
        return Some(format!("the digest {d:?} is not of the form sha256:<64 hex digits>"));
    };
    let algo_ok = !algo.is_empty()
        && algo.split(['+', '.', '-', '_']).all(|c| {
            let mut chars = c.chars();
            chars.next().is_some_and(|f| f.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_alphanumeric())
        });
    if !algo_ok {
        return Some(format!(
            "the digest algorithm {algo:?} is not a valid name (e.g. sha256)"
        ));
    }
    if algo == "sha256" {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Some("a sha256 digest is exactly 64 lowercase hex digits".into());
        }
    } else if hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(format!("the {algo} digest is not at least 32 hex digits"));
    }
    None
}

fn tag_problem(t: &str) -> Option<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if t.is_empty() {
        return None; // "name:" is reported by the pin check as an empty tag
    }
    if t.len() > 128 {
        return Some(format!("its tag is {} characters; at most 128", t.len()));
    }
    let mut chars = t.chars();
    if !chars.next().is_some_and(word) || !chars.all(|c| word(c) || c == '.' || c == '-') {
        return Some(format!(
            "its tag {t:?} may hold only letters, digits, '_', '.' and '-', and not start with '.' or '-'"
        ));
    }
    None
}

fn name_problem(name: &str) -> Option<String> {
    let parts: Vec<&str> = name.split('/').collect();
    let (domain, path) = match parts.as_slice() {
        [first, rest @ ..] if !rest.is_empty() && is_domain(first) && !is_path_component(first) => (Some(*first), rest),
        _ => (None, parts.as_slice()),
    };
    let _ = domain;
    for p in path {
        if p.is_empty() {
            return Some("its name has an empty component ('//', or a '/' at an end)".into());
        }
        if !is_path_component(p) {
            return Some(format!(
                "{p:?} is not a valid repository component: lowercase letters and digits, separated by '.', '_', '__' or dashes"
            ));
        }
    }
    None
}

/// `domain-component ['.' domain-component]* [':' port]`, or a bracketed IPv6 address.
fn is_domain(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !h.is_empty() && (h.ends_with(']') || !h.contains(':')) => (h, Some(p)),
        _ => (s, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        })
}

/// `alpha-numeric [separator alpha-numeric]*` with separator `.`, `_`, `__` or dashes.
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::reference_problem;

    #[test]
    fn accepts_what_the_grammar_accepts() {
        let digest = "sha256:".to_string() + &"a".repeat(64);
        for ok in [
            "nginx:1.27".to_string(),
            "ollama/ollama:0.12.10".into(),
            "registry:5000/x/y:1.0".into(),
            "localhost:5000/team/app_x__y.z-w:v1_2".into(),
            "Registry.Example.COM/team/app:1".into(),
            "[::1]:5000/app:1".into(),
            "ghcr.io/a/b/c:1.2.3-rc.1".into(),
            format!("x@{digest}"),
            format!("quay.io/x/y:1@{digest}"),
            "app---x:1".into(),
        ] {
            assert_eq!(reference_problem(&ok), None, "{ok}");
        }
    }

    #[test]
    fn refuses_what_it_does_not() {
        for bad in [
            "NGINX:1.27",
            "nginx:1.27 bad",
            "x@sha256:zz",
            "x@sha256:ABCDEF",
            "x@:abc",
            "x@sha256",
            "a//b:1",
            "/a:1",
            "a/:1",
            "team/App:1",
            "nginx:.1",
            "nginx:-1",
            "a..b:1",
            "a_-b:1",
            "-a:1",
            "reg:xx/a:1",
            "a\tb:1",
        ] {
            assert!(reference_problem(bad).is_some(), "{bad:?} accepted");
        }
        assert!(reference_problem(&format!("a:{}", "1".repeat(129))).is_some());
        assert!(reference_problem(&format!("{}:1", "a".repeat(256))).is_some());
        assert!(reference_problem("").is_some());
    }
}
