//! The continuous frontier: the URLs a crawl took on, by a keyed hash, and
//! those waiting for a slot, handed out shallowest first; past a bound the
//! waiting ones go to a file. And the outlook's estimate of what is ahead.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;

use url::Url;

use crate::crawl::run::state::ResumeFrom;
use crate::progress::Outlook;

/// Where a URL the crawl took on stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done,
}

/// A URL the crawl took on: the shortest hop count known for it.
struct Seen {
    depth: u32,
    state: State,
}

/// A URL waiting for a slot. A revisit is a page already done that a
/// shorter path reached since: its links are followed again from there.
pub(super) struct Waiting {
    pub(super) url: Url,
    pub(super) depth: u32,
    pub(super) revisit: bool,
}

/// The continuous frontier: each URL taken on once (by a keyed hash, eight
/// bytes a URL), at most `maxPages` of them, handed out shallowest first.
/// Past `IN_MEMORY` waiting URLs, the rest wait in a file (see [`Spill`]).
pub(super) struct Frontier {
    seen: HashMap<u64, Seen>,
    hasher: std::hash::RandomState,
    waiting: BTreeMap<u32, VecDeque<Waiting>>,
    /// Waiting URLs held in memory, and how many may be.
    in_memory: usize,
    memory_bound: usize,
    /// Waiting URLs held in files, by depth.
    spilled: BTreeMap<u32, Spill>,
    max_pages: u64,
    max_depth: u32,
    /// URLs taken on, those an earlier run of the crawl stored included.
    pub(super) admitted: u64,
    /// Stored by an earlier run: already counted in `admitted`.
    resumed: HashSet<u64>,
    /// A new URL was refused for the budget.
    pub(super) cut: bool,
    /// Taken on and not done yet, by depth, for the outlook.
    open: Vec<u64>,
}

impl Frontier {
    pub(super) fn new(max_pages: u64, max_depth: u32, resume: Option<&ResumeFrom>) -> Self {
        let hasher = std::hash::RandomState::new();
        let resumed: HashSet<u64> =
            resume.map(|r| r.pages.keys().map(|u| hasher.hash_one(u.as_str())).collect()).unwrap_or_default();
        Frontier {
            seen: HashMap::new(),
            hasher,
            waiting: BTreeMap::new(),
            in_memory: 0,
            memory_bound: IN_MEMORY,
            spilled: BTreeMap::new(),
            max_pages,
            max_depth,
            admitted: resumed.len() as u64,
            resumed,
            cut: false,
            open: vec![0; max_depth as usize + 2],
        }
    }

    fn key(&self, url: &Url) -> u64 {
        self.hasher.hash_one(url.as_str())
    }

    pub(super) fn contains(&self, url: &Url) -> bool {
        self.seen.contains_key(&self.key(url))
    }

