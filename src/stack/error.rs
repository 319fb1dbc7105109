//! Why a stack could not be loaded: each error names the file, the document and the line, says
//! what is wrong and what to do about it, because a stack is edited by hand and the person reading
//! the message is the one who has to fix the YAML.

use std::fmt;

/// Where in a stack something is: a file, a document in it and a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Relative to the folder holding the stacks: `voice-ai/20-ai/ollama.yaml`
    /// (`manifests/voice-ai/...` for a stack built into the binary).
    pub path: String,
    /// 0-based position of the document in the file, empty documents counted; shown 1-based.
    pub document: usize,
    /// 1-based line.
    pub line: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} (document {})", self.path, self.line, self.document + 1)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StackError {
    #[error("no stack named {name:?}; {}", unknown_stack(name, available))]
    UnknownStack { name: String, available: Vec<String> },

    #[error("{path}: cannot read: {message}\n  fix: check the path given to --stack-dir and its permissions")]
    Io { path: String, message: String },

    #[error(
        "{path}: missing\n  fix: every stack folder needs a stack.yaml with name, description, namespace and stages (see manifests/README.md)"
    )]
    MissingStackFile { path: String },

    #[error("{path}:{line}: {message}\n  fix: {hint}")]
    StackFile {
        path: String,
        line: usize,
        message: String,
        hint: String,
    },

    #[error(
        "{path}: stage folders and the stages listed there disagree:{}{}\n  fix: list every NN-name folder under stages: in stack.yaml, and create (or remove from the list) every folder it names",
        fmt_list("\n  folders not listed", unlisted),
        fmt_list("\n  listed but no such folder", missing)
    )]
    StageMismatch {
        path: String,
        unlisted: Vec<String>,
        missing: Vec<String>,
    },

    #[error(
        "{path}: not a YAML file\n  fix: a stage folder holds only *.yaml or *.yml files (and *.md notes); rename or move this file"
    )]
    UnexpectedFile { path: String },

    #[error("{path}: not UTF-8 text\n  fix: save the file as UTF-8")]
    NotUtf8 { path: String },

    #[error("{at}: {message}\n  fix: {hint}")]
    Yaml { at: Place, message: String, hint: String },

    #[error(
        "{at}: {object} is in namespace {namespace:?}, which is not the stack's\n  fix: list {namespace} under namespaces: in {stack_file} (the stack then owns it), or leave metadata.namespace out"
    )]
    ForeignNamespace {
        at: Place,
        object: String,
        namespace: String,
        stack_file: String,
    },

    #[error(
        "{at}: the document is {found}, not a mapping\n  fix: each document must be one Kubernetes object (apiVersion, kind, metadata, ...)"
    )]
    NotMapping { at: Place, found: &'static str },

    #[error(
        "{at}: `{field}` is missing or not a string\n  fix: every object needs apiVersion, kind and metadata.name as strings"
    )]
    MissingField { at: Place, field: &'static str },

    #[error(
        "{at}: {kind} name {name:?} is not valid: {reason}\n  fix: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"
    )]
    InvalidName {
        at: Place,
        kind: String,
        name: String,
        reason: &'static str,
    },

    #[error(
        "{object} is defined twice:\n  first at  {first}\n  again at  {second}\n  fix: keep one of them; an object is known by its API group, kind, namespace and name"
    )]
    Duplicate {
        object: String,
        first: Place,
        second: Place,
    },

    #[error(
        "{at}: Secret {name:?} carries data or stringData\n  fix: secrets never live in manifests: remove the Secret and declare it under secrets: in stack.yaml, to be provided from the environment or a file when the stack is applied"
    )]
    SecretData { at: Place, name: String },

    #[error(
        "{at}: container {container:?} uses image {image:?}, which is not pinned: {reason}\n  fix: pin the image to an exact release tag (name:1.2.3) or a digest (name@sha256:...)"
    )]
    UnpinnedImage {
        at: Place,
        container: String,
        image: String,
        reason: &'static str,
    },

    #[error(
        "{at}: container {container:?} uses image {image:?}, which is not a valid image reference: {reason}\n  fix: write [registry/]path/name:tag (path and name in lowercase) or name@sha256:<64 hex digits>"
    )]
    InvalidImage {
        at: Place,
        container: String,
        image: String,
        reason: String,
    },

    #[error(
        "{at}: {what} in the base manifest\n  fix: GPU fields stay out of the stage folders' YAML: give the container `gpu: N` in a profile's overlay in stack.yaml, which sets the nvidia.com/gpu limit and runtimeClassName: nvidia on GPU profiles only"
    )]
    GpuInBase { at: Place, what: String },

    /// A container's image against the stack's `images:` declarations (placeholders).
    #[error("{at}: {message}\n  fix: {hint}")]
    Image { at: Place, message: String, hint: String },
}

fn unknown_stack(name: &str, available: &[String]) -> String {
    if available.is_empty() {
        format!(
            "the folder holds no stack (no sub-folder with a stack.yaml)\n  fix: point --stack-dir at the folder that holds {name}/stack.yaml"
        )
    } else {
        format!(
            "available: {}\n  fix: pass one of those names, or --stack-dir pointing at a folder that holds {name}/stack.yaml",
            available.join(", ")
        )
    }
}

fn fmt_list(label: &str, items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("{label}: {}", items.join(", "))
    }
}
