//! S3-compatible stores (AWS S3, MinIO, R2, Ceph): the connection settings and the client.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// How to reach an S3-compatible endpoint. Every key is optional: unset keys fall back to the
/// standard `AWS_*` variables and then to the AWS defaults (credential chain, `us-east-1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:9000` for MinIO or `https://<account>.r2.cloudflarestorage.com`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key` (MinIO, Ceph).
    pub path_style: bool,
    /// Allow plain `http://` endpoints (local test servers).
    pub allow_http: bool,
    /// One request's time limit, in seconds.
    pub request_timeout: f64,
    /// Retries of a failed request (5xx, 429, SlowDown, connection errors).
    pub max_retries: usize,
    /// No retry starts later than this many seconds after the first attempt.
    pub retry_timeout: f64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            path_style: false,
            allow_http: false,
            request_timeout: 30.0,
            max_retries: 10,
            retry_timeout: 180.0,
        }
    }
}

impl S3Config {
    /// Fills keys from the standard `AWS_*` variables: only keys the file leaves unset (they
    /// are often set for other tools), except `AWS_ALLOW_HTTP`, which wins over the file. The
    /// `TICKVAULT_S3_<KEY>` variables and flags come after (see `config`).
    pub fn apply_aws_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let strings: [(&[&str], &mut Option<String>); 5] = [
            (
                &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"],
                &mut self.endpoint,
            ),
            (&["AWS_REGION", "AWS_DEFAULT_REGION"], &mut self.region),
            (&["AWS_ACCESS_KEY_ID"], &mut self.access_key_id),
            (&["AWS_SECRET_ACCESS_KEY"], &mut self.secret_access_key),
            (&["AWS_SESSION_TOKEN"], &mut self.session_token),
        ];
        for (aws_names, slot) in strings {
            if slot.is_none() {
                *slot = aws_names.iter().find_map(|n| var(n));
            }
        }
        if let Some(v) = var("AWS_ALLOW_HTTP") {
            self.allow_http = match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                _ => return Err(format!("AWS_ALLOW_HTTP={v:?} is not true or false")),
            };
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("s3.request_timeout", self.request_timeout),
            ("s3.retry_timeout", self.retry_timeout),
        ] {
            if v.is_nan() || v <= 0.0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err("s3.access_key_id and s3.secret_access_key go together".into());
        }
        if let Some(e) = &self.endpoint
            && e.starts_with("http://")
            && !self.allow_http
        {
            return Err(format!(
                "s3.endpoint {e:?} is plain http; set s3.allow_http = true to use it"
            ));
        }
        Ok(())
    }

    /// Replaces secrets with `***` for display.
    pub fn masked(&self) -> Self {
        let mask = |s: &Option<String>| s.as_ref().map(|_| "***".to_string());
        Self {
            secret_access_key: mask(&self.secret_access_key),
            session_token: mask(&self.session_token),
            ..self.clone()
        }
    }
}

/// The S3 client for `s3://bucket/prefix`, rooted at the prefix.
pub(super) fn open_s3(
    bucket: &str,
    prefix: &str,
    config: &S3Config,
) -> Result<Arc<dyn ObjectStore>> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: format!("s3://{bucket}/{prefix}"),
        reason,
    };
    config.validate().map_err(invalid)?;
    let secs = Duration::from_secs_f64;
    let client = ClientOptions::new()
        .with_allow_http(config.allow_http)
        .with_timeout(secs(config.request_timeout))
        .with_connect_timeout(secs(config.request_timeout.min(5.0)));
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: config.max_retries,
        retry_timeout: secs(config.retry_timeout),
    };
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(config.region.as_deref().unwrap_or("us-east-1"))
        .with_virtual_hosted_style_request(!config.path_style)
        .with_client_options(client)
        .with_retry(retry)
        // `PutMode::Create` becomes `If-None-Match: *`, which the catalog's commits rely on.
        .with_conditional_put(S3ConditionalPut::ETagMatch);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let (Some(key), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        builder = builder
            .with_access_key_id(key)
            .with_secret_access_key(secret);
    }
    if let Some(token) = &config.session_token {
        builder = builder.with_token(token);
    }
    let s3 = builder.build()?;
    Ok(if prefix.is_empty() {
        Arc::new(s3)
    } else {
        Arc::new(PrefixStore::new(s3, prefix))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn aws_variables_fill_what_the_file_leaves_unset() {
        let env: HashMap<&str, &str> = [
            ("AWS_ACCESS_KEY_ID", "aws-key"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into();
        let mut c = S3Config {
            region: Some("us-west-2".into()),
            ..Default::default()
        };
        c.apply_aws_env(|k| env.get(k).map(|v| v.to_string()))
            .unwrap();
        assert_eq!(c.region.as_deref(), Some("us-west-2"), "file beats AWS_*");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.access_key_id.as_deref(), Some("aws-key"));
        assert!(c.allow_http);
        c.validate().unwrap();
        let shown = c.masked();
        assert_eq!(shown.secret_access_key.as_deref(), Some("***"));
        assert_eq!(shown.access_key_id.as_deref(), Some("aws-key"));
    }

    #[test]
    fn bad_settings_are_named() {
        let e = S3Config {
            endpoint: Some("http://x:9000".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("allow_http"), "{e}");
        let mut c = S3Config::default();
        let e = c
            .apply_aws_env(|k| (k == "AWS_ALLOW_HTTP").then(|| "maybe".to_string()))
            .unwrap_err();
        assert!(e.contains("AWS_ALLOW_HTTP"), "{e}");
    }
}
