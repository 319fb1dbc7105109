//! Runs the node stand-in (a test double of a kubelet; tests/support/real/node.rs) against the
//! cluster of a kubeconfig until killed, so that scripts/bench.sh can measure Deployments until
//! they are Available on a control plane that has no kubelet.
//!
//! Usage: `node_standin KUBECONFIG [PODS]` (PODS: the node's pod capacity, default 110).

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/support/real/mod.rs"]
mod real;

use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(kubeconfig) = args.next().map(PathBuf::from) else {
        eprintln!("usage: node_standin KUBECONFIG [PODS]");
        std::process::exit(2);
    };
    let mut config = real::NodeConfig::default();
    if let Some(pods) = args.next() {
        config.pods = pods;
    }
    match real::NodeStandIn::start(&kubeconfig, config) {
        Ok(_node) => {
            println!("node stand-in {} running", real::NODE_NAME);
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Err(e) => {
            eprintln!("node stand-in: {e}");
            std::process::exit(1);
        }
    }
}
