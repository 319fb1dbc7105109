//! Credentials out of everything kstrap prints. Two sources of leaks are closed here:
//!
//! - URLs the user gives with credentials in them (`--release-mirror https://user:pw@host`): the
//!   userinfo is shown as `***` wherever a URL is printed, in plans (human and JSON) and errors.
//! - Text kstrap did not write itself (an API server's or proxy's error body, a command's stderr)
//!   may echo an `Authorization` header or a value kstrap sent: bearer and basic credentials are
//!   masked, and so is every secret value kstrap has read or made in this run ([`remember`]).
//!
//! The printer passes every line through [`text`], so a leak needs no care at each call site.

use std::sync::Mutex;

/// What a hidden credential is shown as.
pub const MASK: &str = "***";

/// Secret values known in this process (stack secrets, kubeconfig tokens), masked on output.
static KNOWN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Values shorter than this are not masked in free text: "ab" would mask every "ab" in a
/// message and say nothing about the secret that a reader could not guess anyway.
const MIN_KNOWN_LEN: usize = 4;

/// Remembers a secret value so that no output shows it.
pub fn remember(secret: &str) {
    let s = secret.trim();
    if s.len() < MIN_KNOWN_LEN {
        return;
    }
    if let Ok(mut known) = KNOWN.lock()
        && !known.iter().any(|k| k == s)
    {
        known.push(s.to_string());
        // Longest first, so a value that contains another is masked whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// One URL with its userinfo (`user:pw@`) masked: `https://***@host/path`.
pub fn url(u: &str) -> String {
    urls(u)
}

/// `text` with credentials masked: URL userinfo, `Bearer`/`Basic` credentials, and every value
/// given to [`remember`] (also as it appears inside JSON strings).
pub fn text(s: &str) -> String {
    let mut out = urls(s);
    out = schemes(&out);
    if let Ok(known) = KNOWN.lock() {
        for k in known.iter() {
            if out.contains(k.as_str()) {
                out = out.replace(k.as_str(), MASK);
            }
            // Inside a JSON document the value is escaped ("a\"b").
            if let Ok(quoted) = serde_json::to_string(k) {
                let escaped = &quoted[1..quoted.len() - 1];
                if escaped != k && out.contains(escaped) {
                    out = out.replace(escaped, MASK);
                }
            }
        }
    }
    out
}

/// Masks the userinfo of every `scheme://userinfo@host` in `s`.
fn urls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#', whitespace or quote.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Masks the credential after `Bearer ` and `Basic ` (any case), as an echoed `Authorization`
/// header carries it.
fn schemes(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let found = ["bearer ", "basic "]
            .iter()
            .filter_map(|w| lower[i..].find(w).map(|p| (i + p, w.len())))
            .min();
        let Some((at, len)) = found else { break };
        let start = at + len;
        let cred_len = s[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-._~+/=:".contains(c)))
            .unwrap_or(s.len() - start);
        out.push_str(&s[i..start]);
        // A word after "Basic " shorter than 8 characters is prose ("basic auth"), not a credential.
        if cred_len >= 8 {
            out.push_str(MASK);
        } else {
            out.push_str(&s[start..start + cred_len]);
        }
        i = start + cred_len;
    }
    out.push_str(&s[i.min(s.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_are_masked() {
        assert_eq!(url("https://user:pw@mirror.example/x"), "https://***@mirror.example/x");
        assert_eq!(url("https://mirror.example/x"), "https://mirror.example/x");
        assert_eq!(
            text("fetch \"https://a:b@h:8443/k3s\" and http://c@d?e"),
            "fetch \"https://***@h:8443/k3s\" and http://***@d?e"
        );
        assert_eq!(text("mail user@example.com"), "mail user@example.com");
    }

    #[test]
    fn authorization_credentials_are_masked() {
        let body = r#"{"message":"denied","header":"Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.abc.def"}"#;
        let out = text(body);
        assert!(!out.contains("eyJhbGci"), "{out}");
        assert!(out.contains("Bearer ***"), "{out}");
        assert_eq!(
            text("authorization: basic dXNlcjpwYXNzd29yZA=="),
            "authorization: basic ***"
        );
        assert_eq!(text("uses basic auth"), "uses basic auth");
    }

    #[test]
    fn remembered_values_are_masked_raw_and_in_json() {
        remember("s3cr3t-\"value\"");
        remember("ab");
        let json = serde_json::to_string(&serde_json::json!({"echo": "s3cr3t-\"value\""})).unwrap();
        assert!(!text(&json).contains("s3cr3t"), "{}", text(&json));
        assert_eq!(text("x s3cr3t-\"value\" y"), "x *** y");
        assert_eq!(text("ab cd"), "ab cd", "too short to mask");
    }
}
