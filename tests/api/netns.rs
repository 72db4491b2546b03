//! A network namespace of the test's own, for what the address guard must
//! hold against: inside it, a "public" address sits on `lo` beside
//! 127.0.0.1, and a fake DNS server on 127.0.0.1:53 is the resolver of
//! every process started with `ip netns exec` (its `/etc/netns/NAME/resolv.conf`).
//! Nothing leaves the machine: the namespace has no interface but `lo`.
//!
//! Made and removed by the test; needs root and `ip` (iproute2). Where the
//! machine cannot make one, `Netns::create` says why and the test skips.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The address the guard takes for a public host, served on the namespace's `lo`.
pub const PUBLIC: Ipv4Addr = Ipv4Addr::new(100, 128, 0, 1);

pub struct Netns {
    pub name: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Netns {
    pub fn create() -> Result<Netns, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("trawl-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns.name, "addr", "add", &format!("{PUBLIC}/32"), "dev", "lo"])?;
        let etc = format!("/etc/netns/{}", ns.name);
        std::fs::create_dir_all(&etc).map_err(|e| format!("{etc}: {e}"))?;
        std::fs::write(format!("{etc}/resolv.conf"), "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n")
            .map_err(|e| e.to_string())?;
        std::fs::write(format!("{etc}/hosts"), "127.0.0.1 localhost\n::1 localhost\n").map_err(|e| e.to_string())?;
        Ok(ns)
    }

    /// Runs `f` on a runtime whose threads all live in the namespace: every
    /// socket it opens is the namespace's.
    pub fn run<F, Fut>(&self, f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        trawl::install_crypto_provider();
        let path = format!("/run/netns/{}", self.name);
        let joined = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("namespace handle");
            // SAFETY: setns moves only this thread into the namespace; the
            // runtime's threads are spawned from it and inherit it.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(f());
        })
        .join();
        if let Err(panic) = joined {
            std::panic::resume_unwind(panic);
        }
    }
}

/// `trawl serve` inside namespace `name` (and with its resolver), on
/// 127.0.0.1:8080 there, with the address guard on. Called from `Netns::run`.
pub async fn trawl(name: &str, db: &std::path::Path, env: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", name, env!("CARGO_BIN_EXE_trawl"), "serve"])
        .env("TRAWL_BIND", "127.0.0.1:8080")
        .env("TRAWL_EMBEDDER", "lexical")
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("TRAWL_BROWSER_PAGE_TIMEOUT_MS", "20000")
        .env("TRAWL_REQUEST_TIMEOUT_MS", "5000")
        .env_remove("TRAWL_ALLOW_PRIVATE_NETWORKS")
        .env_remove("TRAWL_API_KEYS")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    match std::env::var("TRAWL_TEST_LOG") {
        Ok(filter) => cmd.env("RUST_LOG", filter).stderr(Stdio::inherit()),
        Err(_) => cmd.stderr(Stdio::null()),
    };
    let child = cmd.spawn().expect("trawl serve starts in the namespace");
    let client = reqwest::Client::new();
    for _ in 0..400 {
        if client.get("http://127.0.0.1:8080/healthz").send().await.is_ok_and(|r| r.status().is_success()) {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("trawl serve did not answer in the namespace within 20 s");
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// The namespace, or `None` after printing why this machine cannot make one.
pub fn or_skip(test: &str) -> Option<Netns> {
    match Netns::create() {
        Ok(ns) => Some(ns),
        Err(why) => {
            eprintln!("SKIPPED {test}: cannot make a network namespace here ({why})");
            None
        }
    }
}
