//! Fetching a GGUF file from the Hugging Face Hub, with its SHA-256 checked.
//!
//! The daemon never downloads on its own: `warden model pull` does, once, and the model path
//! goes into the configuration. The blocking `hf-hub` client (ureq + rustls with `ring`) keeps
//! OpenSSL and aws-lc out of the build. Files land in an hf-hub cache *inside* the destination
//! directory (`DEST/.cache/huggingface/hub`, so a partial download resumes and no home
//! directory is needed) and are then hard-linked (copied when linking fails) to `DEST/FILE`.
//!
//! Verification: against the expected SHA-256 when one is given; otherwise against the hub's
//! own hash of the file. For files stored with Git LFS (every GGUF) the hub's `X-Linked-Etag`
//! header *is* the SHA-256 of the content and `hf-hub` exposes it as the metadata's etag; for
//! small non-LFS files the etag is a git blob id instead, and then the computed hash is only
//! reported ([`ChecksumSource::Unverified`]), so pin it with `--sha256` where it matters.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::{Component, Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// What the downloaded file's SHA-256 was checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksumSource {
    /// The caller's expected value.
    Expected,
    /// The hub's LFS SHA-256 of the file.
    Hub,
    /// Nothing to compare with: the hash was computed and reported only.
    Unverified,
}

/// The result of [`pull_with_report`].
#[derive(Debug, Clone)]
pub struct Pulled {
    pub path: PathBuf,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    pub verified_against: ChecksumSource,
    /// Whether the file was already present (destination or cache) and no download happened.
    pub cached: bool,
}

/// SHA-256 of a file, streaming, as lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Normalises an expected SHA-256 (64 hex digits, any case, surrounding space allowed).
pub fn parse_sha256(expected: &str) -> Result<String> {
    let e = expected.trim().to_ascii_lowercase();
    if e.len() == 64 && e.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(e)
    } else {
        Err(Error::Download(format!("`{expected}` is not a SHA-256 (64 hex digits)")))
    }
}

/// Checks a file against an expected SHA-256; returns the computed hash.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<String> {
    let expected = parse_sha256(expected)?;
    let actual = sha256_file(path).map_err(|e| Error::Download(format!("{}: cannot read: {e}", path.display())))?;
    if actual == expected {
        Ok(actual)
    } else {
        Err(Error::Download(format!("{}: SHA-256 mismatch: expected {expected}, got {actual}", path.display())))
    }
}

/// Downloads `file` from the model repository `repo` (at `revision`, default `main`) into
/// `dest_dir`, verifies its SHA-256 and returns the path. See the module docs.
pub fn pull(
    repo: &str,
    file: &str,
    revision: Option<&str>,
    dest_dir: &Path,
    expected_sha256: Option<&str>,
) -> Result<PathBuf> {
    pull_with_report(repo, file, revision, dest_dir, expected_sha256).map(|p| p.path)
}

/// [`pull`], also saying what the hash was and what it was checked against.
pub fn pull_with_report(
    repo: &str,
    file: &str,
    revision: Option<&str>,
    dest_dir: &Path,
    expected_sha256: Option<&str>,
) -> Result<Pulled> {
    let endpoint = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.trim().is_empty());
    pull_from(endpoint.as_deref(), repo, file, revision, dest_dir, expected_sha256)
}