    /// Queues `url` at `depth`: in memory, or after what waits in the
    /// depth's file once there is one (so a depth keeps its order).
    fn push(&mut self, url: &Url, depth: u32, revisit: bool) {
        let spill = match self.spilled.get_mut(&depth) {
            Some(spill) => Some(spill),
            None if self.in_memory >= self.memory_bound => match Spill::new() {
                Ok(spill) => Some(self.spilled.entry(depth).or_insert(spill)),
                Err(e) => {
                    tracing::warn!(error = %e, "could not open a file for the frontier; it stays in memory");
                    None
                }
            },
            None => None,
        };
        if let Some(spill) = spill {
            match spill.push(url, revisit) {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "could not write to the frontier's file; it stays in memory"),
            }
        }
        self.in_memory += 1;
        self.waiting.entry(depth).or_default().push_back(Waiting { url: url.clone(), depth, revisit });
    }

    /// The shallowest waiting entry, from memory or, once the memory's
    /// entries of that depth are out, read back from its file.
    fn next_waiting(&mut self) -> Option<Waiting> {
        loop {
            let in_memory = self.waiting.keys().next().copied();
            let in_file = self.spilled.keys().next().copied();
            let depth = match (in_memory, in_file) {
                (None, None) => return None,
                (Some(m), Some(f)) => m.min(f),
                (m, f) => m.or(f)?,
            };
            if in_memory == Some(depth) {
                let mut first = self.waiting.first_entry()?;
                let next = first.get_mut().pop_front();
                if first.get().is_empty() {
                    first.remove();
                }
                if next.is_some() {
                    self.in_memory -= 1;
                    return next;
                }
                continue;
            }
            // Memory has nothing this shallow: the file's next entries come in.
            let Some(mut spill) = self.spilled.remove(&depth) else { continue };
            let batch = spill.take(READ_BACK);
            match batch {
                Ok(batch) => {
                    let queue = self.waiting.entry(depth).or_default();
                    for (url, revisit) in batch {
                        queue.push_back(Waiting { url, depth, revisit });
                    }
                    self.in_memory += queue.len();
                    if queue.is_empty() {
                        self.waiting.remove(&depth);
                    }
                    if !spill.is_empty() {
                        self.spilled.insert(depth, spill);
                    }
                }
                Err(e) => {
                    // They no longer count as open at their depth.
                    let at = self.open_at(depth);
                    *at = at.saturating_sub(spill.count as u64);
                    tracing::warn!(error = %e, depth, lost = spill.count, "could not read the frontier's file back");
                }
            }
        }
    }

    fn open_at(&mut self, depth: u32) -> &mut u64 {
        let last = self.open.len() - 1;
        &mut self.open[(depth as usize).min(last)]
    }

    /// Takes `url` on at `depth`, or moves it up when this path is shorter
    /// than the one it was found by. True when it is new.
    pub(super) fn admit(&mut self, url: &Url, depth: u32) -> bool {
        let key = self.key(url);
        if let Some(seen) = self.seen.get_mut(&key) {
            if depth >= seen.depth {
                return false;
            }
            let (old, state) = (seen.depth, seen.state);
            seen.depth = depth;
            match state {
                State::Waiting => {
                    *self.open_at(old) -= 1;
                    *self.open_at(depth) += 1;
                    self.push(url, depth, false);
                }
                // Its task follows its links from the new depth when it ends.
                State::Running => {}
                State::Done if depth < self.max_depth => self.push(url, depth, true),
                State::Done => {}
            }
            return false;
        }
        let resumed = self.resumed.contains(&key);
        if !resumed && self.admitted >= self.max_pages {
            self.cut = true;
            return false;
        }
        if !resumed {
            self.admitted += 1;
        }
        self.seen.insert(key, Seen { depth, state: State::Waiting });
        *self.open_at(depth) += 1;
        self.push(url, depth, false);
        true
    }

    /// The shallowest URL waiting, skipping entries a shorter path replaced.
    pub(super) fn pop(&mut self) -> Option<Waiting> {
        loop {
            let w = self.next_waiting()?;
            let key = self.key(&w.url);
            let Some(seen) = self.seen.get_mut(&key) else { continue };
            let wanted = if w.revisit { State::Done } else { State::Waiting };
            if seen.depth == w.depth && seen.state == wanted {
                seen.state = State::Running;
                return Some(w);
            }
        }
    }

    /// Marks `w` done; returns the shortest depth now known for it.
    pub(super) fn finish(&mut self, w: &Waiting) -> u32 {
        let key = self.key(&w.url);
        let Some(seen) = self.seen.get_mut(&key) else { return w.depth };
        seen.state = State::Done;
        let depth = seen.depth;
        if !w.revisit {
            let at = self.open_at(depth);
            *at = at.saturating_sub(1);
        }
        depth
    }

    pub(super) fn room(&self) -> u64 {
        self.max_pages.saturating_sub(self.admitted)
    }

    /// The depth the crawl is at: its shallowest waiting URL.
    pub(super) fn front(&self) -> Option<u32> {
        let in_file = self.spilled.keys().next().copied();
        match self.waiting.keys().next().copied() {
            Some(m) => Some(in_file.map_or(m, |f| f.min(m))),
            None => in_file,
        }
    }
}

/// Waiting URLs held in memory at most: about 300 bytes each with the
/// `Url`, so about 15 MB whatever the frontier's size.
const IN_MEMORY: usize = 50_000;
/// Entries read back from a file at a time.
const READ_BACK: usize = 4_096;

/// Waiting URLs of one depth in an unnamed temporary file (gone with the
/// walk), one per line in the order they came: a link trap or a huge site
/// keeps the service's memory bounded whatever `maxPages` allows. Writes
/// and reads go through 64 KiB buffers, so the walk touches the file once
/// per few hundred URLs (page cache, microseconds).
struct Spill {
    file: std::fs::File,
    /// Lines not yet written to the file.
    out: Vec<u8>,
    written: u64,
    read: u64,
    /// Read from the file, not yet parsed (a line cut by the buffer).
    carry: Vec<u8>,
    count: usize,
}

impl Spill {
    const BUFFER: usize = 64 * 1024;

