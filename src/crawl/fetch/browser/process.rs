//! Chromium as a Linux process: its flags, its process group, stale
//! profiles; every `unsafe` call of the browser is here.

use std::path::Path;
use std::time::Duration;

use super::*;

/// Chromium refuses to start its sandbox as root.
pub(super) fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Chromium's process group and its profile folder. Dropped (also when a
/// task is cancelled or the runtime torn down), it kills the whole group and
/// then removes the profile: no process outlives it to write there again.
pub(super) struct Process {
    pub(super) child: tokio::process::Child,
    /// The group to kill (its leader is Chromium itself).
    pub(super) group: Option<i32>,
    pub(super) profile: Option<tempfile::TempDir>,
}

/// The process group a spawned Chromium leads: its pid, when the pid is one
/// that may be signalled. `killpg(0, …)` would signal trawl's own group and
/// `killpg(1, …)` init's, so a missing or odd pid gives no group at all.
pub(super) fn group_of(pid: Option<u32>) -> Option<i32> {
    pid.and_then(|p| i32::try_from(p).ok()).filter(|&p| p > 1)
}

impl Process {
    pub(super) fn kill_group(&mut self) {
        if let Some(group) = self.group {
            // SAFETY: killpg only sends a signal; it touches no memory of ours.
            unsafe {
                libc::killpg(group, libc::SIGKILL);
            }
        }
    }
}

/// Drops a `Process` off the async threads: its `Drop` removes a profile
/// folder, which is blocking file work.
pub(super) async fn discard(process: Process) {
    let _ = tokio::task::spawn_blocking(move || drop(process)).await;
}

/// Whether a process of group `group` still runs (zombies do not count:
/// they hold no files and run nothing).
pub(super) fn group_alive(group: i32) -> bool {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return false };
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
        let mut fields = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
        pgrp == Some(group) && state != "Z" && state != "X"
    })
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_group();
        let _ = self.child.try_wait();
        // SIGKILL is not instant for a process busy in the kernel: wait
        // (briefly) until none runs, so none outlives the service.
        if let Some(group) = self.group {
            for _ in 0..100 {
                if !group_alive(group) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(profile) = self.profile.take() {
            // A process killed a moment ago may still finish a write: a few
            // tries let the removal win.
            for _ in 0..20 {
                match std::fs::remove_dir_all(profile.path()) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => std::thread::sleep(Duration::from_millis(10)),
                    _ => break,
                }
            }
        }
    }
}

/// Removes profiles that a killed trawl left behind (SIGKILL runs no
/// destructor). Chromium's `SingletonLock` names `host-pid` of its browser;
/// a profile whose browser no longer exists on this host is stale.
pub(super) fn sweep_stale_profiles(root: &Path) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        if !entry.file_name().to_string_lossy().starts_with("trawl-chromium-") {
            continue;
        }
        let Ok(lock) = std::fs::read_link(entry.path().join("SingletonLock")) else {
            continue;
        };
        let lock = lock.to_string_lossy().to_string();
        let Some((lock_host, pid)) = lock.rsplit_once('-') else {
            continue;
        };
        let gone = pid.parse::<u32>().is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if lock_host == host && gone {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(profile = %entry.path().display(), "removed a stale Chromium profile"),
                Err(e) => tracing::debug!(error = %e, "could not remove a stale Chromium profile"),
            }
        }
    }
}

/// Flags for a headless Chromium on a closed network: no first-run UI, no
/// background traffic to Google services, no GPU.
/// Every connection goes through the guarded proxy: `<-loopback>` removes
/// Chromium's implicit bypass of loopback, and WebRTC may not send UDP
/// around it.
pub(super) fn chrome_args(settings: &BrowserSettings, user_agent: &str, proxy: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-breakpad",
        "--disable-dev-shm-usage",
        "--disable-client-side-phishing-detection",
        "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication,CalculateNativeWinOcclusion",
        "--disable-popup-blocking",
        "--disable-prompt-on-repost",
        "--metrics-recording-only",
        "--password-store=basic",
        "--use-mock-keychain",
        "--mute-audio",
        "--hide-scrollbars",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    args.push(format!("--user-agent={user_agent}"));
    args.push(format!("--proxy-server={proxy}"));
    args.push("--proxy-bypass-list=<-loopback>".into());
    args.push("--force-webrtc-ip-handling-policy=disable_non_proxied_udp".into());
    args.push("--dns-prefetch-disable".into());
    args.push("--disable-quic".into());
    if settings.no_sandbox {
        args.push("--no-sandbox".into());
    }
    args
}

/// Should trawl itself be killed (SIGKILL: no destructor runs), the kernel
/// kills Chromium's browser process, and its children follow it.
pub(super) fn dies_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}
