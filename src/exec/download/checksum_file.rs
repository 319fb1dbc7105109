//! Reading release checksum files: the `sha256sum` output that k3s (`sha256sum-<arch>.txt`,
//! text mode: `<hex>  <name>`) and k0s (`sha256sums.txt`, binary mode: `<hex> *<name>`) publish,
//! plus the BSD form `SHA256 (<name>) = <hex>`. Pure text in, one hash out, so every odd line a
//! mirror might serve is covered by table and property tests without any I/O.

/// Why an entry's line could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The line naming the entry holds something other than 64 hex digits.
    BadHash { line: usize, text: String },
    /// The entry is listed twice with different hashes.
    Conflict { first_line: usize, line: usize },
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::BadHash { line, text } => {
                write!(
                    f,
                    "line {line} names the file but {text:?} is not a sha256 (64 hex digits)"
                )
            }
            LookupError::Conflict { first_line, line } => write!(
                f,
                "lines {first_line} and {line} name the file with different sha256 values"
            ),
        }
    }
}

/// A sha256 written as 64 hex digits (any case), returned lowercase; `None` for anything else.
pub fn normalize_sha256(text: &str) -> Option<String> {
    let text = text.trim();
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| text.to_ascii_lowercase())
}

/// One line split into (hash text, file name), or `None` for blank, comment and unknown lines.
fn split_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_end_matches(['\r', '\n']).trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    // BSD: `SHA256 (name) = hex`
    if let Some(rest) = line.strip_prefix("SHA256 (") {
        let (name, hash) = rest.rsplit_once(") = ")?;
        return Some((hash.trim(), name));
    }
    // GNU: `hex  name` (text mode) or `hex *name` (binary mode); tolerate a single space too.
    let (hash, rest) = line.split_once([' ', '\t'])?;
    let rest = rest.strip_prefix([' ', '\t', '*']).unwrap_or(rest);
    let name = rest.trim_end();
    (!name.is_empty()).then_some((hash, name))
}

/// `./k3s` and `k3s` name the same file.
fn same_name(listed: &str, entry: &str) -> bool {
    let listed = listed.strip_prefix("./").unwrap_or(listed);
    let entry = entry.strip_prefix("./").unwrap_or(entry);
    listed == entry
}

/// The lowercase sha256 that `text` lists for `entry`; `Ok(None)` when no line names it.
pub fn lookup(text: &str, entry: &str) -> Result<Option<String>, LookupError> {
    let mut found: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let Some((hash, name)) = split_line(line) else {
            continue;
        };
        if !same_name(name, entry) {
            continue;
        }
        let Some(hash) = normalize_sha256(hash) else {
            return Err(LookupError::BadHash {
                line: number,
                text: hash.to_string(),
            });
        };
        match &found {
            Some((first_line, first)) if *first != hash => {
                return Err(LookupError::Conflict {
                    first_line: *first_line,
                    line: number,
                });
            }
            Some(_) => {}
            None => found = Some((number, hash)),
        }
    }
    Ok(found.map(|(_, hash)| hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn table() {
        let upper = B.to_ascii_uppercase();
        type Case<'a> = (String, &'a str, Result<Option<&'a str>, LookupError>);
        let cases: Vec<Case> = vec![
            // k3s text mode
            (format!("{A}  k3s-arm64\n{B}  k3s\n"), "k3s", Ok(Some(B))),
            // k0s binary mode
            (
                format!("{A} *k0s-v1.33.4+k0s.0-arm64\n{B} *k0s-v1.33.4+k0s.0-amd64\n"),
                "k0s-v1.33.4+k0s.0-amd64",
                Ok(Some(B)),
            ),
            // ./name, CRLF, uppercase hex
            (format!("{upper}  ./k3s\r\n"), "k3s", Ok(Some(B))),
            (format!("{B}  k3s\r\n"), "k3s", Ok(Some(B))),
            // single space, tab
            (format!("{B} k3s"), "k3s", Ok(Some(B))),
            (format!("{B}\tk3s"), "k3s", Ok(Some(B))),
            // BSD form
            (format!("SHA256 (k3s) = {B}\n"), "k3s", Ok(Some(B))),
            // comments, blank and garbage lines are skipped
            (format!("# sums\n\n   \nnot a line\n{B}  k3s\n"), "k3s", Ok(Some(B))),
            // prefixes and suffixes of the name do not match
            (
                format!("{A}  k3s-airgap-images-amd64.tar.zst\n{A}  xk3s\n"),
                "k3s",
                Ok(None),
            ),
            ("".to_string(), "k3s", Ok(None)),
            // duplicates: same hash is fine, different is refused
            (format!("{B}  k3s\n{B}  ./k3s\n"), "k3s", Ok(Some(B))),
            (
                format!("{B}  k3s\n{A}  k3s\n"),
                "k3s",
                Err(LookupError::Conflict { first_line: 1, line: 2 }),
            ),
            // bad hash on the entry's own line
            (
                "abc123  k3s\n".to_string(),
                "k3s",
                Err(LookupError::BadHash {
                    line: 1,
                    text: "abc123".into(),
                }),
            ),
            (
                format!("{}g  k3s\n", &B[..63]),
                "k3s",
                Err(LookupError::BadHash {
                    line: 1,
                    text: format!("{}g", &B[..63]),
                }),
            ),
            // a bad line for another file does not matter
            (format!("zz  other\n{B}  k3s\n"), "k3s", Ok(Some(B))),
        ];
        for (text, entry, want) in cases {
            let got = lookup(&text, entry);
            let want = want.map(|o| o.map(str::to_string));
            assert_eq!(got, want, "text {text:?} entry {entry:?}");
        }
    }

    #[test]
    fn normalize() {
        assert_eq!(normalize_sha256(&B.to_ascii_uppercase()).as_deref(), Some(B));
        assert_eq!(normalize_sha256(&format!(" {B}\n")).as_deref(), Some(B));
        assert_eq!(normalize_sha256(&B[1..]), None);
        assert_eq!(normalize_sha256(&format!("{B}0")), None);
        assert_eq!(normalize_sha256(&format!("{}x", &B[1..])), None);
    }

    proptest! {
        /// Whatever surrounds it, a well-formed line for the entry is found, in any format.
        #[test]
        fn finds_entry_among_noise(
            hash in "[0-9a-fA-F]{64}",
            noise in proptest::collection::vec("[ -~]{0,80}", 0..8),
            format in 0usize..5,
            crlf in any::<bool>(),
        ) {
            let entry = "k0s-v1.35.3+k0s.0-amd64";
            let line = match format {
                0 => format!("{hash}  {entry}"),
                1 => format!("{hash} *{entry}"),
                2 => format!("{hash}  ./{entry}"),
                3 => format!("SHA256 ({entry}) = {hash}"),
                _ => format!("{hash} {entry}"),
            };
            // Noise lines never name the entry (they are printable ASCII without the entry).
            let noise: Vec<String> = noise.into_iter().filter(|n| !n.contains(entry)).collect();
            let mut lines = noise.clone();
            lines.insert(noise.len() / 2, line);
            let sep = if crlf { "\r\n" } else { "\n" };
            let text = lines.join(sep);
            prop_assert_eq!(lookup(&text, entry), Ok(Some(hash.to_ascii_lowercase())));
        }

        /// Arbitrary text never panics the parser.
        #[test]
        fn never_panics(text in "\\PC{0,400}", entry in "[a-z0-9.+-]{1,20}") {
            let _ = lookup(&text, &entry);
        }
    }
}