    fn new() -> std::io::Result<Self> {
        Ok(Spill {
            file: tempfile::tempfile()?,
            out: Vec::with_capacity(Self::BUFFER),
            written: 0,
            read: 0,
            carry: Vec::new(),
            count: 0,
        })
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends an entry; on an error nothing is appended (the buffer stays
    /// bounded and the entry is the caller's to keep).
    fn push(&mut self, url: &Url, revisit: bool) -> std::io::Result<()> {
        if self.out.len() >= Self::BUFFER {
            self.flush()?;
        }
        self.out.push(if revisit { b'r' } else { b'n' });
        self.out.extend_from_slice(url.as_str().as_bytes());
        self.out.push(b'\n');
        self.count += 1;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(&self.out, self.written)?;
        self.written += self.out.len() as u64;
        self.out.clear();
        Ok(())
    }

    /// Up to `n` of the oldest entries. A URL was valid when written; one
    /// that does not parse back is skipped.
    fn take(&mut self, n: usize) -> std::io::Result<Vec<(Url, bool)>> {
        use std::os::unix::fs::FileExt;
        let mut out = Vec::new();
        while out.len() < n && self.count > 0 {
            if !self.carry.contains(&b'\n') {
                if self.read == self.written {
                    self.flush()?;
                }
                let start = self.carry.len();
                self.carry.resize(start + Self::BUFFER, 0);
                let got = self.file.read_at(&mut self.carry[start..], self.read);
                self.carry.truncate(start + *got.as_ref().unwrap_or(&0));
                let got = got?;
                if got == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the frontier's file ended early",
                    ));
                }
                self.read += got as u64;
            }
            let mut used = 0;
            for line in self.carry.split_inclusive(|&b| b == b'\n') {
                if out.len() == n || line.last() != Some(&b'\n') {
                    break;
                }
                used += line.len();
                self.count -= 1;
                let (kind, url) = (line[0], &line[1..line.len() - 1]);
                if let Some(url) = std::str::from_utf8(url).ok().and_then(|u| Url::parse(u).ok()) {
                    out.push((url, kind == b'r'));
                }
            }
            self.carry.drain(..used);
        }
        Ok(out)
    }
}

/// How many new pages the pages still open should lead to: new links per
/// page lately (a moving average: pages found late find fewer new links,
/// their neighbours being known already), compounded down to `maxDepth`,
/// within the budget left.
#[derive(Default)]
pub(super) struct Growth {
    rate: f64,
    pages: u64,
}

impl Growth {
    /// The weight of each page in `rate`: about the last twenty pages count.
    const ALPHA: f64 = 0.05;

    pub(super) fn record(&mut self, new: u64) {
        let new = new as f64;
        self.rate = if self.pages == 0 { new } else { self.rate + Self::ALPHA * (new - self.rate) };
        self.pages += 1;
    }

    pub(super) fn outlook(&self, frontier: &Frontier, depth: u32) -> Outlook {
        let room = frontier.room() as f64;
        let max = frontier.max_depth;
        let mut ahead = 0.0;
        for (d, &open) in frontier.open.iter().enumerate().take(max as usize) {
            if open == 0 {
                continue;
            }
            // rate + rate² + … over the levels left below depth d.
            let n = f64::from(max - d as u32);
            let r = self.rate;
            let per_page = if (r - 1.0).abs() < 1e-9 { n } else { r * (1.0 - r.powf(n)) / (1.0 - r) };
            ahead += open as f64 * per_page;
            if ahead >= room {
                break;
            }
        }
        Outlook { admitted: frontier.admitted, found: 0, ahead: ahead.min(room) as u64, depth: Some((depth, max)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(i: usize) -> Url {
        Url::parse(&format!("https://example.com/page/{i}.html")).expect("url")
    }

    #[test]
    fn a_frontier_past_its_memory_bound_hands_out_every_url_once_shallowest_first_in_order() {
        let mut f = Frontier::new(10_000, 5, None);
        f.memory_bound = 10;
        for i in 0..3_000 {
            assert!(f.admit(&url(i), 2));
        }
        assert!(f.spilled.contains_key(&2), "past the bound, depth 2 waits in a file");
        assert!(f.in_memory <= 10);
        // Shallower URLs found later go first; one moved up is handed out once.
        for i in 3_000..3_005 {
            assert!(f.admit(&url(i), 1));
        }
        assert!(!f.admit(&url(2_999), 1), "known already: moved up");
        let mut order = Vec::new();
        while let Some(w) = f.pop() {
            order.push((w.depth, w.url.path().to_string()));
            f.finish(&w);
        }
        assert_eq!(order.len(), 3_005);
        assert!(order[..6].iter().all(|(d, _)| *d == 1), "{:?}", &order[..6]);
        assert_eq!(order[5].1, "/page/2999.html");
        let deep: Vec<String> = order[6..].iter().map(|(_, p)| p.clone()).collect();
        let expected: Vec<String> = (0..2_999).map(|i| format!("/page/{i}.html")).collect();
        assert_eq!(deep, expected, "depth 2 in the order found");
        assert!(f.spilled.is_empty() && f.in_memory == 0);
    }
}
