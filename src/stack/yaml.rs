//! Multi-document YAML → `serde_json::Value`s that remember where each node came from.
//!
//! Kubernetes tools split a manifest file into documents at lines that start with `---` (the
//! `yaml.NewYAMLReader` rule `kubectl apply` uses), and so do we: splitting by lines gives every
//! document its position in the file, counting the empty ones, so "document 3" means the same
//! thing to kstrap and to someone counting separators in an editor. Each document is parsed by
//! serde-saphyr into a small tree whose nodes carry their line, then turned into a JSON value (what
//! a `DynamicObject` deserializes from) plus a table from JSON pointer to line, so that checks
//! made on the value can still point at the exact line of the offending field.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::fmt;

/// One non-empty document of a file.
#[derive(Debug)]
pub(crate) struct Doc {
    /// 0-based position among all the file's documents, empty ones included.
    pub index: usize,
    /// 1-based line of the document's first node.
    pub line: usize,
    pub value: Value,
    /// JSON pointer (`/spec/template/spec/containers/0/image`) → 1-based line in the file.
    pub lines: HashMap<String, usize>,
}

impl Doc {
    /// Line of the node at `pointer`, or of the document when that node has no known line.
    /// A missing node is placed at its nearest ancestor that exists.
    pub fn line_of(&self, pointer: &str) -> usize {
        let mut p = pointer;
        loop {
            if let Some(&line) = self.lines.get(p) {
                return line;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return self.line,
            }
        }
    }
}

/// A document that is not YAML we can use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DocError {
    pub index: usize,
    pub line: usize,
    pub message: String,
    pub hint: &'static str,
}

/// Splits `text` into documents and parses each one. Empty documents (nothing, comments only,
/// or a bare `null`) are skipped but still counted in `Doc::index`.
pub(crate) fn documents(text: &str) -> Result<Vec<Doc>, DocError> {
    let mut out = Vec::new();
    for (index, chunk) in split(text).into_iter().enumerate() {
        // Lines in the chunk are 1-based from its start; `offset` turns them into file lines.
        let offset = chunk.first_line - 1;
        let parsed: Vec<Spanned<Node>> = serde_saphyr::from_multiple(&chunk.text).map_err(|e| {
            let line = e.location().map(|l| l.line() as usize).filter(|&l| l > 0).unwrap_or(1);
            let message = bare_message(&e);
            let column = e.location().map(|l| l.column() as usize).unwrap_or(0);
            let words = crate::yaml_words::rewrite(&message, &chunk.text, line, column);
            if !message.starts_with("duplicate mapping key")
                && let Some(hint) = words.hint
            {
                return DocError {
                    index,
                    line: offset + line,
                    message: words.message,
                    hint,
                };
            }
            match message.strip_prefix("duplicate mapping key: ") {
                Some(rest) => DocError {
                    index,
                    line: offset + line,
                    message: format!(
                        "key `{}` appears twice in one mapping",
                        rest.split(',').next().unwrap_or(rest)
                    ),
                    hint: "give every key of a mapping once",
                },
                None => DocError {
                    index,
                    line: offset + line,
                    message: format!("YAML syntax error: {message}"),
                    hint: "correct the YAML at that line (indentation, a missing ':' or quote)",
                },
            }
        })?;
        let mut docs = parsed.into_iter();
        let Some(root) = docs.next() else { continue };
        if docs.next().is_some() {
            return Err(DocError {
                index,
                line: chunk.first_line,
                message: "more than one YAML document between two `---` lines".into(),
                hint: "put each `---` separator on a line of its own, with nothing after it but a comment",
            });
        }
        let line = offset + (root.referenced.line() as usize).max(1);
        let mut lines = HashMap::new();
        let mut pointer = String::new();
        let value = flatten(root, offset, line, &mut pointer, &mut lines);
        out.push(Doc {
            index,
            line,
            value,
            lines,
        });
    }
    Ok(out)
}

struct Chunk {
    first_line: usize,
    text: String,
}

/// kubectl's rule: a line starting with `---`, followed by nothing or by a comment, separates
/// documents. The separator line belongs to neither side.
fn split(text: &str) -> Vec<Chunk> {
    let mut chunks = vec![Chunk {
        first_line: 1,
        text: String::new(),
    }];
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let is_separator = line.strip_prefix("---").is_some_and(|rest| {
            let rest = rest.trim();
            rest.is_empty() || rest.starts_with('#')
        });
        if is_separator {
            chunks.push(Chunk {
                first_line: n + 2,
                text: String::new(),
            });
        } else if let Some(last) = chunks.last_mut() {
            last.text.push_str(line);
        }
    }
    chunks
}

/// serde-saphyr's message on one line, without its own position prefix (we print ours).
pub(crate) fn bare_message(e: &serde_saphyr::Error) -> String {
    let rendered = e.without_snippet().to_string();
    let s = rendered.trim();
    let s = s.strip_prefix("error: ").unwrap_or(s);
    let s = match s.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map(|(_, m)| m).unwrap_or(rest),
        None => s,
    };
    let s = s.lines().next().unwrap_or(s).trim();
    // Some messages repeat the position at their end: " at line 3, column 7".
    match s.rfind(" at line ") {
        Some(i) if s[i..].contains(", column ") => s[..i].to_string(),
        _ => s.to_string(),
    }
}

/// A YAML node as parsed, children with their positions.
enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(String, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Number::from_f64(v)
            .map(Node::Number)
            .ok_or_else(|| E::custom("infinite or NaN numbers cannot be sent to Kubernetes"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// Turns a node into a JSON value, recording each node's file line under its JSON pointer.
/// (serde-saphyr already refuses a key given twice in one mapping, as kubectl does.)
fn flatten(
    node: Spanned<Node>,
    offset: usize,
    parent_line: usize,
    pointer: &mut String,
    lines: &mut HashMap<String, usize>,
) -> Value {
    let line = match node.referenced.line() as usize {
        0 => parent_line,
        l => offset + l,
    };
    lines.insert(pointer.clone(), line);
    match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Number(n) => Value::Number(n),
        Node::String(s) => Value::String(s),
        Node::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                out.push(flatten(item, offset, line, pointer, lines));
                pointer.truncate(len);
            }
            Value::Array(out)
        }
        Node::Map(entries) => {
            let mut out = Map::new();
            for (key, value) in entries {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                let v = flatten(value, offset, line, pointer, lines);
                pointer.truncate(len);
                out.insert(key, v);
            }
            Value::Object(out)
        }
    }
}
