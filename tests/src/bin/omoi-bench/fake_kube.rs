//! `omoi-bench fake-kube --dir DIR [--image NAME=BINARY]…`: the fake Kubernetes API server as a
//! process of its own, for measuring the kubernetes provider in another process (the
//! coordinator's `kubernetes_load` example). Writes `DIR/kubeconfig` (namespace `omoi`), prints
//! `ready <url>`, and serves until its stdin closes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use omoi_tests::fake_kube::{FakeKube, FakeKubeConfig};

use crate::{Result, flag};

pub fn run(args: &[String]) -> Result<()> {
    let dir = PathBuf::from(flag(args, "--dir").ok_or("--dir is required")?);
    let mut images = BTreeMap::new();
    for (i, arg) in args.iter().enumerate() {
        if arg == "--image" {
            let value = args.get(i + 1).ok_or("--image takes NAME=BINARY")?;
            let (name, binary) = value.split_once('=').ok_or("--image takes NAME=BINARY")?;
            images.insert(name.to_string(), PathBuf::from(binary));
        }
    }
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let fake = FakeKube::start(FakeKubeConfig {
            namespaces: vec!["omoi".to_string()],
            token: "bench-token-0123456789".to_string(),
            images,
            work_dir: dir.join("kubelet"),
            image_files: Vec::new(),
        })
        .await;
        fake.write_kubeconfig(&dir.join("kubeconfig"), "omoi");
        println!("ready {}", fake.url());
        // Until the parent closes stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await;
        drop(fake);
    });
    Ok(())
}
