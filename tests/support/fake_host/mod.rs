//! TEST DOUBLE: a fake host for running `kstrap up`/`down` for real into a temp folder.
//!
//! `FakeHost` makes a temp root laid out like a bare machine (`/usr/local/bin`, `/etc/systemd/
//! system`, `/run`, `/var/lib`, `/home/tester`) and a `bin` folder of small shell scripts named
//! `systemctl`, `k3s`, `k0s` and `modprobe` that tests put first on `PATH`: the real ones cannot
//! run here (no root, no systemd, no kernel modules). Each script appends its argv to the file in
//! `FAKE_HOST_LOG`, so tests assert the exact command sequence, and keeps unit state (enabled,
//! active) as marker files in `FAKE_HOST_STATE`. Starting `k3s.service` writes the kubeconfig
//! from `FAKE_HOST_KUBECONFIG` (the real control plane's, or a port that never answers) to
//! `<root>/etc/rancher/k3s/k3s.yaml` and a node token, as k3s does; starting
//! `k0scontroller.service` writes `<root>/var/lib/k0s/pki/admin.conf`. A worker's
//! `k3s-agent.service` writes the same kubeconfig as the kubelet's
//! (`<root>/var/lib/rancher/k3s/agent/kubelet.kubeconfig`, with `FAKE_HOST_AGENT_CA` copied to
//! `server-ca.crt` beside it when set), `k0sworker.service` as `<root>/var/lib/k0s/kubelet.conf`;
//! `k0s install worker` writes `k0sworker.service`. `k0s install controller`
//! writes the unit file, `k0s reset` removes k0s's data, `k0s token create` prints a token.
//! `ufw` and `firewall-cmd` only record their argv.
//! `FAKE_HOST_FAIL` = an argv prefix ("systemctl enable --now") makes that command fail.
//! Only these scripts read the `FAKE_HOST_*` variables.
//!
//! Stand-ins for what k3s-killall.sh reads and changes (k3s-io/k3s install.sh `create_killall`),
//! so that `down` never runs the real tools here: `ps` prints the process list kept in
//! `<units>/ps` (`pid ppid args` per line) and `kill -9 PID…` takes those pids out of it;
//! `umount -f P` takes P out of the mount table `<root>/proc/self/mountinfo` (set with
//! `set_mounts`); `ip netns show|delete` and `ip link show|delete` read and edit `<units>/netns`
//! and `<units>/links` (in `ip`'s own output format); `iptables-save` prints `<units>/iptables`
//! and `iptables-restore` replaces it with its stdin (`ip6tables-*` likewise).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const COMMON: &str = r#"#!/bin/sh
name=$(basename "$0")
echo "$name $*" >> "$FAKE_HOST_LOG"
if [ -n "$FAKE_HOST_FAIL" ]; then
  case "$name $*" in
    "$FAKE_HOST_FAIL"*) echo "fake $name: failing on purpose ($FAKE_HOST_FAIL)" >&2; exit 1;;
  esac
fi
root="$KSTRAP_HOST_ROOT"
st="$FAKE_HOST_STATE"
start_unit() {
  case "$1" in
    k3s.service)
      mkdir -p "$root/etc/rancher/k3s" "$root/var/lib/rancher/k3s/server"
      cp "$FAKE_HOST_KUBECONFIG" "$root/etc/rancher/k3s/k3s.yaml"
      chmod 600 "$root/etc/rancher/k3s/k3s.yaml"
      echo "K10fakeclustercafingerprint::server:fake-node-token" > "$root/var/lib/rancher/k3s/server/node-token"
      chmod 600 "$root/var/lib/rancher/k3s/server/node-token";;
    k0scontroller.service)
      mkdir -p "$root/var/lib/k0s/pki" "$root/run/k0s"
      cp "$FAKE_HOST_KUBECONFIG" "$root/var/lib/k0s/pki/admin.conf"
      chmod 600 "$root/var/lib/k0s/pki/admin.conf";;
    k3s-agent.service)
      mkdir -p "$root/var/lib/rancher/k3s/agent"
      [ -n "$FAKE_HOST_AGENT_CA" ] && cp "$FAKE_HOST_AGENT_CA" "$root/var/lib/rancher/k3s/agent/server-ca.crt"
      cp "$FAKE_HOST_KUBECONFIG" "$root/var/lib/rancher/k3s/agent/kubelet.kubeconfig"
      chmod 600 "$root/var/lib/rancher/k3s/agent/kubelet.kubeconfig";;
    k0sworker.service)
      mkdir -p "$root/var/lib/k0s" "$root/run/k0s"
      cp "$FAKE_HOST_KUBECONFIG" "$root/var/lib/k0s/kubelet.conf"
      chmod 600 "$root/var/lib/k0s/kubelet.conf";;
  esac
  touch "$st/active-$1"
}
"#;