/// [`pull_with_report`] against a given hub endpoint (`None`: huggingface.co).
fn pull_from(
    endpoint: Option<&str>,
    repo: &str,
    file: &str,
    revision: Option<&str>,
    dest_dir: &Path,
    expected_sha256: Option<&str>,
) -> Result<Pulled> {
    let expected = expected_sha256.map(parse_sha256).transpose()?;
    let file_name = safe_file_name(file)?;
    if repo.trim().is_empty() || repo.contains("..") {
        return Err(Error::Download(format!("invalid repository `{repo}`")));
    }
    let revision = revision.unwrap_or("main");
    std::fs::create_dir_all(dest_dir)
        .map_err(|e| Error::Download(format!("{}: cannot create: {e}", dest_dir.display())))?;
    let dest = dest_dir.join(&file_name);

    // Already there and pinned: no network needed.
    if let Some(expected) = &expected {
        if dest.is_file() && sha256_file(&dest).ok().as_deref() == Some(expected.as_str()) {
            return Ok(Pulled {
                path: dest,
                sha256: expected.clone(),
                verified_against: ChecksumSource::Expected,
                cached: true,
            });
        }
    }

    let cache_dir = dest_dir.join(".cache").join("huggingface").join("hub");
    let hub_repo = Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string());
    let mut builder = ApiBuilder::from_cache(Cache::new(cache_dir.clone()))
        .with_progress(std::io::stderr().is_terminal())
        .with_retries(2)
        .with_token(std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()));
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    let api = builder.build().map_err(|e| Error::Download(format!("hub client: {e}")))?;
    let api_repo = api.repo(hub_repo.clone());
    let url = api_repo.url(file);

    let (blob, hub_sha, cached) = match api.metadata(&url) {
        Ok(meta) => {
            let etag = meta.etag().trim_matches('"').to_ascii_lowercase();
            let hub_sha = parse_sha256(&etag).ok();
            let path = api_repo.download(file).map_err(|e| Error::Download(format!("downloading {url}: {e}")))?;
            (path, hub_sha, false)
        }
        Err(e) => {
            // Offline or unreachable: a previous download in the cache still serves.
            match Cache::new(cache_dir).repo(hub_repo).get(file) {
                Some(path) => (path, None, true),
                _ => {
                    return Err(Error::Download(format!(
                        "cannot fetch {url}: {e}. Is this machine offline, or the repository \
                         or file name wrong? Set HF_ENDPOINT for a mirror, HF_TOKEN for gated \
                         repositories, or copy the file by hand and configure its path."
                    )))
                }
            }
        }
    };

    let blob = std::fs::canonicalize(&blob).unwrap_or(blob);
    let actual = sha256_file(&blob).map_err(|e| Error::Download(format!("{}: cannot read: {e}", blob.display())))?;
    let verified_against = match (&expected, &hub_sha) {
        (Some(exp), _) if *exp != actual => {
            return Err(Error::Download(format!(
                "{file}: SHA-256 mismatch: expected {exp}, got {actual} (the download is kept \
                 in {} but not installed)",
                blob.display()
            )))
        }
        (Some(_), _) => ChecksumSource::Expected,
        (None, Some(hub)) if *hub != actual => {
            return Err(Error::Download(format!("{file}: SHA-256 mismatch with the hub: expected {hub}, got {actual}")))
        }
        (None, Some(_)) => ChecksumSource::Hub,
        (None, None) => ChecksumSource::Unverified,
    };
    install(&blob, &dest)?;
    Ok(Pulled { path: dest, sha256: actual, verified_against, cached })
}

/// The last path component of `file`, refusing names that would escape the destination.
fn safe_file_name(file: &str) -> Result<String> {
    let p = Path::new(file);
    let ok = !file.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    match p.file_name().and_then(|n| n.to_str()) {
        Some(name) if ok => Ok(name.to_string()),
        _ => Err(Error::Download(format!("invalid file name `{file}`"))),
    }
}

