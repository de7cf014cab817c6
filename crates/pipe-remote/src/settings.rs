//! Which remote a command uses and how to reach it: `--remote URL` / `--no-remote` beat
//! `PIPE_REMOTE`, which beats `pipe.toml`'s `[remote] url` (the section is defined here, where
//! it is used; the command layer reads the file once and hands it over). The object store is
//! built here (object_store's `AmazonS3Builder::from_env` reads the AWS credentials: nothing of them
//! passes through pipe's own settings, logs or messages) and so is the URL shown to users,
//! stripped of anything that could be a secret.

use super::RemoteError;
use object_store::ObjectStore;
use object_store::path::Path as RemotePath;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable that overrides `pipe.toml`'s remote URL.
pub const ENV_REMOTE: &str = "PIPE_REMOTE";

/// Timeouts and retries: a dead server must cost seconds, not object_store's default minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_RETRIES: usize = 2;
const RETRY_TIMEOUT: Duration = Duration::from_secs(15);
/// Region when neither `pipe.toml` nor `AWS_REGION` / `AWS_DEFAULT_REGION` names one.
const DEFAULT_REGION: &str = "us-east-1";

/// `[remote]`: one remote cache, named by URL (see `crate`). Credentials never go
/// here: they come from the standard AWS environment variables only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSection {
    /// `s3://bucket/prefix` or `file:///shared/path`.
    pub url: Option<String>,
    /// An S3-compatible server's URL (`http://127.0.0.1:9000`); AWS itself when absent.
    pub endpoint: Option<String>,
    /// The S3 region (`us-east-1` when neither this nor `AWS_REGION` says otherwise).
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), which most self-hosted servers need.
    pub path_style: Option<bool>,
    /// Allow a plain-HTTP endpoint (a server on loopback or a trusted network).
    pub allow_http: Option<bool>,
}

/// A remote named by its settings, not yet connected.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as shown to users (no credentials, no query).
    pub shown: String,
    pub store: Arc<dyn ObjectStore>,
    /// Everything pipe writes goes under this prefix of the store.
    pub prefix: RemotePath,
    /// For `file://`: the directory, which must exist.
    pub local_dir: Option<std::path::PathBuf>,
}

/// The URL to use, if any: `--remote URL` (`flag`; none with `--no-remote`), then
/// `PIPE_REMOTE`, then `pipe.toml`.
pub fn chosen_url(flag: Option<&str>, no_remote: bool, section: &RemoteSection) -> Option<String> {
    if no_remote {
        return None;
    }
    flag.map(str::to_string)
        .filter(|u| !u.is_empty())
        .or_else(|| {
            std::env::var(ENV_REMOTE)
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .or_else(|| section.url.clone())
}

/// `url` without user info, query or fragment: what messages may show.
pub fn shown(url: &str) -> String {
    let cut = url.split(['?', '#']).next().unwrap_or_default();
    match cut.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
            if path.is_empty() && !rest.contains('/') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => cut.to_string(),
    }
}

/// Builds the store for `url` with the `[remote]` options.
pub fn target(url: &str, section: &RemoteSection) -> Result<Target, RemoteError> {
    let shown_url = shown(url);
    let bad = |message: String| RemoteError::BadUrl {
        remote: shown_url.clone(),
        message,
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected s3://bucket/prefix or file:///path".into()))?;
    match scheme {
        "s3" => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() || bucket.contains('@') || url.contains('?') {
                return Err(bad(
                    "expected s3://bucket/prefix (no credentials, no query)".into(),
                ));
            }
            let store = s3_store(bucket, section).map_err(|e| bad(e.to_string()))?;
            Ok(Target {
                shown: shown_url.clone(),
                store: Arc::new(store),
                prefix: RemotePath::from(prefix.trim_matches('/')),
                local_dir: None,
            })
        }
        "file" => {
            let path = std::path::PathBuf::from(rest);
            if !path.is_absolute() {
                return Err(bad(
                    "a file:// URL needs an absolute path: file:///shared/cache".into(),
                ));
            }
            if !path.is_dir() {
                return Err(RemoteError::NoBucket {
                    remote: shown_url.clone(),
                    detail: format!("directory {} does not exist", path.display()),
                });
            }
            let store = object_store::local::LocalFileSystem::new_with_prefix(&path)
                .map_err(|e| bad(e.to_string()))?;
            Ok(Target {
                shown: shown_url,
                store: Arc::new(store),
                prefix: RemotePath::default(),
                local_dir: Some(path),
            })
        }
        other => Err(bad(format!(
            "unsupported scheme `{other}`: use s3:// or file://"
        ))),
    }
}

fn s3_store(
    bucket: &str,
    section: &RemoteSection,
) -> object_store::Result<object_store::aws::AmazonS3> {
    use object_store::aws::AmazonS3Builder;
    use object_store::{BackoffConfig, ClientOptions, RetryConfig};
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(e) = &section.endpoint {
        b = b.with_endpoint(e);
    }
    let env_region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .ok();
    let region = section
        .region
        .clone()
        .or(env_region)
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    b = b.with_region(region);
    if let Some(path_style) = section.path_style {
        b = b.with_virtual_hosted_style_request(!path_style);
    }
    // Bodies are not SHA-256 signed (`x-amz-content-sha256: UNSIGNED-PAYLOAD`), which spares
    // both ends a hash of every byte: each file is verified against its blake3 digest when
    // pulled, and TLS protects it in transit on https endpoints. `AWS_UNSIGNED_PAYLOAD=false`
    // (read by `from_env`) restores signing.
    if std::env::var_os("AWS_UNSIGNED_PAYLOAD").is_none() {
        b = b.with_unsigned_payload(true);
    }
    let options = ClientOptions::new()
        .with_allow_http(section.allow_http.unwrap_or(false))
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    };
    b.with_client_options(options).with_retry(retry).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_lose_credentials_and_queries() {
        assert_eq!(shown("s3://bucket/a/b"), "s3://bucket/a/b");
        assert_eq!(shown("s3://AKIA:sekrit@bucket/p?x=1"), "s3://bucket/p");
        assert_eq!(shown("file:///srv/cache"), "file:///srv/cache");
        assert_eq!(shown("s3://bucket"), "s3://bucket");
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let section = RemoteSection {
            url: Some("file:///from/file".into()),
            ..Default::default()
        };
        // PIPE_REMOTE is not set by the test harness for this process.
        if std::env::var(ENV_REMOTE).is_err() {
            assert_eq!(
                chosen_url(None, false, &section).as_deref(),
                Some("file:///from/file")
            );
        }
        let flag = Some("s3://flag");
        assert_eq!(
            chosen_url(flag, false, &section).as_deref(),
            Some("s3://flag")
        );
        assert_eq!(chosen_url(flag, true, &section), None);
    }

    #[test]
    fn bad_urls_are_named_without_their_secrets() {
        let s = RemoteSection::default();
        let e = target("ftp://x/y", &s).unwrap_err().to_string();
        assert!(e.contains("unsupported scheme `ftp`"), "{e}");
        let e = target("s3://KEY:SECRET@bucket/p", &s)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("SECRET") && e.contains("s3://bucket/p"), "{e}");
        let e = target("file://relative/dir", &s).unwrap_err().to_string();
        assert!(e.contains("absolute path"), "{e}");
        let e = target("file:///no/such/dir/for/pipe", &s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
