//! The YAML parser's messages in kstrap's words. serde-saphyr speaks to programmers ("set
//! DuplicateKeyPolicy in Options if acceptable", "use from_str_multiple", "budget breached:
//! Events", "invalid u64"); the person reading kstrap's error edits a file by hand, so each known
//! message is said as what is wrong in the file and what to do, with the field named.

/// A parser message rewritten: the text, and a hint when the rewrite knows the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words {
    pub message: String,
    pub hint: Option<&'static str>,
}

/// Rewrites `bare` (the parser's message without its position) for a file whose text is `text`,
/// the error being on 1-based `line` and `column` (0: unknown).
pub fn rewrite(bare: &str, text: &str, line: usize, column: usize) -> Words {
    let bare = bare.trim();
    if let Some(rest) = bare.strip_prefix("duplicate mapping key") {
        let key = rest
            .strip_prefix(": ")
            .and_then(|r| r.split(", set DuplicateKeyPolicy").next())
            .filter(|k| !k.is_empty());
        return Words {
            message: match key {
                Some(k) => format!("key `{k}` appears twice in one mapping"),
                None => "a key appears twice in one mapping".into(),
            },
            hint: Some("give every key of a mapping once: remove or rename the second one"),
        };
    }
    if bare.contains("from_str_multiple") || bare.contains("multiple documents") {
        return Words {
            message: "the file holds more than one YAML document (a `---` line starts a second one)".into(),
            hint: Some("keep one document in this file: remove the `---` line and what follows it"),
        };
    }
    if bare.contains("budget breached") || bare.contains("recursion limit") {
        return Words {
            message: "the YAML is too large or nested too deeply for kstrap to read (it stopped at its parsing limit)"
                .into(),
            hint: Some("is it the right file? profiles, stack.yaml and manifests are a few KiB of plain YAML"),
        };
    }
    let mut message = bare.to_string();
    for (library, words) in [
        (
            "unexpected end of input",
            "the YAML ends too early (an empty file, or one cut short)",
        ),
        ("expected mapping start", "expected a mapping (`key: value` lines) here"),
        (
            "expected string scalar",
            "expected a single value here, not a list or a mapping",
        ),
    ] {
        if message == library {
            message = words.to_string();
        }
    }
    for (ty, words) in [
        ("invalid u8", "not a whole number from 0 to 255"),
        ("invalid u16", "not a whole number from 0 to 65535"),
        ("invalid u32", "not a whole number from 0 to 4294967295"),
        ("invalid u64", "not a whole number of 0 or more"),
        ("invalid usize", "not a whole number of 0 or more"),
        ("invalid i32", "not a whole number"),
        ("invalid i64", "not a whole number"),
        ("invalid f32", "not a number"),
        ("invalid f64", "not a number"),
        ("invalid bool", "not true or false"),
    ] {
        if message.starts_with(ty) && !message[ty.len()..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
            message = format!("{words}{}", &message[ty.len()..]);
            break;
        }
    }
    if !message.contains('`')
        && let Some(key) = key_before(text, line, column).or_else(|| key_at(text, line))
    {
        message = format!("field `{key}`: {message}");
    }
    Words { message, hint: None }
}

/// The key whose value starts at 1-based (`line`, `column`): the last `key:` before the column on
/// that line, which also finds keys inside flow mappings (`{dir: x, timeout_s: -5}`).
pub fn key_before(text: &str, line: usize, column: usize) -> Option<&str> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let end = l.char_indices().nth(column.checked_sub(1)?).map(|(i, _)| i)?;
    let before = l[..end].trim_end();
    let before = before.strip_suffix(':')?.trim_end();
    let start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' || c == '/'))
        .map(|i| i + 1)
        .unwrap_or(0);
    let key = &before[start..];
    (!key.is_empty()).then_some(key)
}

/// The mapping key written on 1-based `line`, if that line is a `key: value` line.
pub fn key_at(text: &str, line: usize) -> Option<&str> {
    let l = text
        .lines()
        .nth(line.checked_sub(1)?)?
        .trim_start()
        .trim_start_matches("- ");
    let (key, _) = l.split_once(':')?;
    (!key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_words_become_kstraps() {
        let w = rewrite(
            "duplicate mapping key: name, set DuplicateKeyPolicy in Options if acceptable",
            "",
            1,
            0,
        );
        assert_eq!(w.message, "key `name` appears twice in one mapping");
        assert!(!w.hint.unwrap().contains("tab"));
        let w = rewrite(
            "multiple YAML documents; use from_str_multiple or from_str_multiple_with_options",
            "",
            1,
            0,
        );
        assert!(w.message.contains("more than one YAML document"), "{w:?}");
        let w = rewrite("budget breached: Events", "", 1, 0);
        assert!(!w.message.contains("budget"), "{w:?}");
        let w = rewrite("invalid u64", "a: 1\n  timeout_s: -5\n", 2, 0);
        assert_eq!(w.message, "field `timeout_s`: not a whole number of 0 or more");
        let flow = "stages:\n  - {dir: 10-app, timeout_s: -5, name: app}\n";
        let w = rewrite("invalid u64", flow, 2, 30);
        assert_eq!(w.message, "field `timeout_s`: not a whole number of 0 or more");
        let w = rewrite("invalid u32", "x", 9, 0);
        assert_eq!(w.message, "not a whole number from 0 to 4294967295");
    }
}