/// Puts `src` at `dest` atomically: hard link, else copy, via a temporary name.
fn install(src: &Path, dest: &Path) -> Result<()> {
    if src == dest {
        return Ok(());
    }
    let tmp = dest.with_extension("part-install");
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(src, &tmp).is_err() {
        std::fs::copy(src, &tmp).map_err(|e| Error::Download(format!("{}: cannot write: {e}", tmp.display())))?;
    }
    std::fs::rename(&tmp, dest).map_err(|e| Error::Download(format!("{}: cannot write: {e}", dest.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_sha256() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f.bin");
        std::fs::write(&path, b"abc")?;
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&path)?, abc);
        assert_eq!(verify_sha256(&path, &abc.to_uppercase())?, abc);
        let wrong = "0".repeat(64);
        match verify_sha256(&path, &wrong) {
            Err(Error::Download(m)) => assert!(m.contains("mismatch"), "{m}"),
            other => panic!("expected a mismatch, got {other:?}"),
        }
        assert!(matches!(verify_sha256(&path, "abc"), Err(Error::Download(_))));
        assert!(matches!(verify_sha256(&dir.path().join("missing"), abc), Err(Error::Download(_))));
        Ok(())
    }

    #[test]
    fn pinned_file_already_present_needs_no_network() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("m.gguf"), b"abc")?;
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let pulled = pull_with_report("org/repo", "m.gguf", None, dir.path(), Some(abc))?;
        assert!(pulled.cached);
        assert_eq!(pulled.verified_against, ChecksumSource::Expected);
        assert_eq!(pulled.path, dir.path().join("m.gguf"));
        Ok(())
    }

    #[test]
    fn unreachable_hub_is_a_download_error() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        // A closed local port stands in for being offline.
        let res = pull_from(Some("http://127.0.0.1:9"), "org/repo", "m.gguf", None, dir.path(), None);
        match res {
            Err(Error::Download(m)) => assert!(m.contains("offline"), "{m}"),
            other => panic!("expected a download error, got {other:?}"),
        }
        Ok(())
    }

    /// A minimal stand-in for the hub's `resolve` endpoint: range requests on one file, with
    /// the headers hf-hub reads (`X-Repo-Commit`, `X-Linked-Etag`, `Content-Range`).
    fn fake_hub(body: &'static [u8], etag: String) -> String {
        use std::io::Write;
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if !head.starts_with("get /org/repo/resolve/main/m.gguf ") {
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let start: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("range: bytes="))
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                let end = if head.contains("range: bytes=0-0") { 0 } else { body.len() - 1 };
                let part = &body[start.min(body.len())..=end];
                let resp = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\n\
                     Content-Range: bytes {start}-{end}/{}\r\n\
                     X-Repo-Commit: {}\r\nX-Linked-Etag: \"{etag}\"\r\nETag: \"{etag}\"\r\n\
                     Connection: close\r\n\r\n",
                    part.len(),
                    body.len(),
                    "c".repeat(40)
                );
                let _ = stream.write_all(resp.as_bytes());
                let _ = stream.write_all(part);
            }
        });
        format!("http://{addr}")
    }

    const BODY: &[u8] = b"GGUF pretend model bytes";

    #[test]
    fn pulls_and_verifies_against_the_hub_hash() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let sha = hex::encode(Sha256::digest(BODY));
        let hub = fake_hub(BODY, sha.clone());
        let dir = tempfile::tempdir()?;
        let pulled = pull_from(Some(&hub), "org/repo", "m.gguf", None, dir.path(), None)?;
        assert_eq!(pulled.path, dir.path().join("m.gguf"));
        assert_eq!(std::fs::read(&pulled.path)?, BODY);
        assert_eq!(pulled.sha256, sha);
        assert_eq!(pulled.verified_against, ChecksumSource::Hub);
        assert!(!pulled.cached);

        // With an expected value; and a wrong one is refused.
        let again = pull_from(Some(&hub), "org/repo", "m.gguf", None, dir.path(), Some(&sha))?;
        assert_eq!(again.verified_against, ChecksumSource::Expected);
        let wrong = "1".repeat(64);
        let other = tempfile::tempdir()?;
        match pull_from(Some(&hub), "org/repo", "m.gguf", None, other.path(), Some(&wrong)) {
            Err(Error::Download(m)) => assert!(m.contains("mismatch"), "{m}"),
            res => panic!("expected a mismatch, got {res:?}"),
        }
        assert!(!other.path().join("m.gguf").exists(), "a bad download is not installed");

        // Unknown file: a download error.
        let res = pull_from(Some(&hub), "org/repo", "nope.gguf", None, other.path(), None);
        assert!(matches!(res, Err(Error::Download(_))), "{res:?}");
        Ok(())
    }

    #[test]
    fn hub_hash_mismatch_and_non_lfs_etags() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let hub = fake_hub(BODY, "2".repeat(64));
        match pull_from(Some(&hub), "org/repo", "m.gguf", None, dir.path(), None) {
            Err(Error::Download(m)) => assert!(m.contains("mismatch with the hub"), "{m}"),
            res => panic!("expected a mismatch, got {res:?}"),
        }
        // A git blob id (40 hex digits) is no content hash: reported, not verified.
        let dir = tempfile::tempdir()?;
        let hub = fake_hub(BODY, "3".repeat(40));
        let pulled = pull_from(Some(&hub), "org/repo", "m.gguf", None, dir.path(), None)?;
        assert_eq!(pulled.verified_against, ChecksumSource::Unverified);
        assert_eq!(pulled.sha256, hex::encode(Sha256::digest(BODY)));
        Ok(())
    }

    #[test]
    fn rejects_escaping_names() {
        assert!(safe_file_name("../x.gguf").is_err());
        assert!(safe_file_name("/etc/passwd").is_err());
        assert!(safe_file_name("").is_err());
        assert_eq!(safe_file_name("sub/dir/m.gguf").ok().as_deref(), Some("m.gguf"));
    }
}
