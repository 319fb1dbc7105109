//! Stacks: folders of plain Kubernetes YAML in numbered stages, plus `stack.yaml`.