const SYSTEMCTL: &str = r#"
case "$1" in
  daemon-reload) exit 0;;
  reset-failed) exit 0;;
  is-active) [ -e "$st/active-$3" ]; exit $?;;
  is-enabled) [ -e "$st/enabled-$3" ]; exit $?;;
  enable)
    if [ "$2" = "--now" ]; then touch "$st/enabled-$3"; start_unit "$3"; else touch "$st/enabled-$2"; fi;;
  restart) start_unit "$2";;
  stop) rm -f "$st/active-$2";;
  disable)
    if [ "$2" = "--now" ]; then rm -f "$st/active-$3" "$st/enabled-$3"; else rm -f "$st/enabled-$2"; fi;;
  *) echo "fake systemctl: unknown $1" >&2; exit 2;;
esac
"#;

const PS: &str = r#"
cat "$st/ps" 2>/dev/null
exit 0
"#;

const KILL: &str = r#"
[ "$1" = "-9" ] && shift
for pid in "$@"; do
  awk -v p="$pid" '$1 != p' "$st/ps" > "$st/ps.new" && mv "$st/ps.new" "$st/ps"
done
"#;

const UMOUNT: &str = r#"
[ "$1" = "-f" ] && shift
mi="$root/proc/self/mountinfo"
grep -q " $1 " "$mi" 2>/dev/null || { echo "umount: $1: not mounted" >&2; exit 32; }
awk -v p="$1" '$5 != p' "$mi" > "$mi.new" && cat "$mi.new" > "$mi" && rm -f "$mi.new"
"#;

const IP: &str = r#"
case "$1 $2" in
  "netns show") cat "$st/netns" 2>/dev/null; exit 0;;
  "netns delete") awk -v n="$3" '$1 != n' "$st/netns" > "$st/x" && mv "$st/x" "$st/netns";;
  "link show") cat "$st/links" 2>/dev/null; exit 0;;
  "link delete")
    grep -q "^[0-9]*: $3[:@]" "$st/links" 2>/dev/null || { echo "Cannot find device \"$3\"" >&2; exit 1; }
    awk -v n="$3" '{ x=$2; sub(/:$/,"",x); sub(/@.*/,"",x); if (x != n) print }' "$st/links" > "$st/x" && mv "$st/x" "$st/links";;
  *) echo "fake ip: unknown $*" >&2; exit 2;;
esac
"#;

const XTABLES: &str = r#"
case "$name" in
  *-save) cat "$st/${name%-save}" 2>/dev/null; exit 0;;
  *-restore) cat > "$st/${name%-restore}";;
esac
"#;

const K0S: &str = r#"
case "$1" in
  install)
    mkdir -p "$root/etc/systemd/system"
    role="$2"
    shift 2
    printf '[Service]\nExecStart=/usr/local/bin/k0s %s %s\n' "$role" "$*" > "$root/etc/systemd/system/k0s$role.service"
    touch "$st/enabled-k0s$role.service";;
  start) start_unit k0scontroller.service;;
  stop) rm -f "$st/active-k0scontroller.service";;
  reset)
    rm -rf "$root/var/lib/k0s" "$root/run/k0s" "$root/etc/systemd/system/k0scontroller.service"
    rm -f "$st/enabled-k0scontroller.service";;
  token) echo "fake-k0s-worker-token-H4sIAAAA";;
  kubeconfig) cat "$FAKE_HOST_KUBECONFIG";;
  *) echo "fake k0s: unknown $1" >&2; exit 2;;
esac
"#;

pub struct FakeHost {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub bin: PathBuf,
    pub log: PathBuf,
    pub state: PathBuf,
    pub kubeconfig: PathBuf,
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("{COMMON}{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl FakeHost {
    /// A bare machine whose services, once started, hand out `kubeconfig_yaml`.
    pub fn new(kubeconfig_yaml: &str) -> FakeHost {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in [
            "usr/local/bin",
            "etc/systemd/system",
            "run",
            "var/lib",
            "home/tester",
            "sbin",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let bin = dir.path().join("bin");
        let state = dir.path().join("units");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        script(&bin.join("systemctl"), SYSTEMCTL);
        script(&bin.join("k0s"), K0S);
        script(&bin.join("k3s"), "exit 0\n");
        script(&bin.join("modprobe"), "exit 0\n");
        // ufw and firewall-cmd only record their argv (the log is the firewall's state here).
        script(&bin.join("ufw"), "exit 0\n");
        script(&bin.join("firewall-cmd"), "exit 0\n");
        script(&bin.join("ps"), PS);
        script(&bin.join("kill"), KILL);
        script(&bin.join("umount"), UMOUNT);
        script(&bin.join("ip"), IP);
        for tool in ["iptables", "ip6tables"] {
            script(&bin.join(format!("{tool}-save")), XTABLES);
            script(&bin.join(format!("{tool}-restore")), XTABLES);
        }
        let kubeconfig = dir.path().join("sim-kubeconfig.yaml");
        std::fs::write(&kubeconfig, kubeconfig_yaml).unwrap();
        let log = dir.path().join("commands.log");
        std::fs::write(&log, "").unwrap();
        FakeHost {
            dir,
            root,
            bin,
            log,
            state,
            kubeconfig,
        }
    }

    /// The environment a kstrap run on this host gets.
    pub fn envs(&self) -> Vec<(String, String)> {
        let path = format!("{}:/usr/bin:/bin", self.bin.display());
        vec![
            ("PATH".into(), path),
            ("KSTRAP_HOST_ROOT".into(), self.root.display().to_string()),
            ("HOME".into(), "/home/tester".into()),
            ("FAKE_HOST_LOG".into(), self.log.display().to_string()),
            ("FAKE_HOST_STATE".into(), self.state.display().to_string()),
            ("FAKE_HOST_KUBECONFIG".into(), self.kubeconfig.display().to_string()),
            ("NO_COLOR".into(), "1".into()),
        ]
    }

    /// The commands run so far, one per line, and forgets them.
    pub fn take_log(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap();
        std::fs::write(&self.log, "").unwrap();
        text.lines().map(str::to_string).collect()
    }

    /// Sets the stand-in mount table: one mount point per entry (mountinfo format).
    pub fn set_mounts(&self, points: &[&str]) {
        let dir = self.root.join("proc/self");
        std::fs::create_dir_all(&dir).unwrap();
        let text: String = points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{} 22 0:{} / {p} rw,relatime - overlay overlay rw\n", 100 + i, 50 + i))
            .collect();
        std::fs::write(dir.join("mountinfo"), text).unwrap();
    }

    /// The mount points left in the stand-in table.
    pub fn mounts(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.root.join("proc/self/mountinfo")).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(str::to_string)
            .collect()
    }

    /// Sets one of the stand-in tables (`ps`, `netns`, `links`, `iptables`, `ip6tables`).
    pub fn set_table(&self, name: &str, text: &str) {
        std::fs::write(self.state.join(name), text).unwrap();
    }

    pub fn table(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.join(name)).unwrap_or_default()
    }

    /// The commands that changed something (the log without `ps`, `ip … show` and `*-save`).
    pub fn take_effects(&self) -> Vec<String> {
        self.take_log()
            .into_iter()
            .filter(|l| {
                ![
                    "ps ",
                    "ip netns show",
                    "ip link show",
                    "iptables-save",
                    "ip6tables-save",
                ]
                .iter()
                .any(|read| l.starts_with(read))
            })
            .collect()
    }

    pub fn active(&self, unit: &str) -> bool {
        self.state.join(format!("active-{unit}")).exists()
    }

    /// Every file, folder and link under the root: `d 0755 /etc`, `f 0600 /etc/x <contents or sha>`,
    /// `l /var/run -> ../run`.
    /// Text files are shown whole (with API server ports replaced), others by size
    /// and sha256. `skip` names host paths left out (the lock file).
    pub fn tree(&self, skip: &[&str]) -> String {
        let mut out = String::new();
        for (path, line) in self.entries(skip) {
            let _ = path;
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// Host path → (mtime, inode) of every regular file, to show that nothing was rewritten.
    pub fn stamps(&self, skip: &[&str]) -> BTreeMap<String, (i64, i64, u64)> {
        let mut out = BTreeMap::new();
        walk(&self.root, &self.root, &mut |host_path, meta| {
            if meta.is_file() && !skip.contains(&host_path) {
                out.insert(host_path.to_string(), (meta.mtime(), meta.mtime_nsec(), meta.ino()));
            }
        });
        out
    }

    fn entries(&self, skip: &[&str]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut |host_path, meta| {
            if skip.contains(&host_path) {
                return;
            }
            let mode = meta.permissions().mode() & 0o7777;
            let line = if meta.is_dir() {
                format!("d {mode:04o} {host_path}")
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(self.root.join(host_path.trim_start_matches('/'))).unwrap();
                format!("l {host_path} -> {}", target.display())
            } else {
                let bytes = std::fs::read(self.root.join(host_path.trim_start_matches('/'))).unwrap();
                let shown = match String::from_utf8(bytes.clone()) {
                    Ok(text) if bytes.len() <= 4096 => {
                        let text = redact_ports(&text);
                        format!("\n    | {}", text.trim_end_matches('\n').replace('\n', "\n    | "))
                    }
                    _ => format!(" ({} bytes, sha256 {})", bytes.len(), sha256_hex(&bytes)),
                };
                format!("f {mode:04o} {host_path}{shown}")
            };
            out.push((host_path.to_string(), line));
        });
        out
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// `127.0.0.1:43121` → `127.0.0.1:PORT`.
pub fn redact_ports(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("127.0.0.1:") {
        out.push_str(&rest[..i + 10]);
        rest = &rest[i + 10..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push_str("PORT");
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

fn walk(root: &Path, dir: &Path, f: &mut dyn FnMut(&str, &std::fs::Metadata)) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let host_path = format!("/{}", p.strip_prefix(root).unwrap().display());
        f(&host_path, &meta);
        if meta.is_dir() {
            walk(root, &p, f);
        }
    }
}
